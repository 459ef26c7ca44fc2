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

# What precedes the Appendix-A failure, as `DivergenceWatch` reads it (see its docstring).
Q_RANGE_MARGIN = 0.1         # Q may leave the range the rewards allow by 10 % of its width
GROWTH_WINDOW = 5            # chunks in a row ...
GROWTH_FACTOR = 4.0          # ... whose scale-free critic gradient norm is 4x its lowest so far


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


def q_bounds(rewards, discount: float) -> tuple[float, float]:
    """The range the rewards allow Q to take: every Q is a discounted sum r_0 + γ r_1 + ... that may stop
    at any step (mask 0), so it lies between min(r_min, r_min / (1 - γ)) and max(r_max, r_max / (1 - γ))."""
    r_min, r_max = float(np.min(rewards)), float(np.max(rewards))
    horizon = 1.0 / (1.0 - discount) if discount < 1 else math.inf
    return min(r_min, r_min * horizon), max(r_max, r_max * horizon)


class DivergenceWatch:
    """Warnings for what preceded QFQL's puzzle-3x3 failure (Appendix A), per seed and chunk:

    * 'q_out_of_range': the critic's Q leaves the range the rewards allow (`q_bounds`) by more than
      Q_RANGE_MARGIN of its width -- TD values that no return could have;
    * 'critic_grad_growth': the chunk-mean critic gradient norm, divided by (1 + |mean Q|), stays above
      GROWTH_FACTOR x its lowest value so far for GROWTH_WINDOW chunks in a row. The raw norm is no
      signal on its own: it grows with |Q| in healthy runs (a cube-single run where guidance worked:
      from 2 to 23 while mean Q went from -5 to -55, and single-update maxima above 100 in most chunks,
      which is why a "norm above 100" warning fires on runs that work). The ratio drifted from its
      lowest, 0.18, to 0.3-0.5 there, so growth counts only beyond 4x (Appendix A: ~400 against < 10).
    Non-finite guidance at evaluation is the third sign; the harness counts it from the sampler.
    """

    def __init__(self, seeds: Sequence[int], bounds: tuple[float, float]):
        self.seeds = list(seeds)
        low, high = bounds
        margin = Q_RANGE_MARGIN * max(high - low, 1.0)
        self.low, self.high = low - margin, high + margin
        self.ratios: dict[int, list[float]] = {seed: [] for seed in self.seeds}

    def check(self, step: int, infos: Sequence[dict]) -> list[tuple[str, str]]:
        """(kind, message) for every sign seen in this chunk's per-seed infos."""
        found = []
        for seed, info in zip(self.seeds, infos):
            q_min, q_max = info.get('critic/q_min', 0.0), info.get('critic/q_max', 0.0)
            if not (self.low <= q_min and q_max <= self.high):
                found.append(('q_out_of_range', f'seed {seed}: Q in [{q_min:.3g}, {q_max:.3g}] at update {step}, '
                                                f'outside [{self.low:.3g}, {self.high:.3g}] that the rewards allow'))
            ratio = info.get('critic/grad_norm', 0.0) / (1.0 + abs(info.get('critic/q_mean', 0.0)))
            history = self.ratios[seed]
            history.append(ratio if math.isfinite(ratio) else math.inf)
            earlier = history[:-GROWTH_WINDOW]
            if earlier and all(r > GROWTH_FACTOR * min(earlier) for r in history[-GROWTH_WINDOW:]):
                found.append(('critic_grad_growth',
                              f'seed {seed}: critic grad norm / (1 + |Q|) = {ratio:.3g} at update {step}, above '
                              f'{GROWTH_FACTOR:g}x its lowest ({min(earlier):.3g}) for {GROWTH_WINDOW} chunks'))
        return found
