"""`evaluate_checkpoint`, the `--checkpoint` mode of `python -m harness.run`: a β sweep of a trained
agent without training, into a new folder (sweep.md, sweep.csv, summary.json, plots, videos, page).

The agents are scored as after training (harness/scoring.py); the folder is held by this process
(`run_folder_lock`) and, when the sweep fails before writing a file, removed.
"""
from __future__ import annotations

import shutil
import time

import numpy as np

from agents import AGENTS
from agents.training import create_agents
from harness.checkpoints import read_meta, restore_checkpoint
from harness.errors import UsageError
from harness.files import write_json_atomic, write_text_atomic
from harness.outputs import Timer, fallback_warning, holds_files, print_result, run_folder_lock, write_summary
from harness.page import write_page
from harness.plots import plot_success_vs_beta
from harness.report import beta_table
from harness.scoring import evaluate_betas, make_eval_pool
from harness.tracking import make_tracker


def evaluate_checkpoint(config) -> int:
    """The --checkpoint mode: restore the agents and score them at every β into a new sweep folder,
    which this process holds (a second sweep into it, started at the same moment, is refused). A sweep
    that fails before writing a file leaves no folder behind, as if it had never started."""
    created = not config.out.exists()
    try:
        with run_folder_lock(config.out, sweep=True):
            if holds_files(config.out):
                raise UsageError(f'--out {config.out} is not empty; choose a new folder')
            return _sweep(config)
    except BaseException:
        if created and not holds_files(config.out):
            shutil.rmtree(config.out, ignore_errors=True)
        raise


def _sweep(config) -> int:
    timer = Timer()
    started = time.perf_counter()
    envs = make_eval_pool(config, timer)
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
        results, selection_only = evaluate_betas(config, agents, envs, config.final_betas, config.steps, 'sweep', out,
                                                 timer, videos=config.video_episodes > 0, bar=None)
        tracker.log_evaluation(config.steps, 'sweep', results)
    finally:
        envs.close()
    table = beta_table(results, selection_only)
    write_text_atomic(out / 'sweep.md', table.markdown())
    write_text_atomic(out / 'sweep.csv', table.csv())
    if len(results) > 1:
        plot_success_vs_beta(results, out / 'plots' / 'success_vs_beta.png',
                             f'{config.task.env_id}, {config.agent}, checkpoint step {config.steps}')
    timer.add('total', time.perf_counter() - started)
    summary = write_summary(config, out, results, timer, selection_only,
                            extra={'divergence_warnings': fallback_warning(results)})
    tracker.finish(summary, out)
    print_result(out, results, timer, selection_only)
    print(f'table: {out}/sweep.md, plot: {out}/plots/success_vs_beta.png')
    print(f'page: {write_page(out)}  (python -m harness.view {out})')
    return 0
