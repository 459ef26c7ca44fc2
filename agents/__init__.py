"""agents: QFQL (flow-matching actor + TD critic + Q-guided sampling), the FQL baseline, and the
guided sampler as a pure function. Imports nothing from gymnasium, ogbench or harness."""
from agents.config import PRESETS, AgentConfig, resolve_config
from agents.fql import FQLAgent
from agents.qfql import QFQLAgent
from agents.sampler import guided_flow_sample

# The agent registry: the only place an agent is named. The harness asks these classes what it needs
# (agents/base.py: TITLE, BETA, ACTING, CONFIG_FIELDS, task_config, exported_names, ...); the first
# is the default agent.
AGENTS = {'qfql': QFQLAgent, 'fql': FQLAgent}
DEFAULT_AGENT = next(iter(AGENTS))


def make_agent(name: str, seed_or_key, example_observations, example_actions, config=None, **overrides):
    """Build an agent by its registered name from a preset name or AgentConfig plus field overrides."""
    if name not in AGENTS:
        raise ValueError(f'unknown agent {name!r}; choose one of {sorted(AGENTS)}')
    return AGENTS[name].create(seed_or_key, example_observations, example_actions,
                               resolve_config(config, **overrides))


__all__ = ['AGENTS', 'DEFAULT_AGENT', 'AgentConfig', 'FQLAgent', 'PRESETS', 'QFQLAgent', 'guided_flow_sample',
           'make_agent', 'resolve_config']
