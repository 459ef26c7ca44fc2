"""The training loop: many updates per jitted call, several seeds in one process, deterministic resume.

Seeds: one agent per seed is built with jax.vmap over PRNG keys, and one jitted call advances all
of them by `chunk` updates (jax.vmap over agent.update_many, which samples its batches on the
device with lax.scan). Parameters therefore carry a leading seed axis everywhere in the harness.

Determinism: the key of the chunk that starts at update `step` is fold_in(PRNGKey(seed), step),
so it depends only on the seed and the position, and the rest of the randomness lives in the agent
state that checkpoints save. Chunks always start at multiples of `chunk` (evaluations and
checkpoints are placed on chunk boundaries), so a run stopped after a checkpoint and resumed with
--resume performs exactly the same computations as one that was never stopped.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

GRAD_NORM_WARNING = 100.0   # Appendix A: gradient norms of ~400 went with the puzzle-3x3 failure
GRAD_NORM_ALARM_SUFFIX = 'grad_norm_max'   # the largest norm of a chunk (agents.training.scan_updates)


def create_agents(agent_cls: Any, seeds: Sequence[int], example_observations, example_actions, config) -> Any:
    """One agent per seed, stacked along a leading axis (jax.vmap over the seeds' keys)."""
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    obs = jnp.asarray(example_observations, jnp.float32)
    act = jnp.asarray(example_actions, jnp.float32)
    return jax.jit(jax.vmap(lambda k: agent_cls.create(k, obs, act, config)))(keys)


def select_seed(agents: Any, index: int) -> Any:
    """The agent of one seed out of the stacked agents."""
    return jax.tree.map(lambda x: x[index], agents)


def chunk_keys(seeds: Sequence[int], step: int) -> jax.Array:
    """[S, 2] keys of the chunk starting at `step`: a function of (seed, step) only."""
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(int(s)), int(step)) for s in seeds])


def make_chunk_fn(num_updates: int) -> Callable:
    """jit(vmap over seeds of agent.update_many(dataset, key, num_updates)); dataset is shared."""
    def run(agents, dataset, keys):
        return jax.vmap(lambda agent, key: agent.update_many(dataset, key, num_updates))(agents, keys)
    return jax.jit(run)


def chunk_boundaries(start: int, end: int, chunk: int) -> list[tuple[int, int]]:
    """[(first, count)] covering [start, end) with pieces that end on multiples of `chunk`."""
    pieces, step = [], start
    while step < end:
        stop = min((step // chunk + 1) * chunk, end)
        pieces.append((step, stop - step))
        step = stop
    return pieces


def align(interval: int, chunk: int) -> int:
    """Round an eval/checkpoint interval up to a whole number of chunks (0 stays 0 = never)."""
    return 0 if interval <= 0 else int(math.ceil(interval / chunk) * chunk)


@dataclass
class ChunkReport:
    step: int                 # updates done after this chunk
    infos: list[dict]         # per seed: metric name -> float
    seconds: float            # wall time of the chunk (without compilation)
    compile_seconds: float    # compilation time spent for this chunk size (0 when cached)


class Trainer:
    """Runs chunks of updates for stacked agents; callers decide when to evaluate and checkpoint."""

    def __init__(self, agents: Any, dataset: dict, seeds: Sequence[int]):
        self.agents = agents
        self.dataset = {k: jnp.asarray(v) for k, v in dataset.items()}
        self.seeds = list(seeds)
        self._compiled: dict[int, Any] = {}

    def _compiled_for(self, num_updates: int, keys) -> tuple[Any, float]:
        if num_updates in self._compiled:
            return self._compiled[num_updates], 0.0
        start = time.perf_counter()
        compiled = make_chunk_fn(num_updates).lower(self.agents, self.dataset, keys).compile()
        self._compiled[num_updates] = compiled
        return compiled, time.perf_counter() - start

    def run_chunk(self, step: int, num_updates: int) -> ChunkReport:
        keys = chunk_keys(self.seeds, step)
        compiled, compile_seconds = self._compiled_for(num_updates, keys)
        start = time.perf_counter()
        agents, info = compiled(self.agents, self.dataset, keys)
        info = jax.device_get(info)
        self.agents = agents
        seconds = time.perf_counter() - start
        infos = [{k: float(np.asarray(v)[i]) for k, v in info.items()} for i in range(len(self.seeds))]
        return ChunkReport(step + num_updates, infos, seconds, compile_seconds)


def grad_norm_alarms(infos: Sequence[dict], seeds: Sequence[int], threshold: float = GRAD_NORM_WARNING) -> list[str]:
    """Messages for every (seed, per-chunk maximum grad norm) above the Appendix-A threshold."""
    alarms = []
    for seed, info in zip(seeds, infos):
        for key, value in info.items():
            if key.endswith(GRAD_NORM_ALARM_SUFFIX) and not (value <= threshold):
                alarms.append(f'seed {seed}: {key} = {value:.3g} > {threshold:g}')
    return alarms
