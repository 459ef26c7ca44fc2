"""QFQL (Algorithm 1a/1b): a flow-matching actor trained by pure behaviour cloning, an ensemble
critic trained by TD with a Polyak target (or, opt-in, an in-sample expectile critic), and
Q-guided flow sampling at test time.

The actor loss (eq. 2-3) never sees φ, and the critic loss (eq. 4) only sees θ through the target
action ã', computed under stop_gradient; tests/test_agents.py proves no gradient crosses."""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from agents.base import FlowAgentBase
from agents.losses import critic_td_loss, ensemble_target, expectile_loss, td_target
from agents.sampler import SamplerSettings, guided_flow_sample, is_static_zero
from agents.training import q_statistics


class QFQLAgent(FlowAgentBase):
    TRAINABLE = ('actor', 'critic')
    GRAD_GROUPS = {'actor': ('actor',), 'critic': ('critic',)}
    TITLE = 'QFQL'
    BETA = 'guidance strength of the flow sampler at test time (eq. 5)'
    ACTING = 'guided flow sampler (eq. 5 unless the sampler settings depart from it)'
    CONFIG_FIELDS = ('target_action', 'target_flow_steps', 'critic', 'expectile')
    PAPER_TABLE1 = {
        'antmaze-large-navigate-singletask-task1-v0': (84, None),
        'antsoccer-arena-navigate-singletask-task4-v0': (44, None),
        'cube-double-play-singletask-task2-v0': (8, None), 'scene-play-singletask-task2-v0': (62, None),
        'puzzle-3x3-play-singletask-task4-v0': (0, None), 'antmaze-umaze-diverse-v2': (94, None),
        'antmaze-medium-diverse-v2': (50, None), 'antmaze-large-diverse-v2': (52, None)}

    @classmethod
    def trainable_names(cls, config):
        return cls.TRAINABLE + (('value',) if config.critic == 'expectile' else ())

    @classmethod
    def grad_groups(cls, config):
        return {**cls.GRAD_GROUPS, **({'value': ('value',)} if config.critic == 'expectile' else {})}

    @classmethod
    def exported_names(cls, config):
        """Acting needs the flow actor and the critic that guides it; the expectile critic's value
        network is kept as well, as exports have always held it."""
        return cls.trainable_names(config)

    @classmethod
    def init_params(cls, key, example_observations, example_actions, config):
        actor_key, critic_key, value_key = jax.random.split(key, 3)
        actor = cls.init_flow_actor(actor_key, example_observations, example_actions, config)
        critic = cls.init_critic(critic_key, example_observations, example_actions, config)
        params = {'actor': actor, 'critic': critic, 'target_critic': critic}
        if config.critic == 'expectile':
            params['value'] = cls.init_value(value_key, example_observations, config)
        return params

    def q_fn(self, critic_params):
        return lambda obs, a: self.critic_values(critic_params, obs, a)

    # ---- losses ---------------------------------------------------------------------------
    def actor_loss(self, params, batch, rng):
        """Flow matching on dataset actions only (eq. 2-3): behaviour cloning, no Q term."""
        noise_key, time_key = jax.random.split(rng)
        loss = self.behaviour_cloning_loss(params['actor'], batch['observations'], batch['actions'], noise_key, time_key)
        return loss, {'actor/loss': loss, 'actor/flow_loss': loss}

    def critic_loss(self, params, batch, rng):
        """'td': eq. 4 (FlowAgentBase). 'expectile': Q(s, a) → r + γ mask V(s') and V(s) → the target
        critic's Q(s, a) by expectile regression, both at dataset actions only; the two terms share no
        gradient (V(s') is held fixed in the Q target, and the V target comes from the target critic)."""
        c = self.config
        if c.critic == 'td':
            return super().critic_loss(params, batch, rng)
        next_v = jax.lax.stop_gradient(self.state_values(params['value'], batch['next_observations']))
        target = td_target(batch['rewards'], batch['masks'], next_v, c.discount ** c.horizon)
        q = self.critic_values(params['critic'], batch['observations'], batch['actions'])
        q_loss = critic_td_loss(q, target)
        dataset_q = ensemble_target(
            self.critic_values(self.params['target_critic'], batch['observations'], batch['actions']), c.q_agg)
        v = self.state_values(params['value'], batch['observations'])
        v_loss = expectile_loss(jax.lax.stop_gradient(dataset_q) - v, c.expectile)
        return q_loss + v_loss, {'critic/loss': q_loss, 'critic/target_q_mean': target.mean(), 'value/loss': v_loss,
                                 'value/v_mean': v.mean(), **q_statistics(q)}

    def target_actions(self, params, next_observations, rng):
        """ApproxDenoisedAction(s'; θ) per config.target_action (see AgentConfig), no gradient."""
        c = self.config
        actor_params = jax.lax.stop_gradient(params['actor'])
        noise = self._noise(rng, next_observations.shape[0])
        velocity = self.velocity_fn(actor_params)
        steps = c.target_flow_steps or c.flow_steps
        if c.target_action == 'onestep':
            zeros = jnp.zeros((noise.shape[0], 1), noise.dtype)
            actions = jnp.clip(noise + velocity(next_observations, noise, zeros), -1.0, 1.0)
        elif c.target_action == 'flow':
            actions, _ = guided_flow_sample(velocity, None, next_observations, noise, 0, steps)
        else:
            target_q = self.q_fn(jax.lax.stop_gradient(self.params['target_critic']))
            actions, _ = guided_flow_sample(
                velocity, target_q, next_observations, noise, c.beta, steps,
                grad_clip=c.grad_clip, trust_ratio=c.trust_ratio, guidance_q_agg=c.guidance_q_agg)
        return jax.lax.stop_gradient(actions)

    # ---- acting ---------------------------------------------------------------------------
    def actions_from_noise(self, observations, noise, beta=0.0, settings: SamplerSettings | None = None):
        """The guided flow from the given a⁰ = `noise`: deterministic, so an evaluation can give every
        episode and env step noise of its own, whatever batch it is sampled in.

        `beta` may change between calls without recompiling, and may be one value per row (a β sweep
        in one batch); a Python 0 compiles a path that has no ∇Q at all. `settings` None acts with
        `SamplerSettings.of(config)`. A single observation [obs_dim] gives a single action [action_dim]."""
        observations = jnp.asarray(observations, jnp.float32)
        noise = jnp.asarray(noise, jnp.float32)
        single = observations.ndim == 1
        if single:
            observations, noise = observations[None], noise[None]
        static_zero = is_static_zero(beta)
        actions, diag = _sample(self, observations, noise, 0.0 if static_zero else jnp.asarray(beta, jnp.float32),
                                static_zero=static_zero,
                                settings=SamplerSettings.of(self.config) if settings is None else settings)
        return (actions[0] if single else actions), diag


@partial(jax.jit, static_argnames=('static_zero', 'settings'))
def _sample(agent, observations, noise, beta, *, static_zero, settings):
    return guided_flow_sample(
        agent.velocity_fn(agent.params['actor']), agent.q_fn(agent.params['critic']), observations, noise,
        0 if static_zero else beta, settings.flow_steps or agent.config.flow_steps, **settings.sample_kwargs())
