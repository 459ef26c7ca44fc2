"""Offline datasets in OGBench's own .npz format, loaded through OGBench's loader.

`load_task_dataset` returns the single-task transitions OGBench defines (`make_env_and_datasets` with
a '...-singletask-taskN-v0' id: rewards and masks relabelled from qpos/button states for that task).
Files come from --data-dir (default ~/.ogbench/data). A missing file is downloaded only when the user
allows it; otherwise the error names the exact command that regenerates it, and `ensure_dataset`
(what `python -m harness.run` calls) regenerates it offline through envs/generate.py. Truncated or
corrupt files, files with non-finite values, files that disagree with their data card (sha256, dtypes)
and files whose observations or actions are not floating point are refused, never returned.
`dataset_digest` is the sha256 a run records, so that --resume can refuse a dataset changed under it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import urllib.error
import zipfile
import zlib

import numpy as np

from envs import d4rl_antmaze
from envs.dataset_spec import DEFAULT_DATA_DIR, DatasetError, card_path, dataset_paths, file_sha256
from envs.generate import generate_dataset, get_spec

TRANSITION_KEYS = ('observations', 'actions', 'rewards', 'masks', 'next_observations')


def regenerate_command(dataset_name: str, data_dir: str) -> str:
    data_dir = os.path.expanduser(data_dir)
    suffix = '' if data_dir == DEFAULT_DATA_DIR else f' --data-dir {data_dir}'
    return f'python -m envs.generate {dataset_name}{suffix}'


def _missing_message(task, data_dir: str, missing: list[str]) -> str:
    return (f"dataset file {', '.join(missing)} not found; regenerate it with "
            f'`{regenerate_command(task.dataset_name, data_dir)}` or pass --download')


def _d4rl_download_error(task) -> DatasetError:
    """D4RL's server is not OGBench's, so --download cannot fetch its files (see envs/d4rl_antmaze.py)."""
    return DatasetError(f'--download fetches OGBench files only; for {task.env_id} put D4RL\'s own '
                        f'{d4rl_antmaze.D4RL_FILES[task.dataset_name]} in --data-dir, or drop --download to '
                        'regenerate it')


REWARDS = ('dense', 'sparse')


def sparse_rewards(rewards: np.ndarray) -> np.ndarray:
    """0 where the task is solved (OGBench's single-task reward is 0 exactly there) and -1 elsewhere.
    OGBench's dense reward counts the unsolved subtasks of scene and puzzle; the QC code's --sparse
    relabelling, which its authors use for those tasks, keeps only whether the task is solved."""
    return np.where(rewards == 0, 0.0, -1.0).astype(np.float32)


def load_task_dataset(task, data_dir: str = DEFAULT_DATA_DIR, download: bool = False, split: str = 'train',
                      reward: str = 'dense'):
    """Single-task transitions of `task` (observations, actions, rewards, masks, next_observations; all f32).

    masks = 1 - success, as OGBench's single-task relabelling defines it (the episode continues in the
    data, but the task is solved, so the TD target stops bootstrapping there). reward: 'dense'
    (OGBench's single-task reward) or 'sparse' (`sparse_rewards`).
    """
    if reward not in REWARDS:
        raise DatasetError(f'reward must be one of {REWARDS}, not {reward!r}')
    if split not in ('train', 'val'):
        raise DatasetError(f"split must be 'train' or 'val', not {split!r}")
    data_dir = os.path.expanduser(data_dir)
    paths = dataset_paths(task.dataset_name, data_dir)
    missing = [p for p in paths if not os.path.exists(p)]
    if task.source == 'd4rl':
        return _load_d4rl(task, data_dir, split, missing)
    if missing:
        if not download:
            raise DatasetError(_missing_message(task, data_dir, missing))
        _download(task, data_dir)

    import ogbench  # heavy (MuJoCo): imported only when a dataset is loaded

    try:
        for path in paths:
            check_against_card(path, regenerate_command(task.dataset_name, data_dir))
        _refuse_nonfinite_state(task, paths, data_dir)
        _, train, val = ogbench.make_env_and_datasets(task.env_id, dataset_dir=data_dir)
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError, ValueError, IndexError, OSError) as e:
        raise DatasetError(
            f'{task.dataset_name} in {data_dir} is truncated or corrupt ({type(e).__name__}: {str(e)[:80]}); '
            f'delete it and regenerate with `{regenerate_command(task.dataset_name, data_dir)} --force`'
        ) from None
    dataset = train if split == 'train' else val
    out = {k: np.asarray(dataset[k], dtype=np.float32) for k in TRANSITION_KEYS}
    _refuse_bad_transitions(task, out, split, data_dir)
    if reward == 'sparse':
        out['rewards'] = sparse_rewards(out['rewards'])
    return out


def _load_d4rl(task, data_dir: str, split: str, missing: list[str]) -> dict:
    """D4RL antmaze transitions (envs/d4rl_antmaze.py): D4RL's own hdf5 when data_dir has it, else ours.
    Their rewards are already sparse (0 at the goal, -1 elsewhere), so both reward labels give the same."""
    if d4rl_antmaze.official_file(task.dataset_name, data_dir) is None and missing:
        raise DatasetError(f"dataset file {', '.join(missing)} not found; regenerate it with "
                           f'`{regenerate_command(task.dataset_name, data_dir)}` or put D4RL\'s '
                           f'{d4rl_antmaze.D4RL_FILES[task.dataset_name]} in {data_dir}')
    try:
        if d4rl_antmaze.official_file(task.dataset_name, data_dir) is None:
            check_against_card(dataset_paths(task.dataset_name, data_dir)[0 if split == 'train' else 1],
                               regenerate_command(task.dataset_name, data_dir))
        out, _ = d4rl_antmaze.load_transitions(task.dataset_name, data_dir, split)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, IndexError, OSError) as e:
        raise DatasetError(
            f'{task.dataset_name} in {data_dir} is truncated or corrupt ({type(e).__name__}: {str(e)[:80]}); '
            f'delete it and regenerate with `{regenerate_command(task.dataset_name, data_dir)} --force`'
        ) from None
    _refuse_bad_transitions(task, out, split, data_dir)
    return out


def _refuse_bad_transitions(task, out: dict, split: str, data_dir: str) -> None:
    for k, v in out.items():
        if not np.isfinite(v).all():
            raise DatasetError(
                f'{task.dataset_name} ({split}) has non-finite values in {k}; refusing to load it; regenerate with '
                f'`{regenerate_command(task.dataset_name, data_dir)} --force`'
            )
    if len(out['observations']) == 0:
        raise DatasetError(f'{task.dataset_name} ({split}) is empty; regenerate it with --force')


def _refuse_nonfinite_state(task, paths, data_dir: str) -> None:
    """OGBench relabels single-task rewards and success from the stored simulator state; a NaN there
    would silently turn solved transitions into unsolved ones, so such a file is refused."""
    for path in paths:
        with np.load(path) as raw:
            for key in ('qpos', 'qvel', 'button_states'):
                if key in raw.files and not np.isfinite(raw[key]).all():
                    raise DatasetError(
                        f'{os.path.basename(path)} has non-finite values in {key}, from which OGBench computes '
                        f'success; refusing to load it; regenerate with '
                        f'`{regenerate_command(task.dataset_name, data_dir)} --force`')


# Arrays whose values train the agent: an integer or boolean copy of them (a cast file) would train on
# rounded data, since loading casts them back to float32 without a word.
FLOAT_KEYS = ('observations', 'actions', 'qpos', 'qvel', 'rewards', 'next_observations')


def check_against_card(path: str, regenerate: str) -> str:
    """The file's sha256, after refusing a file whose arrays are not floating point where values are,
    or that differs from the data card written beside it when it was generated (dtypes, shapes, sha256):
    such a file was changed afterwards, and a run on it would not be the run its card describes."""
    name = os.path.basename(path)
    layout = _npz_layout(path)
    for key, (dtype, _) in layout.items():
        if key in FLOAT_KEYS and dtype.kind != 'f':
            raise DatasetError(f'{name}: {key} are {dtype}, not floating point, so loading would train on rounded '
                               f'values; regenerate it with `{regenerate} --force`')
    digest = file_sha256(path)
    card_file = card_path(path)
    if not os.path.exists(card_file):            # OGBench's own downloads come without a card
        return digest
    try:
        with open(card_file) as handle:
            card = json.load(handle)
        recorded_keys, recorded_digest = card.get('keys', {}), card.get('sha256')
    except (OSError, ValueError, AttributeError) as error:
        raise DatasetError(f'data card {card_file} is unreadable ({type(error).__name__}); regenerate the dataset '
                           f'with `{regenerate} --force`') from None
    for key, (dtype, shape) in layout.items():
        found = f'{dtype}{list(shape)}'
        if key in recorded_keys and recorded_keys[key] != found:
            raise DatasetError(f'{name}: {key} is {found} but its data card says {recorded_keys[key]}: the file was '
                               f'changed after it was generated; regenerate it with `{regenerate} --force`')
    if recorded_digest and recorded_digest != digest:
        raise DatasetError(f'{name} is not the file its data card describes (sha256 {digest[:12]}, card '
                           f'{recorded_digest[:12]}): it was changed after it was generated; regenerate it with '
                           f'`{regenerate} --force`')
    return digest


def _npz_layout(path: str) -> dict:
    """key -> (dtype, shape) of an .npz's arrays, from their headers (no array is read)."""
    layout = {}
    with zipfile.ZipFile(path) as archive:
        for member_name in archive.namelist():
            with archive.open(member_name) as member:
                version = np.lib.format.read_magic(member)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else
                               np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(member)
            layout[member_name.removesuffix('.npy')] = (dtype, shape)
    return layout


def dataset_digest(task, data_dir: str = DEFAULT_DATA_DIR) -> str:
    """sha256 of the file `task` trains on (its train split; D4RL's own hdf5 when data_dir holds one)."""
    data_dir = os.path.expanduser(data_dir)
    official = d4rl_antmaze.official_file(task.dataset_name, data_dir) if task.source == 'd4rl' else None
    return file_sha256(official or dataset_paths(task.dataset_name, data_dir)[0])


def check_against_env(dataset: dict, task, observation_dim: int, action_dim: int,
                      data_dir: str = DEFAULT_DATA_DIR) -> None:
    """Refuse a dataset that cannot train an agent for `task`'s env: wrong observation or action size
    (it would train, then fail at evaluation), or actions outside the [-1, 1] box. The fix names the
    folder the file is in, so it regenerates that file."""
    fix = f'regenerate it with `{regenerate_command(task.dataset_name, data_dir)} --force`'
    checks = [('observations', observation_dim), ('next_observations', observation_dim), ('actions', action_dim)]
    for key, size in checks:
        if dataset[key].shape[1] != size:
            raise DatasetError(f'{task.dataset_name}: {key} have {dataset[key].shape[1]} dimensions but the env of '
                               f'{task.env_id} has {size}; this file belongs to another task: {fix}')
    worst = float(np.abs(dataset['actions']).max())
    if worst > 1.0 + 1e-6:
        raise DatasetError(f'{task.dataset_name}: actions reach {worst:.3g}, outside the [-1, 1] action box; {fix}')


def _download(task, data_dir: str) -> None:
    import ogbench  # heavy (MuJoCo): imported only when a dataset is downloaded

    try:
        ogbench.download_datasets([task.dataset_name], dataset_dir=data_dir)
    except (urllib.error.URLError, OSError) as e:
        raise DatasetError(
            f'download of {task.dataset_name} failed ({str(e)[:60]}); regenerate it offline with '
            f'`{regenerate_command(task.dataset_name, data_dir)}`'
        ) from None


def ensure_dataset(task, data_dir: str = DEFAULT_DATA_DIR, episodes: int | None = None, workers: int | None = None,
                   seed: int = 0, episode_steps: int | None = None, download: bool = False) -> tuple[str, str]:
    """Make sure the task's train/val files exist: download if allowed, else regenerate locally (and say so).

    `episodes` < 1000 gives a smaller dataset (CI); the data card beside the file records the count.
    """
    data_dir = os.path.expanduser(data_dir)
    paths = dataset_paths(task.dataset_name, data_dir)
    if all(os.path.exists(p) for p in paths):
        return paths
    if task.source == 'd4rl':
        official = d4rl_antmaze.official_file(task.dataset_name, data_dir)
        if official is not None:
            return official, official
        if download:
            raise _d4rl_download_error(task)
    with _exclusive(data_dir, task.dataset_name):
        if all(os.path.exists(p) for p in paths):  # made while this process waited
            return paths
        if download:
            _download(task, data_dir)
            return paths
        spec = get_spec(task.dataset_name)
        n = spec.default_episodes if episodes is None else episodes
        print(
            f'{task.dataset_name} not found in {data_dir}: regenerating {n} episodes locally '
            f'(`{regenerate_command(task.dataset_name, data_dir)} --episodes {n}`)',
            flush=True,
        )
        return generate_dataset(task.dataset_name, data_dir, episodes, workers, seed, episode_steps)


@contextlib.contextmanager
def _exclusive(data_dir: str, dataset_name: str):
    """Runs that need the same missing dataset at once (the jobs of a sweep) take turns: the first
    makes it, the others find it made. Two generators at once would each clear the other's
    half-written files."""
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, f'.{dataset_name}.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
