"""Scoring agents at a set of βs, during and after training and in a β sweep of a checkpoint
(harness/beta_sweep.py), and the pool of evaluation envs they are scored in.

Every (phase, β, seed) of an evaluation is one group of episodes, and the groups run together in one
rollout (harness/evaluate.py). With several βs and selection episodes, every β is scored on the
selection start states (phase 'selection'), whose success picks the best β (`report.best_beta`),
and on the held-out start states that every reported rate comes from; each β's summary carries both.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from envs.vector import make_eval_envs
from harness.defaults import (EVAL_KEY_SALT, EVAL_SEED_BASE, FRAMES_PER_VIDEO, RENDER_SIZE, SELECTION_KEY_SALT,
                              SELECTION_SEED_BASE)
from harness.evaluate import EpisodeGroup, group_key, make_policy, per_step_profile, rollout
from harness.outputs import Timer, append_jsonl
from harness.plots import plot_guidance_norms
from harness.report import best_beta, summarize_beta
from harness.video import write_video


def make_eval_pool(config, timer: Timer):
    """The evaluation pool: `--eval-envs` envs, rounded up to a multiple of the seed count (each seed
    owns the same number of slots, see harness/evaluate.py)."""
    start = time.perf_counter()
    seeds = len(config.seeds)
    envs = make_eval_envs(config.task, -(-config.eval_envs // seeds) * seeds, render_size=RENDER_SIZE,
                          success_timing=config.success_timing)
    timer.add('evaluation', time.perf_counter() - start)
    return envs


def evaluate_betas(config, agents, envs, betas, step: int, phase: str, out: Path, timer: Timer, videos: bool,
                   bar) -> tuple[list[dict], list[dict]]:
    """Evaluate every seed's agent at every β; write eval.jsonl rows, traces and videos; return one
    summary per held-out β, and one per β scored on the selection episodes alone.

    With several βs and selection episodes (not for periodic evaluations), each (β, seed) is also
    scored on the selection start states, whose success picks the best β; those rows come first in
    eval.jsonl, then the held-out ones. With `--held-out all` both phases share one rollout; with
    `selected` the held-out episodes wait for the choice and score only β = 0 and the selected β, and
    the other βs keep their selection figures (what the choice was made against)."""
    select = phase != 'periodic' and config.selection_episodes and len(betas) > 1
    selection_groups = _groups(config, betas, 'selection', config.selection_episodes, SELECTION_SEED_BASE,
                               SELECTION_KEY_SALT, 0) if select else []
    selection = {}
    if select and config.held_out == 'selected':
        selection = {r['beta']: r for r in _evaluate_groups(config, agents, envs, selection_groups, step, out, timer,
                                                            bar)['selection']}
        chosen = best_beta([{'beta': b, 'selection_success_rate': r['success_rate']} for b, r in selection.items()])
        held = [b for b in betas if b in (0.0, chosen)]
        print(f'held-out episodes: {len(held) * config.eval_episodes} per seed, at β = '
              f"{', '.join(f'{b:g}' for b in held)} (--held-out all would score all {len(betas)} βs: "
              f'{len(betas) * config.eval_episodes} per seed)', flush=True)
        betas, selection_groups = held, []
    groups = selection_groups + _groups(config, betas, phase, config.eval_episodes, EVAL_SEED_BASE, EVAL_KEY_SALT,
                                        config.video_episodes if videos else 0)
    by_phase = _evaluate_groups(config, agents, envs, groups, step, out, timer, bar)
    selection = selection or {r['beta']: r for r in by_phase.get('selection', [])}
    results = by_phase[phase]
    for r in results:
        if r['beta'] in selection:
            r['selection_success_rate'] = selection[r['beta']]['success_rate']
            r['selection_ci95'] = selection[r['beta']]['ci95']
    held = {r['beta'] for r in results}
    selection_only = [{'beta': beta, 'selection_success_rate': r['success_rate'], 'selection_ci95': r['ci95'],
                       **{k: r[k] for k in ('mean_return', 'mean_length', 'mean_guidance_norm', 'fallbacks')}}
                      for beta, r in sorted(selection.items()) if beta not in held]
    return results, selection_only


def _evaluate_groups(config, agents, envs, groups, step: int, out: Path, timer: Timer, bar) -> dict[str, list[dict]]:
    """One rollout of `groups`; the summaries per β of each phase, in the groups' order."""
    frame_skip = config.frame_skip or max(1, round(envs.max_episode_steps / FRAMES_PER_VIDEO))
    ebar = tqdm(total=sum(g.episodes for g in groups), unit='ep', desc=f'eval @ {step}', leave=bar is None,
                dynamic_ncols=True, file=sys.stdout, mininterval=1.0)
    try:
        outcomes, timing = rollout(make_policy(agents, config.sampler), envs, groups, len(config.seeds),
                                   frame_skip=frame_skip, progress=ebar.update, horizon=config.agent_config.horizon)
    finally:
        ebar.close()
    timer.add('evaluation', timing['sampling_s'] + timing['env_step_s'])
    timer.add('rendering', timing['rendering_s'])
    return {label: _write_phase(config, [o for o in outcomes if o.group.phase == label], step, out, timer)
            for label in dict.fromkeys(g.phase for g in groups)}


def _groups(config, betas, phase: str, episodes: int, env_seed_base: int, key_salt: int, video_episodes: int):
    """One group per (β, seed): every β of a seed shares the seed's sampler key for the phase, so βs
    differ by the policy only, on the same start states and noise."""
    return [EpisodeGroup(phase, float(beta), index, episodes, env_seed_base, group_key(seed, key_salt),
                         video_episodes if index == 0 else 0)
            for beta in betas for index, seed in enumerate(config.seeds)]


def _write_phase(config, outcomes, step: int, out: Path, timer: Timer) -> list[dict]:
    """eval.jsonl rows and one summary per β of one phase; traces, videos and the guidance plot only
    for the reported (final / sweep) phase."""
    phase = outcomes[0].group.phase
    reported = phase not in ('periodic', 'selection')
    results, profiles = [], {}
    for beta in dict.fromkeys(o.group.beta for o in outcomes):
        rows, traces = [], []
        for outcome in (o for o in outcomes if o.group.beta == beta):
            seed = config.seeds[outcome.group.seed_index]
            rows += [{'phase': phase, 'step': step, 'beta': beta, 'seed': seed, **episode}
                     for episode in outcome.episodes]
            if reported:
                traces.append(outcome.trace)
                np.savez_compressed(out / 'eval' / f'guidance-step{step}-beta{beta:g}-seed{seed}.npz', **outcome.trace)
            start = time.perf_counter()
            for episode, frames in outcome.videos.items():
                write_video(out / 'videos' / f'beta{beta:g}-seed{seed}-ep{episode}.mp4', frames,
                            outcome.video_steps[episode], _episode_profile(outcome.trace, episode), beta,
                            horizon=config.agent_config.horizon)
            timer.add('rendering', time.perf_counter() - start)
        append_jsonl(out / 'eval.jsonl', rows)
        summary = summarize_beta(beta, rows)
        summary['step'] = step
        results.append(summary)
        if traces:
            profiles[beta] = per_step_profile({k: np.concatenate([t[k] for t in traces]) for k in traces[0]})
    if reported:
        start = time.perf_counter()
        plot_guidance_norms(profiles, out / 'plots' / 'guidance_norms.png',
                            f'{config.task.env_id}, {config.agent}, update {step}: guided sampler norms',
                            horizon=config.agent_config.horizon)
        timer.add('writing', time.perf_counter() - start)
    return results


def _episode_profile(arrays: dict, episode: int) -> dict[str, np.ndarray]:
    """Per env step of one episode: mean over flow steps of ‖β∇Q‖ and ‖v‖ (the video strip)."""
    rows = arrays['episode'] == episode
    order = np.argsort(arrays['step'][rows])
    guidance = arrays['guidance_norm'][rows][order].astype(np.float32)
    velocity = arrays['velocity_norm'][rows][order].astype(np.float32)
    return {'‖β∇Q‖': np.nanmean(guidance, axis=1), '‖v‖': np.nanmean(velocity, axis=1)}
