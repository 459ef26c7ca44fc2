"""Vectorised evaluation rollouts: one batched, jitted guided-sampler call per env step for all envs.

Episodes run in waves of `envs.num_envs` parallel environments. Episode i always starts from env
seed `env_seed_base + i`, so every β, seed and checkpoint is scored on the same start states
(a paired comparison: differences between β come from the policy, not from easier starts).
Per episode we record success (info['success'] at the end), return and length; per env step the
sampler's per-flow-step diagnostics ‖v‖, ‖∇Q‖, ‖applied guidance‖ are kept as float16 rows
(`GuidanceTrace`) and the first `video_episodes` episodes are rendered every `frame_skip` steps.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

DIAG_KEYS = ('velocity_norm', 'grad_q_norm', 'guidance_norm')

# (observations [N, obs_dim], key, beta) -> (actions [N, act_dim], diag with [K, N] arrays + count)
SampleFn = Callable[[np.ndarray, jax.Array, Any], tuple[jax.Array, dict]]


@dataclass(frozen=True)
class SamplerSettings:
    """The guided sampler's test-time knobs (agents/sampler.py), all but β: they never touch training,
    so a checkpoint can be evaluated under any of them. Defaults are eq. 5 as the paper runs it.
    `flow_steps` None acts with the agent's trained step count; FQL ignores all of them."""
    beta_schedule: str = 'constant'
    grad_clip: float | None = None
    trust_ratio: float | None = None
    flow_steps: int | None = None
    guidance_q_agg: str = 'mean'
    guidance_at: str = 'noisy'
    guidance_scale: str = 'absolute'

    def sample_kwargs(self) -> dict:
        return dict(num_steps=self.flow_steps, beta_schedule=self.beta_schedule, grad_clip=self.grad_clip,
                    trust_ratio=self.trust_ratio, q_agg=self.guidance_q_agg, guidance_at=self.guidance_at,
                    guidance_scale=self.guidance_scale)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@partial(jax.jit, static_argnames=('settings',))
def _sample(agent, observations, key, beta, settings: SamplerSettings):
    return agent.sample_actions(observations, key, beta, **settings.sample_kwargs())


def make_sample_fn(agent: Any, settings: SamplerSettings = SamplerSettings()) -> SampleFn:
    """The agent's guided sampler as one jitted call; β is traced, so every β and every seed's agent
    (same structure) share one compilation."""
    return lambda observations, key, beta: _sample(agent, jnp.asarray(observations, jnp.float32), key,
                                                   jnp.asarray(beta, jnp.float32), settings)


@dataclass
class GuidanceTrace:
    """Sampler diagnostics of every env step of every episode, one row per (episode, env step)."""
    episode: list = field(default_factory=list)     # episode index of each row
    step: list = field(default_factory=list)        # env step within the episode
    norms: dict = field(default_factory=lambda: {k: [] for k in DIAG_KEYS})   # rows of [K] per key
    fallbacks_per_call: list = field(default_factory=list)   # non-finite fallbacks of each sampler call

    def arrays(self) -> dict[str, np.ndarray]:
        """Compact arrays for np.savez_compressed: [R] ints and [R, K] float16 norms."""
        out = {'episode': np.asarray(self.episode, np.int32), 'step': np.asarray(self.step, np.int32),
               'fallbacks_per_call': np.asarray(self.fallbacks_per_call, np.int32)}
        for key in DIAG_KEYS:
            rows = self.norms[key]
            out[key] = np.asarray(np.concatenate(rows, axis=0) if rows else np.zeros((0, 0)), np.float16)
        return out


@dataclass
class EvalResult:
    episodes: list[dict]              # per episode: episode, env_seed, success, return, length, ...
    trace: GuidanceTrace
    videos: dict[int, list[np.ndarray]]   # episode index -> frames
    video_steps: dict[int, list[int]]     # episode index -> env step of each frame
    timing: dict[str, float]


def evaluate(sample_fn: SampleFn, envs: Any, *, beta: float, num_episodes: int, key: jax.Array,
             env_seed_base: int = 0, video_episodes: int = 0, frame_skip: int = 1,
             progress: Callable[[int], None] | None = None) -> EvalResult:
    """Run `num_episodes` episodes with guidance β; see the module docstring for what is recorded."""
    num_envs = envs.num_envs
    episodes: list[dict] = []
    trace = GuidanceTrace()
    videos: dict[int, list[np.ndarray]] = {}
    video_steps: dict[int, list[int]] = {}
    timing = {'sampling_s': 0.0, 'env_step_s': 0.0, 'rendering_s': 0.0}
    calls = 0
    for first in range(0, num_episodes, num_envs):
        count = min(num_envs, num_episodes - first)
        episode_ids = np.arange(first, first + num_envs)
        # Envs beyond `count` are not reset and never stepped; the policy batch keeps its fixed shape.
        observations = envs.reset([int(env_seed_base + i) for i in episode_ids[:count]])
        done = np.arange(num_envs) >= count
        returns = np.zeros(num_envs)
        lengths = np.zeros(num_envs, np.int64)
        success = np.zeros(num_envs, bool)
        bad_steps = np.zeros(num_envs, np.int64)
        recorded = [i for i in range(count) if episode_ids[i] < video_episodes]
        for i in recorded:
            videos[int(episode_ids[i])], video_steps[int(episode_ids[i])] = [], []
        timing['rendering_s'] += _render(envs, recorded, episode_ids, 0, videos, video_steps)
        for t in range(envs.max_episode_steps + 1):
            if done.all():
                break
            start = time.perf_counter()
            actions, diag = sample_fn(observations, jax.random.fold_in(key, calls), beta)
            actions = np.asarray(actions)
            diag = {k: np.asarray(v) for k, v in diag.items()}
            timing['sampling_s'] += time.perf_counter() - start
            calls += 1
            live = np.flatnonzero(~done)
            trace.episode.extend(episode_ids[live].tolist())
            trace.step.extend([t] * len(live))
            for k in DIAG_KEYS:
                trace.norms[k].append(diag[k][:, live].T)
            trace.fallbacks_per_call.append(int(diag.get('nonfinite_fallbacks', 0)))
            bad_steps[live] += (~np.isfinite(diag['grad_q_norm'][:, live])).sum(axis=0)
            start = time.perf_counter()
            result = envs.step(actions)
            timing['env_step_s'] += time.perf_counter() - start
            returns[live] += np.asarray(result.rewards)[live]
            lengths[live] += 1
            newly_done = live[np.asarray(result.done)[live]]
            success[live] = np.asarray(result.success)[live]
            done = done | np.asarray(result.done)
            observations = result.observations
            live_set, finished = set(live.tolist()), set(newly_done.tolist())
            frames_now = [i for i in recorded if i in live_set and ((t + 1) % frame_skip == 0 or i in finished)]
            timing['rendering_s'] += _render(envs, frames_now, episode_ids, t + 1, videos, video_steps)
            if progress is not None:
                progress(len(newly_done))
        for i in range(count):
            episodes.append({'episode': int(episode_ids[i]), 'env_seed': int(env_seed_base + episode_ids[i]),
                             'success': bool(success[i]), 'return': float(returns[i]),
                             'length': int(lengths[i]), 'fallbacks': int(bad_steps[i])})
    _attach_guidance_stats(episodes, trace)
    return EvalResult(episodes, trace, videos, video_steps, timing)


def _render(envs, indices: Sequence[int], episode_ids, step: int, videos, video_steps) -> float:
    if not indices:
        return 0.0
    start = time.perf_counter()
    frames = envs.render(list(indices))
    for i, frame in zip(indices, frames):
        videos[int(episode_ids[i])].append(np.asarray(frame))
        video_steps[int(episode_ids[i])].append(step)
    return time.perf_counter() - start


def _attach_guidance_stats(episodes: list[dict], trace: GuidanceTrace) -> None:
    """Per episode: mean and max over (env step, flow step) of the applied guidance norm."""
    if not trace.episode:
        return
    episode_of_row = np.asarray(trace.episode)
    guidance = np.concatenate(trace.norms['guidance_norm'], axis=0).astype(np.float64)
    for record in episodes:
        rows = guidance[episode_of_row == record['episode']]
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
