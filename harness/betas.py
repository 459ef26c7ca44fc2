"""Scoring an agent at a set of βs (used during and after training) and `evaluate_checkpoint`, the
`--checkpoint` mode: a β sweep of a trained agent without training.

With several βs and selection episodes, every β is first scored on the selection start states
(phase 'selection'), whose success picks the best β (`report.best_beta`), and then on the held-out
start states that every reported rate comes from; each β's summary carries both.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from agents import AGENTS
from agents.training import create_agents, select_seed
from envs.vector import make_eval_envs
from harness.checkpoints import read_meta, restore_checkpoint, write_json_atomic, write_text_atomic
from harness.defaults import (EVAL_KEY_SALT, EVAL_SEED_BASE, FRAMES_PER_VIDEO, RENDER_SIZE, SELECTION_KEY_SALT,
                              SELECTION_SEED_BASE)
from harness.evaluate import evaluate, make_sample_fn, per_step_profile
from harness.outputs import Timer, append_jsonl, fallback_warning, print_result, write_summary
from harness.page import write_page
from harness.plots import plot_guidance_norms, plot_success_vs_beta
from harness.report import summarize_beta, sweep_csv, sweep_table
from harness.tracking import make_tracker
from harness.video import write_video


def make_envs(config, timer: Timer):
    start = time.perf_counter()
    envs = make_eval_envs(config.task, config.eval_envs, render_size=RENDER_SIZE, success_timing=config.success_timing)
    timer.add('evaluation', time.perf_counter() - start)
    return envs


def evaluate_betas(config, agents, envs, betas, step: int, phase: str, out: Path, timer: Timer, videos: bool, bar):
    """Evaluate every seed's agent at every β; write eval.jsonl rows, traces and videos; return summaries."""
    selection = {}
    if phase != 'periodic' and config.selection_episodes and len(betas) > 1:
        for r in _score_betas(config, agents, envs, betas, step, 'selection', out, timer, False, bar,
                              config.selection_episodes, SELECTION_SEED_BASE, SELECTION_KEY_SALT):
            selection[r['beta']] = r
    results = _score_betas(config, agents, envs, betas, step, phase, out, timer, videos, bar,
                           config.eval_episodes, EVAL_SEED_BASE, EVAL_KEY_SALT)
    for r in results:
        if r['beta'] in selection:
            r['selection_success_rate'] = selection[r['beta']]['success_rate']
            r['selection_ci95'] = selection[r['beta']]['ci95']
    return results


def _score_betas(config, agents, envs, betas, step: int, phase: str, out: Path, timer: Timer, videos: bool, bar,
                 episodes: int, env_seed_base: int, key_salt: int):
    """`episodes` per seed and β from env seeds env_seed_base + i; traces, videos and the guidance
    plot only for the reported (final / sweep) phase."""
    reported = phase not in ('periodic', 'selection')
    results, profiles = [], {}
    frame_skip = config.frame_skip or max(1, round(envs.max_episode_steps / FRAMES_PER_VIDEO))
    total = len(betas) * len(config.seeds) * episodes
    label = 'select' if phase == 'selection' else 'eval'
    ebar = tqdm(total=total, unit='ep', desc=f'{label} @ {step}', leave=bar is None, dynamic_ncols=True,
                file=sys.stdout, mininterval=1.0)
    try:
        for beta in betas:
            rows, traces = [], []
            for index, seed in enumerate(config.seeds):
                key = jax.random.fold_in(jax.random.PRNGKey(seed), key_salt)
                result = evaluate(make_sample_fn(select_seed(agents, index), config.sampler), envs, beta=beta,
                                  num_episodes=episodes, key=key, env_seed_base=env_seed_base, frame_skip=frame_skip,
                                  video_episodes=config.video_episodes if (videos and index == 0) else 0,
                                  progress=ebar.update)
                timer.add('evaluation', result.timing['sampling_s'] + result.timing['env_step_s'])
                timer.add('rendering', result.timing['rendering_s'])
                rows += [{'phase': phase, 'step': step, 'beta': beta, 'seed': seed, **episode}
                         for episode in result.episodes]
                arrays = result.trace.arrays()
                if reported:
                    traces.append(arrays)
                    np.savez_compressed(out / 'eval' / f'guidance-step{step}-beta{beta:g}-seed{seed}.npz', **arrays)
                start = time.perf_counter()
                for episode, frames in result.videos.items():
                    if frames:
                        write_video(out / 'videos' / f'beta{beta:g}-seed{seed}-ep{episode}.mp4', frames,
                                    result.video_steps[episode], _episode_profile(arrays, episode), beta)
                timer.add('rendering', time.perf_counter() - start)
            append_jsonl(out / 'eval.jsonl', rows)
            summary = summarize_beta(beta, rows)
            summary['step'] = step
            results.append(summary)
            if traces:
                profiles[beta] = per_step_profile({k: np.concatenate([t[k] for t in traces]) for k in traces[0]})
    finally:
        ebar.close()
    if reported:
        start = time.perf_counter()
        plot_guidance_norms(profiles, out / 'plots' / 'guidance_norms.png',
                            f'{config.task.env_id}, {config.agent}, update {step}: guided sampler norms')
        timer.add('writing', time.perf_counter() - start)
    return results


def _episode_profile(arrays: dict, episode: int) -> dict[str, np.ndarray]:
    """Per env step of one episode: mean over flow steps of ‖β∇Q‖ and ‖v‖ (the video strip)."""
    rows = arrays['episode'] == episode
    order = np.argsort(arrays['step'][rows])
    guidance = arrays['guidance_norm'][rows][order].astype(np.float32)
    velocity = arrays['velocity_norm'][rows][order].astype(np.float32)
    return {'‖β∇Q‖': np.nanmean(guidance, axis=1), '‖v‖': np.nanmean(velocity, axis=1)}


def evaluate_checkpoint(config) -> int:
    """The --checkpoint mode: restore the agents and score them at every β into a new sweep folder."""
    timer = Timer()
    started = time.perf_counter()
    envs = make_envs(config, timer)
    try:
        start = time.perf_counter()
        template = create_agents(AGENTS[config.agent], config.seeds, np.zeros((1, envs.observation_dim), np.float32),
                                 np.zeros((1, envs.action_dim), np.float32), config.agent_config)
        agents = restore_checkpoint(config.checkpoint, template,
                                    f'task {config.task.env_id} (obs {envs.observation_dim}, action {envs.action_dim})')
        timer.add('setup', time.perf_counter() - start)
        trained_on = read_meta(config.checkpoint)['task']['env_id']
        if trained_on != config.task.env_id:
            print(f'note: the checkpoint was trained on {trained_on}; evaluating it on {config.task.env_id}')
        out = config.out
        for sub in ('eval', 'videos', 'plots'):
            (out / sub).mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / 'config.json', config.to_json())
        tracker = make_tracker(config)
        results = evaluate_betas(config, agents, envs, config.final_betas, config.steps, 'sweep', out, timer,
                                 videos=config.video_episodes > 0, bar=None)
        tracker.log_evaluation(config.steps, 'sweep', results)
    finally:
        envs.close()
    write_text_atomic(out / 'sweep.md', sweep_table(results))
    write_text_atomic(out / 'sweep.csv', sweep_csv(results))
    if len(results) > 1:
        plot_success_vs_beta(results, out / 'plots' / 'success_vs_beta.png',
                             f'{config.task.env_id}, {config.agent}, checkpoint step {config.steps}')
    timer.add('total', time.perf_counter() - started)
    summary = write_summary(config, out, results, timer, extra={'divergence_warnings': fallback_warning(results)})
    tracker.finish(summary, out)
    print_result(out, results, timer)
    print(f'table: {out}/sweep.md, plot: {out}/plots/success_vs_beta.png')
    print(f'page: {write_page(out)}  (python -m harness.view {out})')
    return 0
