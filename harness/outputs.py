"""What a run writes besides checkpoints: JSONL logs, plots, summary.json and the closing lines it
prints. Every writer here is whole-file atomic or appends whole lines, so a kill never leaves a
half-written file that looks complete.

Run folder (documented in docs/run-folder.md):
    config.json        every resolved setting (task, agent config, seeds, βs, intervals, command line)
    metrics.jsonl      one line per seed and chunk of updates: step, losses, Q statistics, grad norms
    eval.jsonl         one line per evaluation episode: phase (periodic/selection/final/sweep), step, beta, seed, success, ...
    summary.json       final success per β with intervals over seeds and episodes; timing; paths
    checkpoints/       step_<N>/ (orbax state + meta.json)
    eval/              guidance-*.npz: per env step and flow step ‖v‖, ‖∇Q‖, ‖β∇Q‖ (float16) and fallbacks
    videos/            beta<β>-seed<s>-ep<i>.mp4 with the guidance-norm strip under the frames
    plots/             training.png, guidance_norms.png, success_vs_beta.png, success_over_training.png
    .lock              held (flock) by the process that trains into the folder; names it

One process at a time trains into a run folder (`run_folder_lock`): two would mix their logs and
overwrite each other's checkpoints. The lock is the kernel's, so a killed run never leaves it behind.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import statistics
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from agents import AGENTS
from harness.defaults import EVAL_SEED_BASE, SELECTION_SEED_BASE
from harness.errors import UsageError
from harness.files import write_json_atomic, write_text_atomic
from harness.plots import plot_success_over_training, plot_success_vs_beta, plot_training
from harness.report import best_beta, beta_table, hierarchical_bootstrap_ci, max_over_betas, success_matrix


class Timer(defaultdict):
    """Seconds per phase: dataset, compile, training, evaluation, rendering, writing."""

    def __init__(self):
        super().__init__(float)

    def add(self, phase: str, seconds: float) -> None:
        self[phase] += seconds


def fmt_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'
    if seconds >= 60:
        return f'{seconds // 60}m{seconds % 60:02d}s'
    return f'{seconds}s'


LOCK_FILE = '.lock'


# ---- the run folder's lock ------------------------------------------------------------------------
@contextmanager
def run_folder_lock(out: Path, sweep: bool = False) -> Iterator[None]:
    """Hold the run folder for this process (creating it); a second process is refused in one line.
    flock, not a pid file: the kernel drops it when the holder dies, even by SIGKILL."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, 'a+') as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(_in_use_message(out, handle, sweep)) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f'process {os.getpid()} on {socket.gethostname()}\n')
        handle.flush()
        yield


def refuse_if_in_use(out: Path, sweep: bool = False) -> None:
    """Refuse, before anything is planned on it, a run folder that another process is training into."""
    lock = Path(out) / LOCK_FILE
    if not lock.is_file():
        return
    with open(lock) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(_in_use_message(out, handle, sweep)) from None


def _in_use_message(out: Path, handle, sweep: bool = False) -> str:
    handle.seek(0)
    holder = handle.read().strip() or 'another process'
    if sweep:
        return f'{out} is in use by another β sweep ({holder}); choose another --out'
    return (f'{out} is in use by another run ({holder}); choose another --out, or wait for that run to end (or '
            f'stop it) and continue it with --resume {out}')


def holds_files(out: Path) -> bool:
    """Whether a folder holds anything but empty folders and its lock: what a run leaves when the disk
    filled up or its dataset failed before config.json was written, which the same command may reuse."""
    return any(p.is_file() and p.name != LOCK_FILE or p.is_symlink() for p in Path(out).rglob('*'))


# ---- JSONL logs -------------------------------------------------------------------------------------
def append_jsonl(path: Path, rows) -> None:
    """Append whole lines (flushed); a crash can lose the tail but never leaves a partial JSON line mid-file."""
    text = ''.join(json.dumps(row) + '\n' for row in rows)
    with open(path, 'a') as handle:
        handle.write(text)
        handle.flush()


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSONL log; a last line cut short by a kill mid-write is dropped (it is the
    interrupted chunk's, which --resume runs again)."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for index, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if index < len(lines) - 1:
                raise
    return rows


def rows_by_step(path: Path, phase: str | None = None) -> list[tuple[int, list[dict]]]:
    """The rows of a JSONL log (of one eval `phase`, if given) grouped by step, in step order."""
    by_step = defaultdict(list)
    for row in read_jsonl(path):
        if phase is None or row['phase'] == phase:
            by_step[row['step']].append(row)
    return sorted(by_step.items())


def truncate_logs_after(out: Path, step: int) -> None:
    """On resume, drop log lines written after the checkpoint (and the interrupted run's final
    evaluation, if it got that far), so that the logs read like one uninterrupted run."""
    keep = {'metrics.jsonl': lambda row: row['step'] <= step,
            'eval.jsonl': lambda row: row['step'] <= step and row['phase'] == 'periodic'}
    for name, wanted in keep.items():
        path = out / name
        if path.exists():
            kept = [row for row in read_jsonl(path) if wanted(row)]
            write_text_atomic(path, ''.join(json.dumps(row) + '\n' for row in kept))


def periodic_points(out: Path) -> list:
    """(step, success, ci_low, ci_high) of the periodic evaluations already logged (a resumed run's)."""
    points = []
    for step, rows in rows_by_step(out / 'eval.jsonl', 'periodic'):
        _, matrix = success_matrix(rows)
        points.append((step, float(matrix.mean()), *hierarchical_bootstrap_ci(matrix)))
    return points


# ---- closing outputs ----------------------------------------------------------------------------------
def fallback_warning(results: list[dict]) -> dict:
    """Count (and say) the flow steps whose ∇Q was non-finite at evaluation, the third Appendix-A sign."""
    count = sum(r['fallbacks'] for r in results)
    if count:
        betas = ', '.join(f"{r['beta']:g}" for r in results if r['fallbacks'])
        print(f'warning: {count} flow steps had a non-finite ∇Q at evaluation (β = {betas}) and fell back to the '
              'unguided step (Appendix A of the paper saw NaN actions before guidance failed)')
    return {'nonfinite_fallbacks': count}


def finish_plots(config, out: Path, final: list[dict], periodic: list) -> None:
    metrics = read_jsonl(out / 'metrics.jsonl')
    if metrics:
        plot_training(metrics, out / 'plots' / 'training.png', f'{config.task.env_id}, {config.agent}, {config.preset}')
    if len(final) > 1:
        plot_success_vs_beta(final, out / 'plots' / 'success_vs_beta.png', f'{config.task.env_id}, update {config.steps}')
    if len(periodic) > 1:
        plot_success_over_training(periodic, out / 'plots' / 'success_over_training.png',
                                   f'{config.task.env_id}, β={config.beta:g}')


def write_summary(config, out: Path, results: list[dict], timer: Timer, selection_only: list[dict] = (),
                  extra: dict | None = None) -> dict:
    """summary.json: `results` holds the held-out βs, `selection_only` the βs that only the selection episodes
    scored (`--held-out selected`), so that every β the choice was made among is on record."""
    chosen = best_beta(results)
    agent_class = AGENTS[config.agent]
    summary = {
        'task': config.task.name, 'env_id': config.task.env_id, 'agent': config.agent, 'preset': config.preset,
        'mode': config.mode, 'steps': config.steps, 'seeds': config.seeds,
        'eval_episodes_per_seed': config.eval_episodes,
        'beta': config.beta, 'sampler': config.sampler.to_json(), 'success_timing': config.success_timing,
        'reward': config.reward, 'horizon': config.agent_config.horizon,
        'acting': (agent_class.ACTING if agent_class.BETA is not None else
                   f'{agent_class.ACTING}: β and the sampler settings do not apply'),
        'best_beta': chosen,
        'best_beta_selection': (
            'the only β evaluated' if len(results) + len(selection_only) == 1 else
            f'highest success on {config.selection_episodes} selection episodes per seed (env seeds '
            f'{SELECTION_SEED_BASE}+i), reported on {config.eval_episodes} held-out ones (env seeds {EVAL_SEED_BASE}+i)'
            + ('; held-out episodes at β = 0 and the selected β only (--held-out selected)' if selection_only else '')
            if chosen is not None else 'none: several βs but no selection episodes (--selection-episodes 0)'),
        'max_over_betas': max_over_betas(results),
        'results': sorted(results, key=lambda r: r['beta']),
        'selection_only': list(selection_only),
        'interval_method': '95% percentile bootstrap over seeds then episodes (ci95); IQM of per-seed success '
                           'with a stratified bootstrap over seeds (iqm_ci95)',
        'timing_s': {k: round(v, 2) for k, v in timer.items()},
        'checkpoint': None if config.checkpoint is None else str(config.checkpoint),
        'videos': sorted(str(p.relative_to(out)) for p in (out / 'videos').glob('*.mp4')),
        'plots': sorted(str(p.relative_to(out)) for p in (out / 'plots').glob('*.png')),
        **(extra or {}),
    }
    write_json_atomic(out / 'summary.json', summary)
    return summary


def print_result(out: Path, results: list[dict], timer: Timer, selection_only: list[dict] = ()) -> None:
    print(beta_table(results, selection_only).markdown(), end='')
    t = timer
    print(f"time: total {fmt_seconds(t['total'])} = dataset {fmt_seconds(t['dataset'])}, "
          f"setup {fmt_seconds(t['setup'])}, compile {fmt_seconds(t['compile'])}, "
          f"training {fmt_seconds(t['training'])}, "
          f"evaluation {fmt_seconds(t['evaluation'])}, rendering {fmt_seconds(t['rendering'])}, "
          f"checkpoints+plots {fmt_seconds(t['checkpointing'] + t['writing'])}")
    chosen = best_beta(results) if len(results) + len(selection_only) > 1 else None
    for r in results:
        lo, hi = r['ci95']
        mark = ' <- best β, chosen on the selection episodes' if r['beta'] == chosen else ''
        print(f"success rate at β={r['beta']:g}: {r['success_rate']:.3f} (95% CI {lo:.3f}-{hi:.3f}, "
              f"{len(r['seeds'])} seed(s) x {r['episodes_per_seed']} held-out episodes){mark}")
    print(f'run folder: {out}  (summary.json, videos/, plots/guidance_norms.png)')


PAUSED_RATE_FRACTION = 0.25


def training_seconds(run_dir: Path) -> float:
    """Time spent in updates (compilation excluded), from metrics.jsonl: a chunk of n updates at u
    updates/s took n / u seconds. Unlike the summary's timer, which restarts with each --resume, this
    covers every process that trained the run, and exists before the summary does. A chunk slower than
    a quarter of the median rate was stopped, not slowed (a paused process, a suspended machine; a job
    beside it on 2 cores slows it about twofold), so it counts at the median rate: the figure is the
    compute the run cost, not how long it sat."""
    rates = {row['step']: row['updates_per_s'] for row in read_jsonl(run_dir / 'metrics.jsonl')}
    steps = sorted(rates)
    if not steps:
        return 0.0
    median = statistics.median(rates.values())
    counted = {s: median if rate < PAUSED_RATE_FRACTION * median else rate for s, rate in rates.items()}
    return round(sum((b - a) / counted[b] for a, b in zip([0] + steps[:-1], steps)), 1)
