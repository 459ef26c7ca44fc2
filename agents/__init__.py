"""agents: QFQL (flow-matching actor + TD critic + Q-guided sampling), the FQL baseline, and the
guided sampler as a pure function. Imports nothing from gymnasium, ogbench or harness."""
from agents.config import PRESETS, AgentConfig, resolve_config
from agents.fql import FQLAgent
from agents.qfql import QFQLAgent
from agents.sampler import guided_flow_sample

AGENTS = {'qfql': QFQLAgent, 'fql': FQLAgent}


def make_agent(name: str, seed_or_key, example_observations, example_actions, config=None, **overrides):
    """Build an agent by name ('qfql' | 'fql') from a preset name or AgentConfig plus field overrides."""
    if name not in AGENTS:
        raise ValueError(f'unknown agent {name!r}; choose one of {sorted(AGENTS)}')
    return AGENTS[name].create(seed_or_key, example_observations, example_actions,
                               resolve_config(config, **overrides))


__all__ = ['AGENTS', 'AgentConfig', 'FQLAgent', 'PRESETS', 'QFQLAgent', 'guided_flow_sample',
           'make_agent', 'resolve_config']
