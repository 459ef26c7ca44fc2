"""Dataset regeneration and loading: OGBench's file format, determinism, resume, refusals.

Episodes are short (`episode_steps=40`, a test-only override) so the whole module runs in seconds.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error

import numpy as np
import ogbench
import psutil
import pytest

from envs import datasets, generate, locomotion
from envs.datasets import DatasetError, check_against_env, dataset_paths, ensure_dataset, load_task_dataset
from envs.generate import DATASETS, GENERATORS, card_path, generate_dataset, main
from envs.tasks import TASKS, resolve_task
from tests.processes import kill_and_wait_for_workers

EPISODES, STEPS = 10, 40  # 10 train + 1 val episode of 40 rows
SINGLE_TASK_ID = {
    'pointmaze-medium-navigate-v0': 'pointmaze-medium-navigate-singletask-task1-v0',
    'pointmaze-large-navigate-v0': 'pointmaze-large-navigate-singletask-task1-v0',
    'cube-single-play-v0': 'cube-single-play-singletask-task2-v0',
    'cube-double-play-v0': 'cube-double-play-singletask-task2-v0',
    'scene-play-v0': 'scene-play-singletask-task2-v0',
    'puzzle-3x3-play-v0': 'puzzle-3x3-play-singletask-task4-v0',
}


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    """Every supported dataset, generated once at seed 0 in one process."""
    root = str(tmp_path_factory.mktemp('data'))
    for name in DATASETS:
        generate_dataset(name, root, episodes=EPISODES, workers=1, seed=0, episode_steps=STEPS, progress=False)
    return root


def _read(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _copy_dataset(name, src, dst):
    os.makedirs(dst, exist_ok=True)
    for path in dataset_paths(name, src):
        shutil.copy(path, dst)


def test_every_dataset_of_the_task_table_has_a_generator():
    """Every task, OGBench's and D4RL's, can have its data regenerated offline by `python -m envs.generate`."""
    assert {t.dataset_name for t in TASKS.values()} <= set(GENERATORS)


@pytest.mark.parametrize('name', list(DATASETS))
def test_files_have_ogbench_keys_dtypes_and_episode_ends(data_dir, name):
    train_path, val_path = dataset_paths(name, data_dir)
    has_buttons = name.startswith(('scene', 'puzzle'))
    expected_keys = {'observations', 'actions', 'terminals', 'qpos', 'qvel'} | ({'button_states'} if has_buttons else set())
    for path, episodes in [(train_path, EPISODES), (val_path, EPISODES // 10)]:
        raw = _read(path)
        assert set(raw) == expected_keys
        rows = episodes * STEPS
        assert {k: len(v) for k, v in raw.items()} == {k: rows for k in expected_keys}
        for k in ('observations', 'actions', 'qpos', 'qvel'):
            assert raw[k].dtype == np.float32 and np.isfinite(raw[k]).all()
        assert raw['terminals'].dtype == bool
        if has_buttons:
            assert raw['button_states'].dtype == np.int64
        assert np.array_equal(np.flatnonzero(raw['terminals']), np.arange(STEPS - 1, rows, STEPS))
        assert np.abs(raw['actions']).max() <= 1.0


@pytest.mark.parametrize('name', list(DATASETS))
def test_ogbench_loader_reads_generated_files(data_dir, name):
    env, train, val = ogbench.make_env_and_datasets(SINGLE_TASK_ID[name], dataset_dir=data_dir)
    assert len(train['observations']) == EPISODES * (STEPS - 1)
    assert len(val['observations']) == (EPISODES // 10) * (STEPS - 1)
    assert train['observations'].shape[1] == env.observation_space.shape[0]
    assert train['actions'].shape[1] == env.action_space.shape[0]
    ours = load_task_dataset(resolve_task(SINGLE_TASK_ID[name]), data_dir)
    assert set(ours) == {'observations', 'actions', 'rewards', 'masks', 'next_observations'}
    assert all(v.dtype == np.float32 and len(v) == EPISODES * (STEPS - 1) for v in ours.values())
    np.testing.assert_array_equal(ours['masks'], train['masks'])
    assert len(load_task_dataset(resolve_task(SINGLE_TASK_ID[name]), data_dir, split='val')['masks']) == STEPS - 1
    check_against_env(ours, resolve_task(SINGLE_TASK_ID[name]), env.observation_space.shape[0],
                      env.action_space.shape[0])
    # Sparse labels: 0 exactly where OGBench's dense reward says solved (0), -1 elsewhere; nothing else moves.
    sparse = load_task_dataset(resolve_task(SINGLE_TASK_ID[name]), data_dir, reward='sparse')
    np.testing.assert_array_equal(sparse['rewards'], np.where(train['rewards'] == 0, 0.0, -1.0))
    for key in ('observations', 'actions', 'masks', 'next_observations'):
        np.testing.assert_array_equal(sparse[key], ours[key])


def test_data_card_records_the_run(data_dir):
    train_path, val_path = dataset_paths('cube-double-play-v0', data_dir)
    card = json.load(open(card_path(train_path)))
    assert card['dataset'] == 'cube-double-play-v0' and card['split'] == 'train'
    assert (card['seed'], card['episodes'], card['episode_steps']) == (0, EPISODES, STEPS)
    assert card['transitions'] == EPISODES * (STEPS - 1)
    assert card['wall_time_s'] >= 0 and card['collection_cpu_time_s'] > 0 and 'plan oracle' in card['generator']
    assert {'numpy', 'mujoco', 'gymnasium', 'ogbench', 'python'} <= set(card['versions'])
    assert json.load(open(card_path(val_path)))['episodes'] == 1


def test_same_seed_same_bytes_whatever_the_workers_and_other_seed_differs(data_dir, tmp_path):
    name = 'pointmaze-medium-navigate-v0'
    reference = open(dataset_paths(name, data_dir)[0], 'rb').read()
    generate_dataset(name, str(tmp_path / 'w2'), episodes=EPISODES, workers=2, seed=0, episode_steps=STEPS, progress=False)
    assert open(dataset_paths(name, str(tmp_path / 'w2'))[0], 'rb').read() == reference
    generate_dataset(name, str(tmp_path / 's1'), episodes=EPISODES, workers=1, seed=1, episode_steps=STEPS, progress=False)
    other = _read(dataset_paths(name, str(tmp_path / 's1'))[0])
    assert not np.array_equal(other['observations'], _read(dataset_paths(name, data_dir)[0])['observations'])


def test_interrupted_run_resumes_from_finished_shards(data_dir, tmp_path):
    """A shard left by an earlier run is reused, and the result equals an uninterrupted run."""
    name, root = 'cube-single-play-v0', str(tmp_path)
    shard_dir = os.path.join(root, f'.{name}.shards', generate.shard_folder_name(DATASETS[name], 0, EPISODES, STEPS))
    os.makedirs(shard_dir)
    generate._set_collector(DATASETS[name].make_collector, STEPS)
    size = generate.shard_size_for(EPISODES + 1)
    generate._collect_shard(os.path.join(shard_dir, 'shard-000000.npz'), 0, list(range(size)), STEPS)
    leftovers = [os.path.join(shard_dir, 'shard-000001.npz.tmp-999'), os.path.join(root, f'{name}.npz.tmp-999')]
    for path in leftovers:                    # what a kill mid-write leaves
        open(path, 'wb').write(b'0' * 100)
    generate_dataset(name, root, episodes=EPISODES, workers=1, seed=0, episode_steps=STEPS, progress=False)
    assert not any(os.path.exists(path) for path in leftovers)
    train_path = dataset_paths(name, root)[0]
    assert json.load(open(card_path(train_path)))['resumed_episodes'] == size
    assert open(train_path, 'rb').read() == open(dataset_paths(name, data_dir)[0], 'rb').read()
    assert not os.path.exists(os.path.join(root, f'.{name}.shards'))


def test_a_damaged_shard_is_dropped_with_one_warning_and_collected_again(data_dir, tmp_path, capsys):
    """A truncated shard (shards are written atomically, so only damage leaves one) is collected again,
    --force included, and the file equals an undamaged run's, instead of a BadZipFile on every rerun."""
    name, root = 'pointmaze-medium-navigate-v0', str(tmp_path)
    shard_dir = os.path.join(root, f'.{name}.shards', generate.shard_folder_name(DATASETS[name], 0, EPISODES, STEPS))
    os.makedirs(shard_dir)
    generate._set_collector(DATASETS[name].make_collector, STEPS)
    shard = os.path.join(shard_dir, 'shard-000000.npz')
    generate._collect_shard(shard, 0, list(range(generate.shard_size_for(EPISODES + 1))), STEPS)
    blob = open(shard, 'rb').read()
    open(shard, 'wb').write(blob[: len(blob) // 2])
    assert main([name, '--episodes', str(EPISODES), '--episode-steps', str(STEPS), '--workers', '1', '--force',
                 '--data-dir', root]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith('warning')]
    assert warnings == [f'warning: shard {shard} is damaged (BadZipFile); collecting its episodes again']
    assert open(dataset_paths(name, root)[0], 'rb').read() == open(dataset_paths(name, data_dir)[0], 'rb').read()


def test_shards_of_another_collector_are_not_resumed(tmp_path):
    """A shard written by a different collector (another card line) is never mixed into a resumed run."""
    name, root = 'cube-single-play-v0', str(tmp_path)
    spec = DATASETS[name]
    earlier = dataclasses.replace(spec, generator=spec.generator + ', an earlier collector')
    shard_dir = os.path.join(root, f'.{name}.shards', generate.shard_folder_name(earlier, 0, EPISODES, STEPS))
    os.makedirs(shard_dir)
    generate._set_collector(spec.make_collector, STEPS)
    generate._collect_shard(os.path.join(shard_dir, 'shard-000000.npz'), 0, [0], STEPS)
    train_path, _ = generate_dataset(name, root, episodes=EPISODES, workers=1, seed=0, episode_steps=STEPS,
                                     progress=False)
    assert json.load(open(card_path(train_path)))['resumed_episodes'] == 0


def test_oracle_play_data_solves_single_tasks(tmp_path):
    """Relabelled cube-single play data has transitions where the task is solved (mask 0, reward 0)."""
    generate_dataset('cube-single-play-v0', str(tmp_path), episodes=4, workers=1, seed=0, episode_steps=301, progress=False)
    data = load_task_dataset(resolve_task('cube-single-play-singletask-task4-v0'), str(tmp_path))
    solved = data['masks'] == 0
    assert solved.sum() > 0
    assert (data['rewards'][solved] == 0).all() and (data['rewards'][~solved] < 0).all()


# ------------------------------------------------------------------------------------------- refusals
def test_missing_file_offline_names_the_regeneration_command(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_task_dataset(resolve_task('pointmaze'), str(tmp_path))
    message = str(info.value)
    assert '\n' not in message
    assert f'python -m envs.generate pointmaze-medium-navigate-v0 --data-dir {tmp_path}' in message


def test_truncated_file_is_refused(data_dir, tmp_path):
    name = 'pointmaze-medium-navigate-v0'
    _copy_dataset(name, data_dir, str(tmp_path))
    train_path = dataset_paths(name, str(tmp_path))[0]
    blob = open(train_path, 'rb').read()
    open(train_path, 'wb').write(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match='truncated or corrupt'):
        load_task_dataset(resolve_task('pointmaze'), str(tmp_path))


@pytest.mark.parametrize('key', ['observations', 'qpos', 'qvel'])
def test_nan_in_observations_or_simulator_state_is_refused(data_dir, tmp_path, key):
    name = 'pointmaze-medium-navigate-v0'
    _copy_dataset(name, data_dir, str(tmp_path))
    train_path = dataset_paths(name, str(tmp_path))[0]
    raw = _read(train_path)
    raw[key][5, 0] = np.nan
    np.savez_compressed(train_path, **raw)
    with pytest.raises(DatasetError, match=f'non-finite values in {key}') as err:
        load_task_dataset(resolve_task('pointmaze'), str(tmp_path))
    assert '\n' not in str(err.value) and '--force' in str(err.value)


def test_a_file_that_is_not_the_one_its_card_describes_is_refused(data_dir, tmp_path):
    """Observations cast to int64 trained on rounded data; a file changed after generation trained as if it
    were the card's. Both are refused in one line that names the fix; the intact file loads."""
    name = 'pointmaze-medium-navigate-v0'
    _copy_dataset(name, data_dir, str(tmp_path))
    shutil.copy(card_path(dataset_paths(name, data_dir)[0]), tmp_path)
    train_path = dataset_paths(name, str(tmp_path))[0]
    assert len(load_task_dataset(resolve_task('pointmaze'), str(tmp_path))['observations']) == EPISODES * (STEPS - 1)
    intact = _read(train_path)
    changes = {'observations are int64, not floating point': {'observations': intact['observations'].astype(np.int64)},
               'is not the file its data card describes': {'actions': intact['actions'] * 0.5},
               r'qpos is float64\[400, 2\] but its data card says float32\[400, 2\]':
                   {'qpos': intact['qpos'].astype(float)}}
    for message, change in changes.items():
        np.savez_compressed(train_path, **{**intact, **change})
        with pytest.raises(DatasetError, match=message) as err:
            load_task_dataset(resolve_task('pointmaze'), str(tmp_path))
        assert '\n' not in str(err.value) and f'envs.generate {name} --data-dir {tmp_path} --force' in str(err.value)


def test_unknown_dataset_exits_with_one_line(capsys):
    assert main(['cube-dubble-play-v0', '--data-dir', '/nonexistent']) == 2
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and 'cube-double-play-v0' in err
    # A real OGBench dataset this project has no generator for names the way to get it.
    assert main(['humanoidmaze-medium-navigate-v0', '--data-dir', '/nonexistent']) == 2
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and 'no offline generator' in err and '--download' in err


def test_bad_flags_and_unwritable_folders_are_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(['cube-single-play-v0', '--episodes', 'abc'])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('error: argument --episodes')
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    assert main(['cube-single-play-v0', '--episodes', '1', '--data-dir', str(blocker / 'data')]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('error: ') and 'writable --data-dir' in err


def test_locomotion_datasets_are_generated_by_envs_locomotion():
    for name, spec in locomotion.DATASETS.items():
        assert generate.get_spec(name) is spec


# ------------------------------------------------------------------------------------ CLI and ensure
def test_cli_writes_files_and_then_leaves_them_alone(tmp_path, capsys):
    args = ['pointmaze-large-navigate-v0', '--episodes', '2', '--episode-steps', '10', '--data-dir', str(tmp_path)]
    assert main(args) == 0
    assert all(os.path.exists(p) for p in dataset_paths('pointmaze-large-navigate-v0', str(tmp_path)))
    assert '18 transitions' in capsys.readouterr().out
    assert main(args) == 0
    assert 'already exist' in capsys.readouterr().out


def test_ensure_dataset_regenerates_a_missing_dataset_and_says_so(tmp_path, capsys):
    task = resolve_task('pointmaze')
    paths = ensure_dataset(task, str(tmp_path), episodes=3, workers=1, episode_steps=12)
    assert 'regenerating 3 episodes' in capsys.readouterr().out
    assert json.load(open(card_path(paths[0])))['episodes'] == 3
    assert len(datasets.load_task_dataset(task, str(tmp_path))['observations']) == 3 * 11
    assert ensure_dataset(task, str(tmp_path)) == paths


def test_failed_download_falls_back_to_the_regeneration_command(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError('no route to host')

    monkeypatch.setattr(ogbench, 'download_datasets', offline)
    with pytest.raises(DatasetError, match='python -m envs.generate scene-play-v0'):
        load_task_dataset(resolve_task('scene'), str(tmp_path), download=True)


def test_a_dataset_that_does_not_fit_the_env_is_refused_in_one_line(data_dir):
    task = resolve_task('cube-single-play-singletask-task2-v0')
    data = load_task_dataset(task, data_dir)
    obs_dim, act_dim = data['observations'].shape[1], data['actions'].shape[1]
    with pytest.raises(DatasetError, match='observations have 28 dimensions but the env') as err:
        check_against_env(data, task, obs_dim + 1, act_dim)
    assert '\n' not in str(err.value) and 'envs.generate cube-single-play-v0 --force' in str(err.value)
    outside = {**data, 'actions': data['actions'] * 1.5}
    with pytest.raises(DatasetError, match=r'outside the \[-1, 1\] action box') as err:
        check_against_env(outside, task, obs_dim, act_dim, data_dir)
    # The fix regenerates the file where it is, not in the default folder.
    assert f'envs.generate cube-single-play-v0 --data-dir {data_dir} --force' in str(err.value)


def test_generation_workers_exit_when_the_generator_is_killed(tmp_path):
    """kill -9 of `python -m envs.generate` leaves no orphaned collector processes behind."""
    proc = subprocess.Popen([sys.executable, '-m', 'envs.generate', 'pointmaze-medium-navigate-v0', '--episodes',
                             '200', '--workers', '2', '--data-dir', str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        workers = []
        while time.time() < deadline and len(workers) < 2:
            time.sleep(0.5)
            workers = [child.pid for child in psutil.Process(proc.pid).children() if 'python' in child.name()]
        assert len(workers) >= 2, 'the generator did not start its workers'
        time.sleep(2.0)                       # let them import and start collecting
        assert kill_and_wait_for_workers(proc, workers), 'collector workers outlived the generator'
    finally:
        proc.kill()


@pytest.mark.slow
def test_workers_killed_while_they_start_exit_with_harness_run(tmp_path):
    """kill -9 of `python -m harness.run` while its regeneration workers are still importing (a spawned
    worker imports harness.run's modules, JAX included, for seconds before it runs any code of ours)
    leaves neither the workers nor the multiprocessing resource tracker behind."""
    proc = subprocess.Popen([sys.executable, '-m', 'harness.run', '--task', 'pointmaze', '--preset', 'tiny',
                             '--dataset-episodes', '200', '--data-dir', str(tmp_path / 'data'), '--out',
                             str(tmp_path / 'run')], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        children = []
        while time.time() < deadline and len(children) < 2:      # the tracker and a worker
            time.sleep(0.1)
            children = [child.pid for child in psutil.Process(proc.pid).children()]
        assert len(children) >= 2, 'harness.run did not start its regeneration workers'
        assert kill_and_wait_for_workers(proc, children, seconds=60), 'workers outlived harness.run'
    finally:
        proc.kill()
