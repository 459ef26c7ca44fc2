"""Train-step plumbing shared by the agents: the optimiser, device-side batch sampling and a
lax.scan over many updates so a whole chunk of training is one compiled call, and agents of several
seeds stacked along a leading axis."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from agents.chunks import sample_chunk_batch

BATCH_KEYS = ('observations', 'actions', 'rewards', 'masks', 'next_observations')


def make_optimizer(config) -> optax.GradientTransformation:
    """Adam with the config's learning rate (one optimiser over all trainable parameters; Adam is
    per-parameter, so this equals separate actor/critic optimisers)."""
    return optax.adam(config.lr)


def sample_batch(dataset, key, batch_size: int):
    """Uniformly sample `batch_size` transitions (with replacement) from device-resident arrays."""
    size = dataset['observations'].shape[0]
    idx = jax.random.randint(key, (batch_size,), 0, size)
    return {k: jnp.take(dataset[k], idx, axis=0) for k in BATCH_KEYS}


def scan_updates(update_fn, agent, dataset, key, num_updates: int, batch_size: int, horizon: int = 1,
                 discount: float = 1.0):
    """Run `num_updates` calls of `update_fn(agent, batch) -> (agent, info)` inside lax.scan,
    sampling each batch on the device (h-step chunks when `horizon` > 1, agents/chunks.py); info is
    averaged over the scan. Every '*grad_norm' metric also gets a '*grad_norm_max' over the scan:
    Appendix A reads single-update spikes (≈400) as the warning sign, and an average over a chunk
    would dilute them."""
    needed = BATCH_KEYS + (('chunk_starts',) if horizon > 1 else ())
    missing = [k for k in needed if k not in dataset]
    if missing:
        raise ValueError(f'dataset is missing keys {missing}; it needs {list(needed)}')

    def body(carry, step_key):
        batch = (sample_batch(dataset, step_key, batch_size) if horizon == 1 else
                 sample_chunk_batch(dataset, step_key, batch_size, horizon, discount))
        carry, info = update_fn(carry, batch)
        return carry, info

    agent, infos = jax.lax.scan(body, agent, jax.random.split(key, num_updates))
    info = {k: jnp.mean(v, axis=0) for k, v in infos.items()}
    info.update({f'{k}_max': jnp.max(v, axis=0) for k, v in infos.items() if k.endswith('grad_norm')})
    return agent, info


def global_norm(tree) -> jax.Array:
    return optax.tree.norm(tree)


def q_statistics(q, prefix='critic'):
    """Mean / min / max of Q over ensemble and batch (Appendix A watches their spread)."""
    return {f'{prefix}/q_mean': q.mean(), f'{prefix}/q_min': q.min(), f'{prefix}/q_max': q.max()}


def as_key(seed_or_key):
    """An int seed or an existing PRNG key (possibly traced, e.g. under vmap) -> key."""
    if isinstance(seed_or_key, int):
        return jax.random.PRNGKey(seed_or_key)
    return seed_or_key


def create_agents(agent_cls, seeds, example_observations, example_actions, config):
    """One agent per seed, stacked along a leading axis (jax.vmap over the seeds' keys): every seed
    then trains in the same compiled call."""
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    obs = jnp.asarray(example_observations, jnp.float32)
    act = jnp.asarray(example_actions, jnp.float32)
    return jax.jit(jax.vmap(lambda k: agent_cls.create(k, obs, act, config)))(keys)


def select_seed(agents, index: int):
    """The agent of one seed out of the stacked agents."""
    return jax.tree.map(lambda x: x[index], agents)
