"""What a training run will cost, said before it starts: regenerating a missing dataset, the updates,
and the evaluation episodes, each from a rate this project measured on its 2-core CPUs or on a lent
16-core GPU machine (docs/training.md, "What a training run costs"). Machines differ (about 3x between
AVX2 and AVX-512 for updates), so these are orders of magnitude; after the first chunk of updates a run
prints its own measured ETA.
"""
from __future__ import annotations

import os

from envs.tasks import family
from harness.outputs import fmt_seconds

# CPU-seconds to collect one 1001-step episode with `python -m envs.generate`, by dataset family (a data
# card's collection_cpu_time_s / episodes): the antsoccer collector looks 15 steps ahead 8 times every 5 steps.
COLLECTION_CPU_S = {'pointmaze': 0.5, 'antmaze': 0.7, 'antsoccer': 9.7, 'cube': 2.1, 'scene': 2.5, 'puzzle': 2.0}
# Updates per second of one seed, by backend and preset: on 2 CPU cores (several seeds under vmap cost about
# the same per seed), and on one H200, where up to 8 seeds under vmap advance together at the paper
# preset's measured rate (the smaller presets, not measured there, are given the same rate: an upper bound).
UPDATES_PER_S = {'cpu': {'paper': 35.0, 'small': 40.0, 'tiny': 1500.0},
                 'gpu': {'paper': 620.0, 'small': 620.0, 'tiny': 620.0}}
# Env steps per second of an evaluation pool per CPU core, the guided sampler included: 500 on 2 CPU
# cores; 12 cube-single episodes/s on the 16 cores of the GPU machine, whose sampler runs on the GPU.
EVAL_STEPS_PER_S_PER_CORE = {'cpu': 250.0, 'gpu': 150.0}
# Episode length bound by dataset family (the env's max_episode_steps), read without building an env.
MAX_EPISODE_STEPS = {'pointmaze': 1000, 'antmaze': 1000, 'antsoccer': 1000, 'cube-single': 200, 'cube-double': 500,
                     'cube-triple': 1000, 'scene': 750, 'puzzle-3x3': 500, 'puzzle-4x4': 500}


def episode_bound(dataset_name: str) -> int:
    for prefix, steps in MAX_EPISODE_STEPS.items():
        if dataset_name.removeprefix('visual-').startswith(prefix):
            return steps
    return 1000


def rate_backend(backend: str) -> str:
    """'cpu', or 'gpu' for any accelerator (JAX's 'gpu', 'cuda', 'rocm', 'tpu')."""
    return 'cpu' if backend == 'cpu' else 'gpu'


def training_costs(config, dataset_missing: bool, cores: int | None = None, backend: str = 'cpu') -> dict[str, float]:
    """Seconds of each stage of a training run: 'dataset' (0 when present), 'training', 'evaluation'
    (every periodic and final episode at its length bound: an upper bound). Collection and evaluation
    use every core; updates run on `backend`."""
    cores = cores or os.cpu_count() or 1
    kind = rate_backend(backend)
    name = config.task.dataset_name
    episodes = config.dataset_episodes or 1000
    dataset = episodes * 1.1 * COLLECTION_CPU_S.get(family(name), 2.0) / cores if dataset_missing else 0.0
    seeds = len(config.seeds)
    rates = UPDATES_PER_S[kind]
    training = config.steps * (seeds if kind == 'cpu' else 1) / rates.get(config.preset, rates['paper'])
    periodic = (config.steps // config.eval_every if config.eval_every else 0) * config.eval_episodes
    selection = config.selection_episodes * len(config.final_betas)
    held = config.eval_episodes * (len(config.final_betas) if config.held_out == 'all' or not selection else
                                   min(2, len(config.final_betas)))
    eval_rate = EVAL_STEPS_PER_S_PER_CORE[kind] * cores
    evaluation = seeds * (periodic + selection + held) * episode_bound(name) / eval_rate
    return {'dataset': dataset, 'training': training, 'evaluation': evaluation}


def describe_costs(config, dataset_missing: bool, cores: int | None = None, backend: str = 'cpu') -> list[str]:
    """The lines `harness.run` prints before a training run; the paper preset on a CPU also names the
    CPU recipe, since a paper-scale run is days on two cores."""
    kind = rate_backend(backend)
    costs = training_costs(config, dataset_missing, cores, backend)
    parts = []
    if costs['dataset']:
        parts.append(f"regenerating {config.task.dataset_name} ({config.dataset_episodes or 1000} episodes) "
                     f"≈ {fmt_seconds(costs['dataset'])}")
    parts.append(f"{config.steps:,} updates x {len(config.seeds)} seed(s) of the {config.preset} preset "
                 f"≈ {fmt_seconds(costs['training'])}")
    parts.append(f"evaluation ≤ {fmt_seconds(costs['evaluation'])}")
    measured_on = ('this CPU (rates measured on 2-core machines; yours may differ ~3x)' if kind == 'cpu' else
                   f'this {backend.upper()} machine (rates measured on one H200 with 16 CPU cores; yours may differ)')
    lines = [f"plan on {measured_on}: {'; '.join(parts)}; ≈ {fmt_seconds(sum(costs.values()))} in all"]
    if config.preset == 'paper' and kind == 'cpu':
        lines.append(f'note: the paper preset is sized for a GPU. The CPU recipe, 3 seeds of the small preset with a '
                     f'β sweep chosen on selection episodes: python -m harness.run --task {config.task.name} --recipe cpu')
    return lines
