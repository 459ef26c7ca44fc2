"""SAC as OGBench trains its locomotion experts: networks, losses, the train state and its checkpoint.

Our own JAX/flax SAC with OGBench's published hyperparameters (OGBench `impls/agents/sac.py` defaults and
`data_gen_scripts/commands.sh`): Adam 1e-4, batch 256, 2x256 GELU MLPs, two critics with the min target,
tau 0.005, discount 0.99, auto-tuned temperature with target entropy -0.5*dim(A), tanh-squashed Gaussian
actor with state-dependent log-std in [-5, 2] and a 0.01-scaled final layer. Nothing here knows an
environment: tools/experts.py steps the online envs, evaluates and exports.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from envs.datasets import TRANSITION_KEYS

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclass(frozen=True)
class SACConfig:
    """SAC hyperparameters; defaults are OGBench's `impls/agents/sac.py`."""

    lr: float = 1e-4
    batch_size: int = 256
    actor_hidden: tuple[int, ...] = (256, 256)
    critic_hidden: tuple[int, ...] = (256, 256)
    critic_layer_norm: bool = False
    num_critics: int = 2
    discount: float = 0.99
    tau: float = 0.005
    target_entropy_multiplier: float = 0.5
    actor_final_scale: float = 0.01
    min_q: bool = True


# ----------------------------------------------------------------------------------------------- networks


def _init(scale: float = 1.0):
    return nn.initializers.variance_scaling(scale, 'fan_avg', 'uniform')


class MLP(nn.Module):
    hidden: tuple[int, ...]
    out_dim: int
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x):
        for size in self.hidden:
            x = nn.gelu(nn.Dense(size, kernel_init=_init())(x))
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        return nn.Dense(self.out_dim, kernel_init=_init())(x)


class Actor(nn.Module):
    """Tanh-squashed Gaussian; returns (mean, log_std) of the pre-tanh Gaussian."""

    hidden: tuple[int, ...]
    action_dim: int
    final_scale: float = 0.01

    @nn.compact
    def __call__(self, obs):
        x = obs
        for size in self.hidden:
            x = nn.gelu(nn.Dense(size, kernel_init=_init())(x))
        mean = nn.Dense(self.action_dim, kernel_init=_init(self.final_scale), name='mean')(x)
        log_std = nn.Dense(self.action_dim, kernel_init=_init(self.final_scale), name='log_std')(x)
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


class Critics(nn.Module):
    """An ensemble of Q networks (leading axis = member)."""

    hidden: tuple[int, ...]
    num: int
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs, actions):
        ensemble = nn.vmap(
            MLP,
            variable_axes={'params': 0},
            split_rngs={'params': True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num,
        )
        return ensemble(self.hidden, 1, self.layer_norm)(jnp.concatenate([obs, actions], -1))[..., 0]


def tanh_gaussian_sample(mean, log_std, key):
    """Reparameterised sample of tanh(N(mean, std)) and its log-density (tanh Jacobian computed stably)."""
    std = jnp.exp(log_std)
    eps = jax.random.normal(key, mean.shape)
    pre = mean + std * eps
    gauss_logp = -0.5 * jnp.square(eps) - log_std - 0.5 * jnp.log(2 * jnp.pi)
    log_det = 2.0 * (jnp.log(2.0) - pre - jax.nn.softplus(-2.0 * pre))  # log(1 - tanh(pre)^2)
    return jnp.tanh(pre), jnp.sum(gauss_logp - log_det, axis=-1)


# ---------------------------------------------------------------------------------------------------- SAC


def make_modules(sac: SACConfig, action_dim: int):
    return (
        Actor(sac.actor_hidden, action_dim, sac.actor_final_scale),
        Critics(sac.critic_hidden, sac.num_critics, sac.critic_layer_norm),
    )


def init_train_state(sac: SACConfig, obs_dim: int, action_dim: int, seed: int) -> dict:
    """All trainable state as one pytree (params, target critic, optimiser state, rng)."""
    actor, critics = make_modules(sac, action_dim)
    key, k_actor, k_critic = jax.random.split(jax.random.PRNGKey(seed), 3)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
    params = {
        'actor': actor.init(k_actor, obs)['params'],
        'critic': critics.init(k_critic, obs, act)['params'],
        'log_alpha': jnp.zeros(()),
    }
    return {
        'params': params,
        'target_critic': params['critic'],
        'opt_state': optax.adam(sac.lr).init(params),
        'rng': key,
    }


def make_update_fn(sac: SACConfig, action_dim: int) -> Callable:
    """Jitted `(state, batches) -> (state, info)` doing one SAC step per leading row of `batches` (lax.scan).

    As in OGBench, critic, actor and temperature losses are summed and take one Adam step together; the
    actor loss sees the critic without gradient and the critic target uses the current actor without gradient.
    """
    actor, critics = make_modules(sac, action_dim)
    tx = optax.adam(sac.lr)
    target_entropy = -sac.target_entropy_multiplier * action_dim
    aggregate = jnp.min if sac.min_q else jnp.mean

    def loss_fn(params, frozen, target_critic, batch, key):
        k_next, k_pi = jax.random.split(key)
        alpha = jnp.exp(frozen['log_alpha'])
        # Critic.
        next_mean, next_log_std = actor.apply({'params': frozen['actor']}, batch['next_observations'])
        next_actions, next_logp = tanh_gaussian_sample(next_mean, next_log_std, k_next)
        next_q = aggregate(critics.apply({'params': target_critic}, batch['next_observations'], next_actions), 0)
        target = batch['rewards'] + sac.discount * batch['masks'] * (next_q - alpha * next_logp)
        q = critics.apply({'params': params['critic']}, batch['observations'], batch['actions'])
        critic_loss = jnp.mean(jnp.square(q - target))
        # Actor.
        mean, log_std = actor.apply({'params': params['actor']}, batch['observations'])
        actions, logp = tanh_gaussian_sample(mean, log_std, k_pi)
        q_pi = aggregate(critics.apply({'params': frozen['critic']}, batch['observations'], actions), 0)
        actor_loss = jnp.mean(alpha * logp - q_pi)
        # Temperature.
        entropy = -jnp.mean(jax.lax.stop_gradient(logp))
        alpha_loss = jnp.exp(params['log_alpha']) * (entropy - target_entropy)
        info = {
            'critic_loss': critic_loss,
            'actor_loss': actor_loss,
            'q_mean': jnp.mean(q),
            'alpha': alpha,
            'entropy': entropy,
        }
        return critic_loss + actor_loss + alpha_loss, info

    def one_step(state, batch):
        key, sub = jax.random.split(state['rng'])
        params = state['params']
        frozen = jax.lax.stop_gradient(params)
        grads, info = jax.grad(loss_fn, has_aux=True)(params, frozen, state['target_critic'], batch, sub)
        updates, opt_state = tx.update(grads, state['opt_state'], params)
        params = optax.apply_updates(params, updates)
        target = jax.tree_util.tree_map(
            lambda p, t: sac.tau * p + (1 - sac.tau) * t, params['critic'], state['target_critic']
        )
        return {'params': params, 'target_critic': target, 'opt_state': opt_state, 'rng': key}, info

    @jax.jit
    def update(state, batches):
        state, infos = jax.lax.scan(one_step, state, batches)
        return state, jax.tree_util.tree_map(jnp.mean, infos)

    return update


def make_policy_fn(sac: SACConfig, action_dim: int) -> Callable:
    """Jitted `(actor_params, obs [B,D], key, deterministic) -> actions [B,A]` in [-1, 1]."""
    actor, _ = make_modules(sac, action_dim)

    def policy(actor_params, obs, key, deterministic: bool):
        mean, log_std = actor.apply({'params': actor_params}, obs)
        if deterministic:
            return jnp.tanh(mean)
        return tanh_gaussian_sample(mean, log_std, key)[0]

    return jax.jit(policy, static_argnums=3)


# ------------------------------------------------------------------------------------------ replay buffer


class ReplayBuffer:
    """Fixed-size numpy ring buffer; saved with the checkpoint so training resumes exactly where it stopped."""

    KEYS = TRANSITION_KEYS

    def __init__(self, capacity: int, obs_dim: int, action_dim: int):
        self.capacity, self.size, self.pointer = capacity, 0, 0
        self.data = {
            'observations': np.zeros((capacity, obs_dim), np.float32),
            'actions': np.zeros((capacity, action_dim), np.float32),
            'rewards': np.zeros((capacity,), np.float32),
            'masks': np.zeros((capacity,), np.float32),
            'next_observations': np.zeros((capacity, obs_dim), np.float32),
        }

    def add(self, **transition):
        for k in self.KEYS:
            self.data[k][self.pointer] = transition[k]
        self.pointer = (self.pointer + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def restore(self, rows: dict, pointer: int) -> None:
        """Load saved rows (a buffer's first `size` rows and its write pointer) into this one, so that the
        next `add` overwrites the oldest transition. Rows that fill this buffer exactly are taken as they
        are (same capacity: the run continues bit for bit); otherwise, when a resumed run's capacity
        differs, the ring is unrolled into chronological order and the newest rows that fit are kept."""
        size = len(rows[self.KEYS[0]])
        if size == self.capacity:
            for k in self.KEYS:
                self.data[k][:] = rows[k]
            self.size, self.pointer = size, pointer % self.capacity
            return
        kept = min(size, self.capacity)
        for k in self.KEYS:
            self.data[k][:kept] = np.roll(rows[k], -pointer, axis=0)[size - kept:]
        self.size, self.pointer = kept, kept % self.capacity

    def sample(self, rng: np.random.Generator, num: int, batch_size: int) -> dict:
        idx = rng.integers(0, self.size, size=(num, batch_size))
        return {k: v[idx] for k, v in self.data.items()}


# ------------------------------------------------------------------------------------------ checkpointing


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
    with open(tmp, 'wb') as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def to_numpy(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def save_checkpoint(run_dir: Path, state: dict, buffer: ReplayBuffer, step: int, np_rng_state, log: list) -> None:
    """Agent state (msgpack) + replay buffer (npz) + progress (json); the json is written last and names
    the step, so a crash mid-save leaves the previous consistent checkpoint in place."""
    atomic_write_bytes(run_dir / f'agent-{step}.msgpack', flax.serialization.to_bytes(to_numpy(state)))
    tmp = run_dir / f'.buffer-{step}.tmp{os.getpid()}.npz'
    np.savez(tmp, size=buffer.size, pointer=buffer.pointer, **{k: v[: buffer.size] for k, v in buffer.data.items()})
    os.replace(tmp, run_dir / f'buffer-{step}.npz')
    progress = {'step': step, 'np_rng_state': np_rng_state, 'log': log}
    atomic_write_text(run_dir / 'progress.json', json.dumps(progress))
    remove_other_steps(run_dir, step)


def remove_other_steps(run_dir: Path, step: int) -> None:
    """Delete agent states and buffers of steps other than `step` (called once progress.json names it)."""
    for old in list(run_dir.glob('agent-*.msgpack')) + list(run_dir.glob('buffer-*.npz')):
        if old.stem.split('-')[-1] != str(step):
            old.unlink(missing_ok=True)


def copy_checkpoint(source: Path, dest: Path) -> int:
    """Copy the checkpoint in `source` without its replay buffer (agent state, config, progress) to `dest`;
    progress.json goes last, so an interrupted copy is never taken for a checkpoint. Returns its step."""
    step = json.loads((source / 'progress.json').read_text())['step']
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest / f'agent-{step}.msgpack', (source / f'agent-{step}.msgpack').read_bytes())
    for name in ('config.json', 'progress.json'):
        atomic_write_text(dest / name, (source / name).read_text())
    remove_other_steps(dest, step)
    return step


def load_checkpoint(run_dir: Path, template: dict, buffer: ReplayBuffer):
    """(state, step, NumPy RNG state, log) of the checkpoint in `run_dir`, or None; fills `buffer` from the
    saved one when it is there and leaves it empty otherwise."""
    progress_path = run_dir / 'progress.json'
    if not progress_path.exists():
        return None
    progress = json.loads(progress_path.read_text())
    step = progress['step']
    state = flax.serialization.from_bytes(template, (run_dir / f'agent-{step}.msgpack').read_bytes())
    buffer_path = run_dir / f'buffer-{step}.npz'
    if buffer_path.exists():  # a carried-over snapshot has none: the caller refills it with the current policy
        with np.load(buffer_path) as saved:
            buffer.restore({k: saved[k] for k in ReplayBuffer.KEYS}, int(saved['pointer']))
    return state, step, progress['np_rng_state'], progress['log']
