"""Vectorised evaluation: every episode of an evaluation (all its βs, seeds and phases) in one rollout.

An evaluation is a list of `EpisodeGroup`s, one per (phase, β, seed). They all run together in one
pool of envs, `envs.num_envs // num_seeds` slots per trained seed: whenever an episode ends, its env
starts the next pending episode of the same seed, so no env idles while work is left, and every env
step makes one jitted sampler call for every live env of every seed (the seeds' parameters stacked
under vmap, β one value per row; a row with β = 0 takes exactly the unguided flow).

An episode is a function of its group and index alone: episode i starts from env seed
`env_seed_base + i` (every β, seed and checkpoint is scored on the same start states: a paired
comparison), and the flow's a⁰ at env step t is N(0, I) drawn with
fold_in(fold_in(group.key, i), t). So which slot, batch row or neighbours an episode gets cannot
change it: for a fixed pool shape the groups give the same records one after another as all at once
(tests/test_harness_evaluate.py). A pool of another shape compiles another sampler program whose
float rounding may differ in the last bit, which a chaotic rollout can amplify.

Per episode we record success (info['success'] at the end), return, length and non-finite ∇Q
fallbacks; per env step the sampler's per-flow-step ‖v‖, ‖∇Q‖ and ‖applied guidance‖ (float16 rows of
the group's trace, with `chunk_step`, the step's place in its action chunk: 0 where the chunk was
sampled, and the chunk's later steps repeat that sample's norms); the group's first `video_episodes`
episodes are rendered every `frame_skip` steps.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from agents.sampler import SamplerSettings

DIAG_KEYS = ('velocity_norm', 'grad_q_norm', 'guidance_norm')

# (observations [S, M, obs_dim], group keys [S, M, 2] uint32, episode indices [S, M], env steps [S, M],
#  βs [S, M]) -> (actions [S, M, action_dim], diag with [S, K, M] norms)
Policy = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[Any, dict]]


@partial(jax.jit, static_argnames=('settings',))
def _stacked_sample(agents, observations, keys, episodes, steps, betas, settings: SamplerSettings | None):
    def noise(key, episode, step):
        return jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, episode), step), (agents.action_dim,))

    def one_seed(agent, seed_observations, seed_noise, seed_betas):
        return agent.actions_from_noise(seed_observations, seed_noise, seed_betas, settings)

    return jax.vmap(one_seed)(agents, observations, jax.vmap(jax.vmap(noise))(keys, episodes, steps), betas)


def make_policy(agents: Any, settings: SamplerSettings | None = None) -> Policy:
    """The stacked agents' guided sampler as one jitted call per env step, under `settings` (None: the
    agents' own, SamplerSettings.of). β is traced, so every β shares one compilation per pool shape."""
    return lambda observations, keys, episodes, steps, betas: _stacked_sample(
        agents, jnp.asarray(observations, jnp.float32), jnp.asarray(keys, jnp.uint32), jnp.asarray(episodes, jnp.int32),
        jnp.asarray(steps, jnp.int32), betas, settings)


def group_key(seed: int, salt: int) -> np.ndarray:
    """A seed's sampler key for one phase: fold_in(PRNGKey(seed), salt), as host data."""
    return np.asarray(jax.random.fold_in(jax.random.PRNGKey(seed), salt), np.uint32)


@dataclass(frozen=True)
class EpisodeGroup:
    """`episodes` episodes of one trained seed (`seed_index` into the stacked agents) at one β."""
    phase: str
    beta: float
    seed_index: int
    episodes: int
    env_seed_base: int
    key: np.ndarray = field(compare=False)     # uint32 [2], see group_key
    video_episodes: int = 0


@dataclass
class GroupResult:
    group: EpisodeGroup
    episodes: list[dict]                  # per episode: episode, env_seed, success, return, length, ...
    trace: dict[str, np.ndarray]          # rows (episode, env step): [R] ints and [R, K] float16 norms (see rollout)
    videos: dict[int, list[np.ndarray]]   # episode index -> frames
    video_steps: dict[int, list[int]]     # episode index -> env step of each frame


@dataclass
class _TraceRows:
    """Diagnostics of every live env step, appended per sampler call and split by group at the end."""
    group: list = field(default_factory=list)
    episode: list = field(default_factory=list)
    step: list = field(default_factory=list)
    chunk_step: list = field(default_factory=list)
    fallbacks: list = field(default_factory=list)
    norms: dict = field(default_factory=lambda: {k: [] for k in DIAG_KEYS})

    def split(self, num_groups: int) -> list[dict[str, np.ndarray]]:
        if not self.group:
            empty = {k: np.zeros(0, np.int32) for k in ('episode', 'step', 'chunk_step', 'fallbacks')}
            return [{**empty, **{k: np.zeros((0, 0), np.float16) for k in DIAG_KEYS}} for _ in range(num_groups)]
        group = np.concatenate(self.group)
        order = np.argsort(group, kind='stable')
        bounds = np.searchsorted(group[order], np.arange(num_groups + 1))
        columns = {'episode': np.concatenate(self.episode).astype(np.int32),
                   'step': np.concatenate(self.step).astype(np.int32),
                   'chunk_step': np.concatenate(self.chunk_step).astype(np.int32),
                   'fallbacks': np.concatenate(self.fallbacks).astype(np.int32),
                   **{k: np.concatenate(self.norms[k]) for k in DIAG_KEYS}}
        columns = {k: v[order] for k, v in columns.items()}
        return [{k: v[bounds[g]:bounds[g + 1]] for k, v in columns.items()} for g in range(num_groups)]


def rollout(policy: Policy, envs: Any, groups: Sequence[EpisodeGroup], num_seeds: int, *, frame_skip: int = 1,
            progress: Callable[[int], None] | None = None,
            horizon: int = 1) -> tuple[list[GroupResult], dict[str, float]]:
    """Run every episode of `groups` in one pool (see the module docstring); returns one result per
    group, in order, and the seconds spent sampling, stepping and rendering.

    With action chunks (`horizon` h > 1, the policy's action is h env actions) each chunk runs open
    loop, and episodes start only every h pool steps, so that all live envs need their next chunk at
    the same step and the sampler is called once every h env steps. A freed env waits for that step
    (fewer than h steps); an episode's result does not depend on when it starts."""
    slots = envs.num_envs
    if slots % num_seeds:
        raise ValueError(f'{slots} envs do not split evenly over {num_seeds} seeds')
    per_seed = slots // num_seeds
    pending = [deque() for _ in range(num_seeds)]
    for g, group in enumerate(groups):
        pending[group.seed_index].extend((g, e) for e in range(group.episodes))
    keys = np.stack([g.key for g in groups]) if groups else np.zeros((0, 2), np.uint32)
    betas = np.asarray([g.beta for g in groups], np.float32)
    slot_group = np.full(slots, -1)       # -1: free
    slot_episode = np.zeros(slots, np.int64)
    slot_step = np.zeros(slots, np.int64)
    returns = np.zeros(slots)
    fallbacks = np.zeros(slots, np.int64)
    observations = np.zeros((slots, envs.observation_dim), np.float32)
    chunk = np.zeros((slots, horizon, envs.action_dim), np.float32)
    chunk_norms = {k: np.zeros((slots, 0), np.float32) for k in DIAG_KEYS}
    tick = 0
    records: list[list[dict]] = [[] for _ in groups]
    videos: list[dict] = [{} for _ in groups]
    video_steps: list[dict] = [{} for _ in groups]
    rows = _TraceRows()
    timing = {'sampling_s': 0.0, 'env_step_s': 0.0, 'rendering_s': 0.0}

    def recorded(slot: int) -> bool:
        return slot_group[slot] >= 0 and slot_episode[slot] < groups[slot_group[slot]].video_episodes

    def render(indices: list[int]) -> None:
        if not indices:
            return
        start = time.perf_counter()
        for slot, frame in zip(indices, envs.render(indices)):
            g, e = int(slot_group[slot]), int(slot_episode[slot])
            videos[g].setdefault(e, []).append(np.asarray(frame))
            video_steps[g].setdefault(e, []).append(int(slot_step[slot]))
        timing['rendering_s'] += time.perf_counter() - start

    while True:
        at_chunk_start = tick % horizon == 0
        starts = []
        for slot in np.flatnonzero(slot_group < 0) if at_chunk_start else ():
            queue = pending[slot // per_seed]
            if queue:
                g, e = queue.popleft()
                slot_group[slot], slot_episode[slot], slot_step[slot] = g, e, 0
                returns[slot] = fallbacks[slot] = 0
                starts.append(int(slot))
        if starts:
            start = time.perf_counter()
            observations[starts] = envs.start(starts, [groups[slot_group[s]].env_seed_base + int(slot_episode[s])
                                                       for s in starts])
            timing['env_step_s'] += time.perf_counter() - start
            render([s for s in starts if recorded(s)])
        live = np.flatnonzero(slot_group >= 0)
        if not live.size:
            if not any(pending):
                break
            tick += 1
            continue
        if at_chunk_start:
            group_of = np.maximum(slot_group, 0)
            start = time.perf_counter()
            actions, diag = policy(observations.reshape(num_seeds, per_seed, -1),
                                   keys[group_of].reshape(num_seeds, per_seed, 2),
                                   slot_episode.reshape(num_seeds, per_seed), slot_step.reshape(num_seeds, per_seed),
                                   np.where(slot_group >= 0, betas[group_of], 0.0).reshape(num_seeds, per_seed))
            chunk = np.asarray(actions).reshape(slots, horizon, -1)
            chunk_norms = {k: np.asarray(diag[k]).transpose(0, 2, 1).reshape(slots, -1) for k in DIAG_KEYS}
            timing['sampling_s'] += time.perf_counter() - start
        norms = {k: v[live] for k, v in chunk_norms.items()}
        # A chunk's non-finite ∇Q fallbacks count once, at the env step that sampled it.
        bad = (~np.isfinite(norms['grad_q_norm'])).sum(axis=1) * at_chunk_start
        rows.group.append(slot_group[live])
        rows.episode.append(slot_episode[live])
        rows.step.append(slot_step[live])
        rows.chunk_step.append(np.full(live.size, tick % horizon))
        rows.fallbacks.append(bad)
        for k in DIAG_KEYS:
            rows.norms[k].append(norms[k].astype(np.float16))
        # A slot whose episode may end now is handed its seed's next pending episode in advance, so the
        # worker restarts it in the same round trip (a recorded episode keeps its last frame instead);
        # with chunks, only when the next step starts a chunk.
        candidates, next_seeds = {}, np.full(slots, -1)
        for seed_index, queue in enumerate(pending if (tick + 1) % horizon == 0 else ()):
            unrecorded = [s for s in live[live // per_seed == seed_index] if not recorded(s)]
            for slot, (g, e) in zip(unrecorded, queue):
                candidates[int(slot)] = (g, e)
                next_seeds[slot] = groups[g].env_seed_base + e
        start = time.perf_counter()
        result = envs.step(chunk[:, tick % horizon], next_seeds)
        tick += 1
        timing['env_step_s'] += time.perf_counter() - start
        returns[live] += np.asarray(result.rewards)[live]
        fallbacks[live] += bad
        slot_step[live] += 1
        observations = np.array(result.observations, np.float32)
        finished = live[np.asarray(result.done)[live]]
        done_set = set(finished.tolist())
        render([int(s) for s in live if recorded(s) and (slot_step[s] % frame_skip == 0 or s in done_set)])
        restarted = set()
        for slot in finished:
            g, e = int(slot_group[slot]), int(slot_episode[slot])
            records[g].append({'episode': e, 'env_seed': groups[g].env_seed_base + e,
                               'success': bool(result.success[slot]), 'return': float(returns[slot]),
                               'length': int(slot_step[slot]), 'fallbacks': int(fallbacks[slot])})
            slot_group[slot] = -1
            if int(slot) in candidates:
                restarted.add(candidates[int(slot)])
                slot_group[slot], slot_episode[slot] = candidates[int(slot)]
                slot_step[slot] = returns[slot] = fallbacks[slot] = 0
        if restarted:
            pending = [deque(item for item in queue if item not in restarted) for queue in pending]
            render([int(s) for s in finished if int(s) in candidates and recorded(s)])
        if progress is not None and finished.size:
            progress(int(finished.size))
    traces = rows.split(len(groups))
    results = []
    for g, group in enumerate(groups):
        episodes = sorted(records[g], key=lambda r: r['episode'])
        _attach_guidance_stats(episodes, traces[g])
        results.append(GroupResult(group, episodes, traces[g], videos[g], video_steps[g]))
    return results, timing


def _attach_guidance_stats(episodes: list[dict], trace: dict[str, np.ndarray]) -> None:
    """Per episode: mean and max over (env step, flow step) of the applied guidance norm."""
    guidance = trace['guidance_norm'].astype(np.float64)
    for record in episodes:
        rows = guidance[trace['episode'] == record['episode']]
        finite = rows[np.isfinite(rows)]
        record['mean_guidance_norm'] = float(finite.mean()) if finite.size else float('nan')
        record['max_guidance_norm'] = float(finite.max()) if finite.size else float('nan')


def per_step_profile(trace_arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Mean over envs (and flow steps) of each norm per env step, and mean over rows per flow step."""
    steps = trace_arrays['step']
    out = {}
    if steps.size == 0:
        return out
    horizon = int(steps.max()) + 1
    counts = np.bincount(steps, minlength=horizon).astype(np.float64)
    for key in DIAG_KEYS:
        values = trace_arrays[key].astype(np.float64)
        values = np.where(np.isfinite(values), values, np.nan)
        per_row = np.nanmean(values, axis=1)
        sums = np.bincount(steps, weights=np.nan_to_num(per_row), minlength=horizon)
        out[f'{key}/by_env_step'] = sums / np.maximum(counts, 1)
        out[f'{key}/by_flow_step'] = np.nanmean(values, axis=0)
        out[f'{key}/by_flow_step_p90'] = np.nanquantile(values, 0.9, axis=0)
    return out
