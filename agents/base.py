"""What QFQL and FQL share: an immutable PyTree agent (rng, params, optimiser state, step) with
create / update / update_many. Subclasses define the networks (`init_params`), the total loss and
sampling. Actor and critic are updated in ONE jitted step from ONE backward pass over the sum of
their losses; the losses are built so that no gradient crosses between them (stop_gradient on
every cross use), which makes this equal to two separate optimisers at half the dispatch cost."""
from __future__ import annotations

from functools import partial
from typing import Any

import flax.struct as struct
import jax
import jax.numpy as jnp
import optax

from agents.config import AgentConfig, resolve_config
from agents.losses import critic_td_loss, ensemble_target, flow_matching_loss, polyak_update, td_target
from agents.networks import MLP, QEnsemble, VectorField
from agents.sampler import SamplerSettings
from agents.training import as_key, global_norm, make_optimizer, q_statistics, scan_updates


class FlowAgentBase(struct.PyTreeNode):
    rng: jax.Array
    params: dict            # trainable sub-trees + 'target_critic'
    opt_state: Any
    step: jax.Array
    action_dim: int = struct.field(pytree_node=False)
    config: AgentConfig = struct.field(pytree_node=False)

    # Names of the trainable sub-trees of `params`, and how they are grouped for grad-norm metrics.
    TRAINABLE = ()
    GRAD_GROUPS = {}

    # What the harness asks of an agent class, so that it names no agent (agents/__init__.py registers them).
    TITLE = ''                 # how messages and reports name the agent
    BETA: str | None = None    # what β means when acting; None: acting ignores β, and runs are reported at β = 0
    ACTING = ''                # how it acts, as summary.json states it
    CONFIG_FIELDS = ()         # AgentConfig fields that only this agent reads: a run of another agent refuses them
    PAPER_TABLE1 = {}          # env id -> (success %, its standard deviation or None) in the QFQL paper's Table 1

    @classmethod
    def task_config(cls, env_id: str, source: str) -> dict:
        """AgentConfig fields whose default depends on the task (`source` 'ogbench' or 'd4rl'); flags win."""
        return {}

    @classmethod
    def trainable_names(cls, config: AgentConfig) -> tuple[str, ...]:
        """The sub-trees of `params` the optimiser updates (a config may add networks)."""
        return cls.TRAINABLE

    @classmethod
    def grad_groups(cls, config: AgentConfig) -> dict[str, tuple[str, ...]]:
        return cls.GRAD_GROUPS

    @classmethod
    def exported_names(cls, config: AgentConfig) -> tuple[str, ...]:
        """The sub-trees of `params` an exported (shipped) agent keeps: the networks acting needs, and
        the critic, from which a restored agent's target critic is rebuilt. Each agent names its own
        networks, so a name list kept elsewhere would silently drop another agent's actors."""
        raise NotImplementedError

    # ---- networks -------------------------------------------------------------------------
    @property
    def critic_net(self) -> QEnsemble:
        c = self.config
        return QEnsemble(c.critic_hidden, c.num_critics, c.critic_layer_norm)

    def velocity_fn(self, actor_params):
        """v_θ(s, a_t, t) of the flow-matching actor, as the (obs, a, t) callable the sampler takes."""
        c = self.config
        net = VectorField(c.actor_hidden, self.action_dim, c.actor_layer_norm)
        return lambda obs, a, t: net.apply({'params': actor_params}, obs, a, t)

    def critic_values(self, critic_params, observations, actions):
        """Q of every ensemble member, shape [num_critics, B]."""
        return self.critic_net.apply({'params': critic_params}, observations, actions)

    @property
    def value_net(self) -> MLP:
        c = self.config
        return MLP(c.critic_hidden, 1, c.critic_layer_norm)

    def state_values(self, value_params, observations):
        """V(s) of the expectile critic, shape [B]."""
        return self.value_net.apply({'params': value_params}, observations)[..., 0]

    @classmethod
    def init_params(cls, key, example_observations, example_actions, config) -> dict:
        raise NotImplementedError

    @staticmethod
    def init_flow_actor(key, example_observations, example_actions, config) -> dict:
        """Parameters of v_θ for the examples' shapes (t enters as one extra input column)."""
        times = jnp.zeros((example_actions.shape[0], 1), jnp.float32)
        net = VectorField(config.actor_hidden, example_actions.shape[-1], config.actor_layer_norm)
        return net.init(key, example_observations, example_actions, times)['params']

    @staticmethod
    def init_value(key, example_observations, config) -> dict:
        """Parameters of V(s) for the expectile critic (the critic's widths and layer norm)."""
        return MLP(config.critic_hidden, 1, config.critic_layer_norm).init(key, example_observations)['params']

    @staticmethod
    def init_critic(key, example_observations, example_actions, config) -> dict:
        """Parameters of the Q ensemble (members initialised independently)."""
        net = QEnsemble(config.critic_hidden, config.num_critics, config.critic_layer_norm)
        return net.init(key, example_observations, example_actions)['params']

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def create(cls, seed_or_key, example_observations, example_actions, config: AgentConfig | str | None = None):
        """A fresh agent. `seed_or_key` is an int or a PRNG key; with a key, create can be
        jax.vmap'ped over keys to build one agent per seed (params get a leading seed axis).
        `example_actions` are the env's actions; with config.horizon h the agent's action is a chunk of
        h of them, so its action_dim is h times theirs."""
        config = resolve_config(config)
        example_observations = jnp.asarray(example_observations, jnp.float32)
        example_actions = jnp.asarray(example_actions, jnp.float32)
        if example_observations.ndim != 2 or example_actions.ndim != 2:
            raise ValueError('example_observations and example_actions must be 2-D [batch, dim] arrays, '
                             f'got shapes {example_observations.shape} and {example_actions.shape}')
        example_actions = jnp.tile(example_actions, (1, config.horizon))
        rng, init_key = jax.random.split(as_key(seed_or_key))
        params = cls.init_params(init_key, example_observations, example_actions, config)
        trainable = {k: params[k] for k in cls.trainable_names(config)}
        return cls(rng=rng, params=params, opt_state=make_optimizer(config).init(trainable),
                   step=jnp.zeros((), jnp.int32), action_dim=int(example_actions.shape[-1]), config=config)

    # ---- training -------------------------------------------------------------------------
    def actor_loss(self, params, batch, rng):
        """Returns (loss, info) of every actor network in `params`."""
        raise NotImplementedError

    def target_actions(self, params, next_observations, rng):
        """ã' for the TD target from the actor network(s) in `params`, without gradient."""
        raise NotImplementedError

    def critic_loss(self, params, batch, rng):
        """TD loss (eq. 4): y = r + γ mask agg_e Q̄_e(s', ã'), squared error for every member; the
        agents differ only in where ã' comes from (`target_actions`). With action chunks, r is the
        chunk's h-step return and s' is h steps on, so the bootstrap is discounted by γ^h."""
        c = self.config
        next_actions = self.target_actions(params, batch['next_observations'], rng)
        next_qs = self.critic_values(self.params['target_critic'], batch['next_observations'], next_actions)
        target = td_target(batch['rewards'], batch['masks'], ensemble_target(next_qs, c.q_agg), c.discount ** c.horizon)
        q = self.critic_values(params['critic'], batch['observations'], batch['actions'])
        loss = critic_td_loss(q, target)
        return loss, {'critic/loss': loss, 'critic/target_q_mean': target.mean(), **q_statistics(q)}

    def behaviour_cloning_loss(self, actor_params, observations, actions, noise_key, time_key):
        """Flow matching on dataset actions (eq. 2-3) with ε ~ N(0, I) and t ~ U(0, 1)."""
        noise = jax.random.normal(noise_key, actions.shape, actions.dtype)
        times = jax.random.uniform(time_key, (actions.shape[0], 1), actions.dtype)
        return flow_matching_loss(self.velocity_fn(actor_params), observations, actions, noise, times)

    def total_loss(self, trainable, batch, rng):
        """Sum of the actor and critic losses (`trainable` holds the sub-trees of `trainable_names`);
        they share no gradient, so one backward pass updates both as two optimisers would."""
        actor_key, critic_key = jax.random.split(rng)
        actor_loss, actor_info = self.actor_loss(trainable, batch, actor_key)
        critic_loss, critic_info = self.critic_loss(trainable, batch, critic_key)
        return actor_loss + critic_loss, {**actor_info, **critic_info}

    def _update(self, batch):
        rng, loss_rng = jax.random.split(self.rng)
        trainable = {k: self.params[k] for k in self.trainable_names(self.config)}
        grads, info = jax.grad(self.total_loss, has_aux=True)(trainable, batch, loss_rng)
        updates, opt_state = make_optimizer(self.config).update(grads, self.opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        params = dict(trainable)
        params['target_critic'] = polyak_update(self.params['target_critic'], trainable['critic'], self.config.tau)
        for group, names in self.grad_groups(self.config).items():
            info[f'{group}/grad_norm'] = global_norm([grads[n] for n in names])
        return self.replace(rng=rng, params=params, opt_state=opt_state, step=self.step + 1), info

    @jax.jit
    def update(self, batch):
        """One gradient step on `batch` (dict observations/actions/rewards/masks/next_observations)."""
        return self._update(batch)

    @partial(jax.jit, static_argnames=('num_updates',))
    def update_many(self, dataset, key, num_updates: int):
        """`num_updates` steps in one compiled lax.scan, each on a batch sampled on the device from
        `dataset` (dict of device arrays; with action chunks also its 'chunk_starts'). Returns (agent,
        info averaged over the steps)."""
        c = self.config
        return scan_updates(type(self)._update, self, dataset, key, num_updates, c.batch_size, c.horizon, c.discount)

    # ---- acting ---------------------------------------------------------------------------
    def _noise(self, key, batch_size):
        return jax.random.normal(key, (batch_size, self.action_dim), jnp.float32)

    def sample_actions(self, observations, key, beta=0.0, settings: SamplerSettings | None = None):
        """The agent's policy from a⁰ = ε ~ N(0, I) drawn with `key`; returns (actions, diag).
        `actions_from_noise` acts from given noise; `settings` None: the config's (SamplerSettings.of)."""
        observations = jnp.asarray(observations, jnp.float32)
        batch = () if observations.ndim == 1 else (observations.shape[0],)
        noise = jax.random.normal(key, batch + (self.action_dim,), jnp.float32)
        return self.actions_from_noise(observations, noise, beta, settings)

    def actions_from_noise(self, observations, noise, beta=0.0, settings: SamplerSettings | None = None):
        raise NotImplementedError
