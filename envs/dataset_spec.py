"""What loading (envs/datasets.py), generation (envs/generate.py) and the collectors
(envs/collectors.py, envs/locomotion.py) share about a dataset: where its files live, the error a user
can fix, and the spec of its generator.

It imports nothing else of the project, so each of those modules can use it without importing the
others: loading regenerates through generate.py, and generate.py registers the locomotion
collectors, so any import back from them would close a cycle.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

DEFAULT_DATA_DIR = os.path.expanduser('~/.ogbench/data')

Episode = dict[str, np.ndarray]
CollectorFactory = Callable[[int], Callable[[int], Episode]]


class DatasetError(RuntimeError):
    """A dataset problem the user can fix; str is one actionable line."""


def dataset_paths(dataset_name: str, data_dir: str = DEFAULT_DATA_DIR) -> tuple[str, str]:
    """(train, val) file paths, named as OGBench names them."""
    data_dir = os.path.expanduser(data_dir)
    return os.path.join(data_dir, f'{dataset_name}.npz'), os.path.join(data_dir, f'{dataset_name}-val.npz')


def file_sha256(path: str) -> str:
    """sha256 of a file; about 0.2 s for a 1M-transition dataset, and computed once per version of the
    file (keyed by its size, inode and modification time) however often a run asks."""
    stat = os.stat(path)
    return _sha256_of_version(os.path.realpath(path), stat.st_size, stat.st_ino, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256_of_version(path: str, size: int, inode: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 22), b''):
            digest.update(block)
    return digest.hexdigest()


def card_path(npz_path: str) -> str:
    return npz_path[: -len('.npz')] + '.card.json'


@dataclass(frozen=True)
class DatasetSpec:
    """How one dataset is generated: `make_collector(episode_steps)` returns a function from an episode
    seed to one episode (see envs/generate.py); `generator` and `procedure` (whose published scripts it
    re-implements) are what the data card records.
    `summarize`, where given, turns a split's arrays into more card fields (e.g. how often the collector
    reached its goals), so that the card says what the data holds without loading it."""

    name: str
    make_collector: CollectorFactory
    default_episodes: int = 1000
    episode_steps: int = 1001
    generator: str = ''
    procedure: str = 'OGBench data_gen_scripts'
    summarize: Callable[[Episode], dict] | None = None
