"""What a training run will cost, said before it starts: regenerating a missing dataset, the updates,
and the evaluation episodes, each from a rate this project measured on its 2-core CPUs (docs/training.md,
"What a training run costs"). Machines differ (about 3x between AVX2 and AVX-512 for updates), so these are
orders of magnitude; after the first chunk of updates a run prints its own measured ETA.
"""
from __future__ import annotations

import os

from harness.outputs import fmt_seconds

# CPU-seconds to collect one 1001-step episode with `python -m envs.generate`, by dataset family (a data
# card's collection_cpu_time_s / episodes): the antsoccer collector looks 15 steps ahead 8 times every 5 steps.
COLLECTION_CPU_S = {'pointmaze': 0.5, 'antmaze': 0.7, 'antsoccer': 9.7, 'cube': 2.1, 'scene': 2.5, 'puzzle': 2.0}
# Updates per second of one seed on 2 CPU cores (several seeds under vmap cost about the same per seed).
CPU_UPDATES_PER_S = {'paper': 35.0, 'small': 40.0, 'tiny': 1500.0}
# Env steps per second of an evaluation pool on 2 CPU cores, the guided sampler included.
CPU_EVAL_STEPS_PER_S = 500.0
# Episode length bound by dataset family (the env's max_episode_steps), read without building an env.
MAX_EPISODE_STEPS = {'pointmaze': 1000, 'antmaze': 1000, 'antsoccer': 1000, 'cube-single': 200, 'cube-double': 500,
                     'cube-triple': 1000, 'scene': 750, 'puzzle-3x3': 500, 'puzzle-4x4': 500}


def family(dataset_name: str) -> str:
    return dataset_name.removeprefix('visual-').split('-')[0]


def episode_bound(dataset_name: str) -> int:
    for prefix, steps in MAX_EPISODE_STEPS.items():
        if dataset_name.removeprefix('visual-').startswith(prefix):
            return steps
    return 1000


def training_costs(config, dataset_missing: bool, cores: int | None = None) -> dict[str, float]:
    """Seconds of each stage of a CPU training run: 'dataset' (0 when present), 'training', 'evaluation'
    (every periodic and final episode at its length bound: an upper bound)."""
    cores = cores or os.cpu_count() or 1
    name = config.task.dataset_name
    episodes = config.dataset_episodes or 1000
    dataset = episodes * 1.1 * COLLECTION_CPU_S.get(family(name), 2.0) / min(cores, 2) if dataset_missing else 0.0
    seeds = len(config.seeds)
    training = config.steps * seeds / CPU_UPDATES_PER_S.get(config.preset, CPU_UPDATES_PER_S['paper'])
    periodic = (config.steps // config.eval_every if config.eval_every else 0) * config.eval_episodes
    selection = config.selection_episodes * len(config.final_betas)
    held = config.eval_episodes * (len(config.final_betas) if config.held_out == 'all' or not selection else
                                   min(2, len(config.final_betas)))
    evaluation = seeds * (periodic + selection + held) * episode_bound(name) / CPU_EVAL_STEPS_PER_S
    return {'dataset': dataset, 'training': training, 'evaluation': evaluation}


def describe_costs(config, dataset_missing: bool, cores: int | None = None) -> list[str]:
    """The lines `harness.run` prints before a CPU training run; the paper preset also names the
    CPU recipe, since a paper-scale run is days on two cores."""
    costs = training_costs(config, dataset_missing, cores)
    parts = []
    if costs['dataset']:
        parts.append(f"regenerating {config.task.dataset_name} ({config.dataset_episodes or 1000} episodes) "
                     f"≈ {fmt_seconds(costs['dataset'])}")
    parts.append(f"{config.steps:,} updates x {len(config.seeds)} seed(s) of the {config.preset} preset "
                 f"≈ {fmt_seconds(costs['training'])}")
    parts.append(f"evaluation ≤ {fmt_seconds(costs['evaluation'])}")
    lines = [f"plan on this CPU (rates measured on 2-core machines; yours may differ ~3x): {'; '.join(parts)}; "
             f"≈ {fmt_seconds(sum(costs.values()))} in all"]
    if config.preset == 'paper':
        lines.append(f'note: the paper preset is sized for a GPU. The CPU recipe, 3 seeds of the small preset with a '
                     f'β sweep chosen on selection episodes: python -m harness.run --task {config.task.name} --recipe cpu')
    return lines
