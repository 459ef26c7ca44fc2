"""FQL baseline (Park, Li, Levine 2025, "Flow Q-Learning"), on the same networks, config and
training plumbing as QFQL so the two are compared on equal terms.

  * flow BC actor v_θ: the same flow-matching loss as QFQL (so "flow BC alone" = QFQL at β = 0);
  * one-step policy μ_ω(s, ε), trained by  α · ‖μ_ω(s, ε) - Flow_θ(s, ε)‖²  (distillation towards
    the clipped K-step flow sample, target under stop_gradient)  -  Q(s, clip(μ_ω(s, ε))) with Q
    the ensemble mean of the *current* critic, which is not trained by this term; with
    normalize_q_loss the Q term is divided by stop_gradient(mean |Q|);
  * critic: TD with ã' = clip(μ_ω(s', ε)) and the configured ensemble aggregation;
  * acting: a = clip(μ_ω(s, ε)), one network call (β is ignored).
Loss averages follow the FQL paper: means over batch and action dims."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from agents.base import FlowAgentBase
from agents.networks import OneStepPolicy
from agents.sampler import SamplerSettings, guided_flow_sample


# α by OGBench task family, from FQL's official README (cube-* and scene 300, puzzle-* 1000, humanoidmaze
# 30, antmaze and antsoccer 10); the D4RL antmaze tasks take theirs from the FQL paper's table. A family
# not listed (pointmaze) gets 10.
ALPHA_BY_FAMILY = {'cube': 300.0, 'scene': 300.0, 'puzzle': 1000.0, 'humanoidmaze': 30.0, 'antmaze': 10.0,
                   'antsoccer': 10.0}
ALPHA_D4RL = {'antmaze-umaze-diverse-v2': 10.0, 'antmaze-medium-diverse-v2': 10.0, 'antmaze-large-diverse-v2': 3.0}
ALPHA_OTHER = 10.0


class FQLAgent(FlowAgentBase):
    TRAINABLE = ('actor_bc', 'actor_onestep', 'critic')
    GRAD_GROUPS = {'actor': ('actor_bc', 'actor_onestep'), 'critic': ('critic',)}
    TITLE = 'FQL'
    BETA = None                # its α weighs distillation against Q at training time; acting has no knob
    ACTING = 'one-step policy μ_ω(s, ε)'
    CONFIG_FIELDS = ('alpha', 'normalize_q_loss')
    PAPER_TABLE1 = {
        'antmaze-large-navigate-singletask-task1-v0': (80, 8), 'antsoccer-arena-navigate-singletask-task4-v0': (39, 6),
        'cube-double-play-singletask-task2-v0': (36, 6), 'scene-play-singletask-task2-v0': (76, 9),
        'puzzle-3x3-play-singletask-task4-v0': (16, 5), 'antmaze-umaze-diverse-v2': (89, 5),
        'antmaze-medium-diverse-v2': (71, 13), 'antmaze-large-diverse-v2': (83, 4)}

    @classmethod
    def task_config(cls, env_id, source):
        """α, the distillation weight, per task (the table above)."""
        if source == 'd4rl':
            return {'alpha': ALPHA_D4RL.get(env_id, ALPHA_OTHER)}
        return {'alpha': ALPHA_BY_FAMILY.get(env_id.removeprefix('visual-').split('-')[0], ALPHA_OTHER)}

    @classmethod
    def exported_names(cls, config):
        """FQL acts with its one-step policy alone; its flow BC actor only trains that policy."""
        return ('actor_onestep', 'critic')

    @classmethod
    def init_params(cls, key, example_observations, example_actions, config):
        bc_key, onestep_key, critic_key = jax.random.split(key, 3)
        actor_bc = cls.init_flow_actor(bc_key, example_observations, example_actions, config)
        actor_onestep = OneStepPolicy(config.actor_hidden, example_actions.shape[-1], config.actor_layer_norm).init(
            onestep_key, example_observations, example_actions)['params']
        critic = cls.init_critic(critic_key, example_observations, example_actions, config)
        return {'actor_bc': actor_bc, 'actor_onestep': actor_onestep, 'critic': critic, 'target_critic': critic}

    def onestep_actions(self, onestep_params, observations, noise):
        c = self.config
        net = OneStepPolicy(c.actor_hidden, self.action_dim, c.actor_layer_norm)
        return net.apply({'params': onestep_params}, observations, noise)

    def target_actions(self, params, next_observations, rng):
        """ã' = clip(μ_ω(s', ε)): FQL's critic bootstraps on its one-step policy."""
        noise = self._noise(rng, next_observations.shape[0])
        onestep = jax.lax.stop_gradient(params['actor_onestep'])
        return jnp.clip(self.onestep_actions(onestep, next_observations, noise), -1.0, 1.0)

    def actor_loss(self, params, batch, rng):
        c = self.config
        bc_noise_key, time_key, noise_key = jax.random.split(rng, 3)
        observations, actions = batch['observations'], batch['actions']
        bc_flow_loss = self.behaviour_cloning_loss(params['actor_bc'], observations, actions, bc_noise_key, time_key)

        noise = self._noise(noise_key, actions.shape[0])
        flow_target, _ = guided_flow_sample(
            self.velocity_fn(jax.lax.stop_gradient(params['actor_bc'])), None, observations, noise, 0, c.flow_steps)
        policy_actions = self.onestep_actions(params['actor_onestep'], observations, noise)
        distill_loss = jnp.mean(jnp.square(policy_actions - jax.lax.stop_gradient(flow_target)))

        critic = jax.lax.stop_gradient(params['critic'])
        q = self.critic_values(critic, observations, jnp.clip(policy_actions, -1.0, 1.0)).mean(axis=0)
        q_loss = -q.mean()
        if c.normalize_q_loss:
            q_loss = q_loss / jax.lax.stop_gradient(jnp.abs(q).mean())
        loss = bc_flow_loss + c.alpha * distill_loss + q_loss
        return loss, {'actor/loss': loss, 'actor/flow_loss': bc_flow_loss, 'actor/distill_loss': distill_loss,
                      'actor/q_loss': q_loss, 'actor/q': q.mean()}

    @jax.jit
    def _onestep_from_noise(self, observations, noise):
        return jnp.clip(self.onestep_actions(self.params['actor_onestep'], observations, noise), -1.0, 1.0)

    def actions_from_noise(self, observations, noise, beta=0.0, settings: SamplerSettings | None = None):
        """a = clip(μ_ω(s, ε)) for the given ε = `noise`; `beta` and `settings` are accepted for API
        parity with QFQL and ignored. diag has the sampler's keys, all zeros ([flow_steps, B] and a 0
        count)."""
        observations = jnp.asarray(observations, jnp.float32)
        noise = jnp.asarray(noise, jnp.float32)
        single = observations.ndim == 1
        if single:
            observations, noise = observations[None], noise[None]
        actions = self._onestep_from_noise(observations, noise)
        shape = ((settings and settings.flow_steps) or self.config.flow_steps, observations.shape[0])
        diag = {'velocity_norm': jnp.zeros(shape), 'grad_q_norm': jnp.zeros(shape),
                'guidance_norm': jnp.zeros(shape), 'nonfinite_fallbacks': jnp.zeros((), jnp.int32),
                'nonfinite_velocity': jnp.zeros((), jnp.int32)}
        return (actions[0] if single else actions), diag
