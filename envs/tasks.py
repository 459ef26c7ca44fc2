"""Task registry: the paper's tasks (the task table of docs/datasets.md) plus any full OGBench single-task id.

A `Task` carries everything the rest of the project needs to know about a task without importing
gymnasium or OGBench: which environment to build, which dataset file to load, and the paper's
hyper-parameters (β, discount, target-Q aggregation).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace


class UnknownTaskError(ValueError):
    """A task name that is neither a short name nor a valid OGBench single-task id (str is one line)."""


@dataclass(frozen=True)
class Task:
    name: str  # short name if one was used, else the full id
    env_id: str  # full OGBench single-task id (D4RL: the D4RL dataset id)
    dataset_name: str  # dataset file stem that `python -m envs.generate` takes
    beta: float | None  # paper's β (None where the paper gives none)
    discount: float
    q_agg: str  # 'mean' | 'min'
    source: str  # 'ogbench' | 'd4rl'


def _ogbench(name: str, env_id: str, beta: float | None, discount: float, q_agg: str) -> Task:
    return Task(name, env_id, dataset_name_of(env_id), beta, discount, q_agg, 'ogbench')


def _d4rl(name: str, env_id: str, beta: float, discount: float, q_agg: str) -> Task:
    return Task(name, env_id, env_id, beta, discount, q_agg, 'd4rl')


def dataset_name_of(env_id: str) -> str:
    """Dataset stem of a single-task id, the way OGBench derives it: drop 'singletask' and 'taskN'."""
    parts = env_id.split('-')
    pos = parts.index('singletask')
    return '-'.join(parts[:pos] + parts[-1:])


def env_name_of(env_id: str) -> str:
    """Registered gymnasium env of a single-task id: drop the dataset type (e.g. 'play')."""
    parts = env_id.split('-')
    pos = parts.index('singletask')
    return '-'.join(parts[: pos - 1] + parts[pos:])


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        _ogbench('antmaze', 'antmaze-large-navigate-singletask-task1-v0', 1.0, 0.99, 'min'),
        _ogbench('antsoccer', 'antsoccer-arena-navigate-singletask-task4-v0', 1.0, 0.995, 'mean'),
        _ogbench('cube-double', 'cube-double-play-singletask-task2-v0', 0.3, 0.99, 'mean'),
        _ogbench('scene', 'scene-play-singletask-task2-v0', 0.3, 0.99, 'mean'),
        _ogbench('puzzle-3x3', 'puzzle-3x3-play-singletask-task4-v0', None, 0.99, 'mean'),
        _d4rl('antmaze-umaze-diverse', 'antmaze-umaze-diverse-v2', 0.3, 0.99, 'min'),
        _d4rl('antmaze-medium-diverse', 'antmaze-medium-diverse-v2', 0.3, 0.99, 'min'),
        _d4rl('antmaze-large-diverse', 'antmaze-large-diverse-v2', 0.3, 0.99, 'min'),
        _ogbench('cube-single', 'cube-single-play-singletask-task2-v0', None, 0.99, 'mean'),
        _ogbench('pointmaze', 'pointmaze-medium-navigate-singletask-task1-v0', None, 0.99, 'mean'),
    ]
}

# OGBench's dataset types per environment family (its dataset list); used to validate full ids.
_DATASET_TYPES = {
    'pointmaze': ('navigate', 'stitch'),
    'antmaze': ('navigate', 'stitch', 'explore'),
    'humanoidmaze': ('navigate', 'stitch'),
    'antsoccer': ('navigate', 'stitch'),
    'cube': ('play', 'noisy'),
    'scene': ('play', 'noisy'),
    'puzzle': ('play', 'noisy'),
}
_SINGLE_TASK_ID = re.compile(r'^(visual-)?([a-z]+)-(.+)-([a-z]+)-singletask(-task[1-5])?-v0$')


def _registered_singletask_envs() -> list[str]:
    import gymnasium  # heavy (MuJoCo): only a full id outside the table needs the env registry

    import ogbench  # noqa: F401  (registers the environments)

    return [k for k in gymnasium.registry if 'singletask' in k]


def family(name: str) -> str:
    """The family of an env, dataset or task id: its first word after any 'visual-' ('cube', 'antmaze', ...)."""
    return name.removeprefix('visual-').split('-')[0]


def all_single_task_ids() -> list[str]:
    """Every full OGBench single-task id (env × dataset type), for suggestions."""
    ids = []
    for env_name in _registered_singletask_envs():
        parts = env_name.split('-')
        pos = parts.index('singletask')
        for dataset_type in _DATASET_TYPES.get(family(env_name), ()):
            ids.append('-'.join(parts[:pos] + [dataset_type] + parts[pos:]))
    return ids


def _is_valid_single_task_id(name: str) -> bool:
    if not _SINGLE_TASK_ID.match(name):
        return False
    parts = name.split('-')
    dataset_type = parts[parts.index('singletask') - 1]
    env_name = env_name_of(name)
    return dataset_type in _DATASET_TYPES.get(family(env_name), ()) and env_name in _registered_singletask_envs()


def _default_task_for_id(env_id: str) -> Task:
    """Hyper-parameters for an id outside the table: the FQL paper's defaults (min over Qs for antmaze)."""
    q_agg = 'min' if family(env_name_of(env_id)) == 'antmaze' else 'mean'
    discount = 0.995 if family(env_name_of(env_id)) in ('antsoccer', 'humanoidmaze') else 0.99
    return _ogbench(env_id, env_id, None, discount, q_agg)


def resolve_task(name: str) -> Task:
    """Short name or full OGBench single-task id -> Task; unknown names raise a one-line UnknownTaskError."""
    if name in TASKS:
        return TASKS[name]
    for task in TASKS.values():
        if task.env_id == name:
            return replace(task, name=name)
    if _is_valid_single_task_id(name):
        return _default_task_for_id(name)
    candidates = list(TASKS) + all_single_task_ids()
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    hint = ', '.join(close) if close else ', '.join(TASKS)
    raise UnknownTaskError(f"unknown task '{name}'; close matches: {hint} (or any full OGBench single-task id)")
