"""`python -m tools.bench`: what QFQL costs in wall-clock terms, next to our FQL.

A benchmark, not a test: it prints one table row per figure -- the measured values, their ratio, the
target and whether it is met -- and can write the same rows as JSON (--json PATH).

Every ratio compares variants measured side by side in ONE process, in interleaved rounds
(A, B, C, A, B, C, ...), and reports medians: on a shared machine the load drifts, and interleaving
makes the drift hit every variant alike. Absolute numbers are only as good as the machine's load;
the ratios are what we report.

Figures (the numbers are the row labels of the speed table in docs/speed.md):
  1  training updates/s: QFQL (flow target), QFQL (one-step target), FQL; same networks and batch;
     synthetic batches with the task's observation/action sizes (read from the env itself); 1c is
     the opt-in next step for 1a, the flow target with fewer Euler steps (--target-flow-steps)
  1p profile: each building block of an update timed alone, the updates composed from them, and
     the ratios that equal-size networks allow (where the time goes)
  2  N updates in one lax.scan with device-side sampling vs one jitted call per update with
     host-side (NumPy) sampling
  3  M seeds under jax.vmap in one call vs the same M seeds one after another (aggregate updates/s)
  4  guided sampling: one batched action for 50 envs, K flow steps, β = 1 vs β = 0 (β = 0 skips ∇Q)
  5  rollouts: env steps/s of make_eval_envs (2 worker processes, one batched policy call per step)
     vs one env stepped in a loop with the same policy; and the share of eval time in the policy
  6  GPU only: updates/s, wall time of 1M updates, 8 vmapped seeds
  7  peak resident memory of a training process holding a 1M-transition dataset (a child process)
  8  a β sweep (6 βs x 3 seeds, shipped cube-single checkpoint): episodes/s of every (β, seed) in one
     rollout vs one (β, seed) after another, beside physics alone and the sampler alone
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from dataclasses import asdict
from typing import Sequence

import jax

from agents import PRESETS
from envs.tasks import resolve_task
from harness.errors import OneLineArgumentParser, UsageError, run_main
from harness.files import write_json_atomic
from tools.bench_figures import (figure_gpu, figure_memory, figure_profile, figure_rollouts, figure_sampling,
                                 figure_scan, figure_seeds, figure_sweep,
                                 figure_training)
from tools.bench_measure import FULL, QUICK, Report, memory_child, ready, synthetic_dataset, task_dims


# ---- output -------------------------------------------------------------------------------------

def format_table(report: Report) -> str:
    def fmt(x):
        return f'{x:g}' if isinstance(x, (int, float)) else str(x)
    lines = [f'backend: {report.backend} ({report.device}); mode: {report.mode}; preset: {report.preset}; '
             f'task: {report.task} (obs {report.obs_dim}, act {report.act_dim})',
             f'{"fig":4s} {"measurement":70s} {"ratio":>7s}  {"target":28s} status']
    for row in report.rows:
        ratio = '' if row.ratio is None else f'{row.ratio:.2f}x'
        lines.append(f'{row.figure:4s} {row.what[:70]:70s} {ratio:>7s}  {row.target[:28]:28s} {row.status()}')
        for name, value in row.values.items():
            lines.append(f'       {name}: {fmt(value)}')
        if row.note:
            lines.append(f'       note: {row.note}')
    return '\n'.join(lines)


FIGURES = ('1', '2', '3', '4', '5', '6', '7', '8')


def _dims(text: str) -> tuple[int, int]:
    parts = text.split(',')
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected two positive integers OBS,ACT such as 37,5, got '{text}'")
    return int(parts[0]), int(parts[1])


def parse_args(argv):
    parser = OneLineArgumentParser(prog='python -m tools.bench', description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='few iterations; under 5 minutes on a 2-core CPU')
    parser.add_argument('--json', metavar='PATH', help='also write the rows as JSON to PATH')
    parser.add_argument('--task', default='cube-double', help='task whose obs/action sizes and env are used')
    parser.add_argument('--preset', default='paper', help='agent preset (paper = 4x512, batch 256, 2 critics, K=10)')
    parser.add_argument('--figures', default=','.join(FIGURES), help='comma-separated subset of 1-7')
    parser.add_argument('--dims', type=_dims, metavar='OBS,ACT',
                        help="observation and action sizes instead of reading them from the task's env, e.g. 37,5 "
                             '(for machines without mujoco/ogbench; figure 5 still needs the env)')
    parser.add_argument('--memory-child', help=argparse.SUPPRESS)   # internal: figure 7's child process
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.preset not in PRESETS:
        raise UsageError(f'unknown preset {args.preset!r}; choose one of {sorted(PRESETS)}')
    if args.memory_child:
        return memory_child(args.memory_child, args.preset)
    figures = [f.strip() for f in args.figures.split(',') if f.strip()]
    unknown = sorted(set(figures) - set(FIGURES))
    if unknown:
        raise UsageError(f'unknown figure(s) {unknown}; choose from {",".join(FIGURES)}')
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        raise UsageError(f'--json {args.json}: its folder does not exist')
    task = resolve_task(args.task)
    sizes = QUICK if args.quick else FULL
    backend = jax.default_backend()
    if backend != 'cpu':
        # An accelerator update takes well under a millisecond: time long scans, or dispatch dominates.
        sizes = dataclasses.replace(sizes, train_chunk=max(sizes.train_chunk, 200))
    obs_dim, act_dim = args.dims or task_dims(task)
    report = Report(backend=backend, device=str(jax.devices()[0]), mode='quick' if args.quick else 'full',
                    preset=args.preset, task=task.name, obs_dim=obs_dim, act_dim=act_dim)
    print(f'JAX backend: {backend} ({jax.devices()[0]}), {os.cpu_count()} CPU cores visible', flush=True)
    if args.dims:
        print(f'Sizes from --dims: obs {obs_dim}, act {act_dim} (not read from the {task.name} env).', flush=True)
    if backend == 'cpu':
        print('No GPU: figure 6 (GPU updates/s, 1M-update wall time, 8 seeds) is not measured.', flush=True)
    data = ready(synthetic_dataset(sizes.dataset_size, obs_dim, act_dim))
    steps = [('1', lambda: figure_training(report, sizes, data)),
             ('1p', lambda: figure_profile(report, sizes, data)),
             ('2', lambda: figure_scan(report, sizes, data)),
             ('3', lambda: figure_seeds(report, sizes, data, 8 if backend == 'gpu' else 4)),
             ('4', lambda: figure_sampling(report, sizes, data)),
             ('5', lambda: figure_rollouts(report, sizes, task)),
             ('6', lambda: figure_gpu(report, sizes, data)),
             ('7', lambda: figure_memory(report, sizes)),
             ('8', lambda: figure_sweep(report, sizes))]
    start = time.perf_counter()
    for number, run in steps:
        if number.rstrip('p') in figures:
            t = time.perf_counter()
            run()
            print(f'[figure {number} done in {time.perf_counter() - t:.0f} s]', flush=True)
    print(format_table(report))
    print(f'total bench time: {time.perf_counter() - start:.0f} s')
    if args.json:
        write_json_atomic(args.json, asdict(report))
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
