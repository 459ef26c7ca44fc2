"""Action chunks (Q-chunking): the actor and critic of a horizon-h agent act on a_{t:t+h}, the h·|A|
concatenation of h consecutive dataset actions, and the critic backs up over h steps:

    Q(s_t, a_{t:t+h}) <- sum_{j<h} γ^j r_{t+j} + γ^h m Q̄(s_{t+h}, ã_{t+h:t+2h}).

A chunk never crosses an episode's end: only starts whose h transitions lie in one episode are
sampled. A solved transition (mask 0) inside a chunk ends its return there and stops the bootstrap
(m = 0), as a one-step target does at a solved transition. With h = 1 every index is a start and
the batch is the one-step batch, drawn with the same random numbers.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def episode_ids(observations: np.ndarray, next_observations: np.ndarray) -> np.ndarray:
    """Episode index of each transition of a concatenated dataset: a new episode starts wherever a
    transition's observation is not the previous transition's next observation."""
    starts = np.ones(len(observations), bool)
    starts[1:] = np.any(observations[1:] != next_observations[:-1], axis=1)
    return np.cumsum(starts) - 1


def chunk_starts(observations: np.ndarray, next_observations: np.ndarray, horizon: int) -> np.ndarray:
    """Indices t whose transitions t, ..., t+h-1 all lie in one episode (int32)."""
    if horizon < 1:
        raise ValueError(f'horizon must be >= 1, not {horizon}')
    size = len(observations)
    if horizon == 1:
        return np.arange(size, dtype=np.int32)
    episodes = episode_ids(observations, next_observations)
    first = np.arange(max(size - horizon + 1, 0))
    return first[episodes[first] == episodes[first + horizon - 1]].astype(np.int32)


def sample_chunk_batch(dataset: dict, key: jax.Array, batch_size: int, horizon: int, discount: float) -> dict:
    """`batch_size` chunks drawn uniformly (with replacement) from dataset['chunk_starts'], on the device:
    observations s_t, actions a_{t:t+h} flattened to [B, h·|A|], the chunk's discounted return cut at
    its first solved transition, mask 0 if any transition of the chunk solved the task, and s_{t+h}."""
    starts = dataset['chunk_starts']
    first = jnp.take(starts, jax.random.randint(key, (batch_size,), 0, starts.shape[0]))
    steps = first[:, None] + jnp.arange(horizon)
    masks = jnp.take(dataset['masks'], steps, axis=0)
    # A reward counts while no earlier transition of the chunk solved the task.
    counted = jnp.cumprod(jnp.concatenate([jnp.ones((batch_size, 1), masks.dtype), masks[:, :-1]], axis=1), axis=1)
    rewards = jnp.take(dataset['rewards'], steps, axis=0)
    return {'observations': jnp.take(dataset['observations'], first, axis=0),
            'actions': jnp.take(dataset['actions'], steps, axis=0).reshape(batch_size, -1),
            'rewards': jnp.sum(counted * rewards * discount ** jnp.arange(horizon, dtype=rewards.dtype), axis=1),
            'masks': jnp.prod(masks, axis=1),
            'next_observations': jnp.take(dataset['next_observations'], first + horizon - 1, axis=0)}
