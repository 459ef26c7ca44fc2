"""Regenerate OGBench datasets locally: `python -m envs.generate DATASET [--episodes N] [--workers W] [--seed S]`.

Writes `DATASET.npz` (N train episodes) and `DATASET-val.npz` (N // 10 more episodes, as OGBench's
scripts do) into --data-dir, in OGBench's file format (observations f32, actions f32, terminals bool,
qpos/qvel f32, button_states int64; compressed .npz), plus a JSON data card beside each file.

How: episodes are grouped into shards; shards are collected by worker processes (spawned, one
collector per process), each shard is saved atomically as soon as it is done, so an interrupted run
resumes from the finished shards. Episode i is seeded from (seed, i) only, so the same seed gives the
same file whatever the number of workers or interruptions. A collector is a factory
`make_collector(episode_steps) -> collect_episode(episode_seed) -> episode dict` (envs/collectors.py,
envs/locomotion.py).
"""

from __future__ import annotations

import difflib
import glob
import hashlib
import json
import os
import platform
import shutil
import sys
import time
import warnings
import zipfile
import zlib
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from datetime import datetime, timezone
from importlib import metadata
from multiprocessing import get_context
from typing import Callable

import numpy as np
from tqdm import tqdm

from envs import collectors, d4rl_antmaze, locomotion
from envs.cli import OneLineArgumentParser
from envs.dataset_spec import (DEFAULT_DATA_DIR, CollectorFactory, DatasetError, DatasetSpec, Episode, card_path,
                               dataset_paths, file_sha256)
from envs.rendering import choose_mujoco_gl
from envs.seeding import episode_seed
from envs.workers import start_worker

# OGBench's file dtypes (generate_*.py cast lists to these before np.savez_compressed).
FILE_DTYPES = {
    'observations': np.float32,
    'actions': np.float32,
    'terminals': bool,
    'qpos': np.float32,
    'qvel': np.float32,
    'button_states': np.int64,
    'rewards': np.float32,  # D4RL antmaze: the relabelled sparse reward
    'goals': np.float32,  # D4RL antmaze: the collector's goal (D4RL's infos/goal)
}
REQUIRED_KEYS = ('observations', 'actions', 'terminals', 'qpos', 'qvel')

_MANIP = 'ogbench plan oracle (noise 0.1, smoothing 0.5), chained subtasks'
DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec(
            'pointmaze-medium-navigate-v0',
            collectors.make_pointmaze_medium_collector,
            generator='BFS direction oracle + N(0, 0.5^2) action noise, new vertex-cell goal on success',
        ),
        DatasetSpec(
            'pointmaze-large-navigate-v0',
            collectors.make_pointmaze_large_collector,
            generator='BFS direction oracle + N(0, 0.5^2) action noise, new vertex-cell goal on success',
        ),
        DatasetSpec('cube-single-play-v0', collectors.make_cube_single_collector, generator=_MANIP + ', p_stack 0'),
        DatasetSpec(
            'cube-double-play-v0', collectors.make_cube_double_collector, generator=_MANIP + ', p_stack ~ U(0, 0.25)'
        ),
        DatasetSpec(
            'scene-play-v0', collectors.make_scene_collector, generator=_MANIP + ', p_stack 0.5, scene health check'
        ),
        DatasetSpec('puzzle-3x3-play-v0', collectors.make_puzzle_3x3_collector, generator=_MANIP + ', gripper closed'),
    ]
}


# Every dataset this project can generate offline: the oracle ones above and the expert-driven ones.
GENERATORS: dict[str, DatasetSpec] = {**DATASETS, **locomotion.DATASETS, **d4rl_antmaze.DATASETS}


def get_spec(name: str) -> DatasetSpec:
    """The DatasetSpec of a dataset name: the oracle datasets above, or the expert-driven locomotion
    ones of envs/locomotion.py and envs/d4rl_antmaze.py."""
    if name in GENERATORS:
        return GENERATORS[name]
    known = list(GENERATORS)
    close = difflib.get_close_matches(name, known, n=4, cutoff=0.4) or known
    raise DatasetError(f"no offline generator for dataset '{name}' (close matches: {', '.join(close)}); any other "
                       "OGBench dataset can be fetched with `python -m harness.run ... --download` (needs a network)")


def shard_folder_name(spec: DatasetSpec, seed: int, episodes: int, episode_steps: int) -> str:
    """Where a run's finished shards wait to be resumed. It names the collector too (a digest of its card
    line), so shards of another collector, e.g. before an expert was shipped, are never mixed into a
    resumed run."""
    collector = hashlib.sha256(spec.generator.encode()).hexdigest()[:8]
    return f'seed{seed}-episodes{episodes}-steps{episode_steps}-collector{collector}'


def shard_size_for(total_episodes: int) -> int:
    """Episodes per shard: small enough for a smooth progress bar and cheap resume, at most 10."""
    return min(10, max(1, total_episodes // 20))


def check_episode(episode: Episode, episode_steps: int) -> Episode:
    """Cast to OGBench's dtypes and refuse malformed episodes (so bad data fails loudly, never saved)."""
    missing = [k for k in REQUIRED_KEYS if k not in episode]
    if missing:
        raise ValueError(f'collector returned an episode without {missing}')
    out = {k: np.asarray(v, dtype=FILE_DTYPES[k]) for k, v in episode.items() if k in FILE_DTYPES}
    lengths = {k: len(v) for k, v in out.items()}
    if set(lengths.values()) != {episode_steps}:
        raise ValueError(f'episode lengths {lengths} differ from episode_steps={episode_steps}')
    if not out['terminals'][-1] or out['terminals'][:-1].any():
        raise ValueError('terminals must be True exactly on the last row of an episode')
    for k, v in out.items():
        if v.dtype.kind == 'f' and not np.isfinite(v).all():
            raise ValueError(f'non-finite values in {k}')
    return out


def _concat(episodes: list[Episode]) -> Episode:
    return {k: np.concatenate([e[k] for e in episodes]) for k in episodes[0]}


def _atomic_save_npz(path: str, arrays: Episode, compressed: bool) -> None:
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'wb') as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write_text(path: str, text: str) -> None:
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------- worker processes
_WORKER_COLLECTOR: Callable[[int], Episode] | None = None


def _init_worker(factory: CollectorFactory, episode_steps: int) -> None:
    start_worker()
    _set_collector(factory, episode_steps)


def _set_collector(factory: CollectorFactory, episode_steps: int) -> None:
    """The collector `_collect_shard` uses: a pool worker's own, or the generating process's with --workers 1
    (which must keep its Ctrl-C and has no parent to die with, so it skips `start_worker`)."""
    global _WORKER_COLLECTOR
    warnings.filterwarnings('ignore', message='.*precision lowered by casting')  # gymnasium, on every env build
    _WORKER_COLLECTOR = factory(episode_steps)


def _collect_shard(shard_path: str, seed: int, episode_indices: list[int], episode_steps: int) -> tuple[int, float]:
    """Collect and save one shard; returns (episodes, CPU seconds spent) for the progress bar and the card."""
    cpu_start = time.process_time()
    episodes = [check_episode(_WORKER_COLLECTOR(episode_seed(seed, i)), episode_steps) for i in episode_indices]
    _atomic_save_npz(shard_path, _concat(episodes), compressed=False)
    return len(episode_indices), time.process_time() - cpu_start


# ---------------------------------------------------------------------------------------- driver
def _versions() -> dict[str, str]:
    out = {'python': platform.python_version()}
    for pkg in ('numpy', 'mujoco', 'gymnasium', 'ogbench', 'qfql'):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = 'not installed'
    return out


def generate_dataset(
    name: str,
    data_dir: str = DEFAULT_DATA_DIR,
    episodes: int | None = None,
    workers: int | None = None,
    seed: int = 0,
    episode_steps: int | None = None,
    progress: bool = True,
) -> tuple[str, str]:
    """Collect, split and write DATASET.npz / DATASET-val.npz (+ cards); returns the two paths.

    `episodes` train episodes plus `episodes // 10` (at least 1) validation episodes, as OGBench's scripts.
    `episode_steps` overrides the 1001-row episodes (tests/CI only; recorded in the card).
    """
    spec = get_spec(name)
    episodes = spec.default_episodes if episodes is None else episodes
    episode_steps = spec.episode_steps if episode_steps is None else episode_steps
    workers = max(1, os.cpu_count() or 1) if workers is None else workers
    if episodes < 1 or episode_steps < 2 or workers < 1:
        raise DatasetError('--episodes and --workers must be >= 1 and --episode-steps >= 2')
    val_episodes = max(1, episodes // 10)  # OGBench: N // 10; at least one so the -val file loads
    total = episodes + val_episodes
    data_dir = os.path.expanduser(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    train_path, val_path = dataset_paths(name, data_dir)

    shard_dir = os.path.join(data_dir, f'.{name}.shards', shard_folder_name(spec, seed, episodes, episode_steps))
    os.makedirs(shard_dir, exist_ok=True)
    # Half-written files of a killed or failed earlier run are never loaded; clear them so that they
    # do not keep a full disk full.
    for stale in glob.glob(os.path.join(shard_dir, '*.tmp-*')) + glob.glob(f'{train_path}.tmp-*') + \
            glob.glob(f'{val_path}.tmp-*'):
        os.remove(stale)
    size = shard_size_for(total)
    shards = {
        os.path.join(shard_dir, f'shard-{start:06d}.npz'): list(range(start, min(start + size, total)))
        for start in range(0, total, size)
    }
    for path, indices in shards.items():
        if os.path.exists(path):
            _drop_damaged_shard(path, len(indices) * episode_steps)
    todo = {p: idx for p, idx in shards.items() if not os.path.exists(p)}
    done_episodes = total - sum(len(v) for v in todo.values())
    if done_episodes and progress:
        print(f'resuming {name}: {done_episodes}/{total} episodes already in {shard_dir}', file=sys.stderr)

    start_time = time.time()
    bar = tqdm(total=total, initial=done_episodes, unit='ep', desc=name, disable=not progress, smoothing=0.1)
    cpu_seconds = []
    choose_mujoco_gl()  # no GLFW probing on display-less machines; pool workers inherit MUJOCO_GL
    try:
        if workers == 1:
            _set_collector(spec.make_collector, episode_steps)
            for path, idx in todo.items():
                cpu_seconds.append(_record(bar, _collect_shard(path, seed, idx, episode_steps)))
        else:
            _run_pool(spec, todo, seed, episode_steps, workers, bar, cpu_seconds)
    except KeyboardInterrupt:
        bar.close()
        raise DatasetError(f'interrupted; finished shards are kept in {shard_dir}: rerun the same command to resume')
    bar.close()

    arrays = _concat([dict(np.load(p)) for p in shards])
    rows_train = episodes * episode_steps
    wall_time = time.time() - start_time
    for path, split, sl, n_eps in [
        (val_path, 'val', slice(rows_train, None), val_episodes),
        (train_path, 'train', slice(0, rows_train), episodes),
    ]:
        split_arrays = {k: v[sl] for k, v in arrays.items()}
        _atomic_save_npz(path, split_arrays, compressed=True)
        card = {
            'dataset': name,
            'file': os.path.basename(path),
            'split': split,
            'generator': f'envs.generate ({spec.generator})',
            'procedure': f'{spec.procedure}, reimplemented (val = episodes // 10 extra episodes)',
            'seed': seed,
            'episodes': n_eps,
            'train_episodes_requested': episodes,
            'episode_steps': episode_steps,
            'rows': int(len(split_arrays['terminals'])),
            'transitions': int(len(split_arrays['terminals']) - n_eps),
            'keys': {k: f'{v.dtype}{list(v.shape)}' for k, v in split_arrays.items()},
            'workers': workers,
            'wall_time_s': round(wall_time, 1),
            'collection_cpu_time_s': round(sum(cpu_seconds), 1),  # / wall time = cores actually used
            'resumed_episodes': done_episodes,
            'versions': _versions(),
            'sha256': file_sha256(path),
            'created_utc': datetime.now(timezone.utc).isoformat(timespec='seconds'),
            **(spec.summarize(split_arrays) if spec.summarize else {}),
        }
        _atomic_write_text(card_path(path), json.dumps(card, indent=2) + '\n')
    shutil.rmtree(os.path.dirname(shard_dir), ignore_errors=True)
    return train_path, val_path


def _drop_damaged_shard(path: str, rows: int) -> None:
    """Shards are written atomically, so a damaged one was damaged afterwards (a full disk, a bad copy):
    it is deleted with one warning, to be collected again, instead of failing every rerun (--force too)."""
    try:
        with np.load(path) as shard:
            lengths = {len(shard[key]) for key in shard.files}
        if lengths != {rows} or not set(REQUIRED_KEYS) <= set(shard.files):
            raise ValueError(f'expected {rows} rows of {", ".join(REQUIRED_KEYS)}')
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        print(f'warning: shard {path} is damaged ({type(error).__name__}); collecting its episodes again',
              file=sys.stderr)
        os.remove(path)


def _record(bar: tqdm, shard_result: tuple[int, float]) -> float:
    bar.update(shard_result[0])
    return shard_result[1]


def _run_pool(
    spec: DatasetSpec, todo: dict, seed: int, episode_steps: int, workers: int, bar: tqdm, cpu_seconds: list
) -> None:
    with ProcessPoolExecutor(
        max_workers=min(workers, len(todo)) or 1,
        mp_context=get_context('spawn'),
        initializer=_init_worker,
        initargs=(spec.make_collector, episode_steps),
    ) as pool:
        pending = {pool.submit(_collect_shard, path, seed, idx, episode_steps) for path, idx in todo.items()}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    cpu_seconds.append(_record(bar, future.result()))
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog='python -m envs.generate', description=__doc__.split('\n\n')[0])
    parser.add_argument('dataset', help=f"one of: {', '.join(GENERATORS)}")
    parser.add_argument('--episodes', type=int, default=None, help='train episodes (default 1000); val gets N // 10')
    parser.add_argument('--workers', type=int, default=None, help='worker processes (default: all cores)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--data-dir', default=DEFAULT_DATA_DIR)
    parser.add_argument('--episode-steps', type=int, default=None, help='rows per episode (default 1001; tests/CI)')
    parser.add_argument('--force', action='store_true', help='regenerate even if the files exist')
    args = parser.parse_args(argv)
    try:
        train_path, val_path = dataset_paths(args.dataset, os.path.expanduser(args.data_dir))
        if not args.force and os.path.exists(train_path) and os.path.exists(val_path):
            print(f'{train_path} and its -val file already exist (use --force to regenerate)')
            return 0
        t0 = time.time()
        paths = generate_dataset(
            args.dataset, args.data_dir, args.episodes, args.workers, args.seed, args.episode_steps
        )
    except DatasetError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except OSError as e:                    # an unwritable or full --data-dir
        print(f"error: {e.strerror or e} at {e.filename or args.data_dir}; choose a writable --data-dir with free "
              'space (a rerun resumes from the episodes already written)', file=sys.stderr)
        return 2
    for path in paths:
        card = json.load(open(card_path(path)))
        print(f"wrote {path}: {card['episodes']} episodes, {card['transitions']} transitions")
    print(f'wall time {time.time() - t0:.1f}s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
