"""Vectorised evaluation envs: seeded resets, frozen finished envs, success flags, headless frames."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from envs.tasks import resolve_task
from envs.vector import make_eval_envs
from tests.processes import kill_and_wait_for_workers


@pytest.fixture(scope='module')
def envs():
    # cube-single episodes last 200 steps, so a whole episode runs in a second or two.
    with make_eval_envs(resolve_task('cube-single'), num_envs=3, render_size=48, num_workers=2) as vec:
        yield vec


def test_shapes_and_episode_length(envs):
    assert (envs.num_envs, envs.observation_dim, envs.action_dim, envs.max_episode_steps) == (3, 28, 5, 200)


def test_same_seeds_same_start_different_seeds_differ(envs):
    first = envs.reset([0, 1, 2])
    assert first.shape == (3, 28) and first.dtype == np.float32
    np.testing.assert_array_equal(envs.reset([0, 1, 2]), first)
    assert not np.array_equal(envs.reset([5, 6, 7])[0], first[0])


def test_each_env_runs_exactly_one_episode_and_is_frozen_after(envs):
    envs.reset([0, 1, 2])
    rng = np.random.default_rng(0)
    finished_at = np.full(3, -1)
    for t in range(envs.max_episode_steps + 5):
        result = envs.step(rng.uniform(-1, 1, (3, envs.action_dim)))
        assert result.success.dtype == bool and result.done.dtype == bool
        finished_at[result.just_finished] = t
        if t == envs.max_episode_steps + 1:
            frozen = result.observations.copy()
    assert (finished_at == envs.max_episode_steps - 1).all()  # truncated at the env's limit, once
    assert result.done.all() and not result.just_finished.any()
    np.testing.assert_array_equal(result.observations, frozen)
    assert (result.rewards == 0).all()


def test_render_selected_envs_headless(envs):
    envs.reset([0, 1, 2])
    frames = envs.render([2, 0])
    assert [f.shape for f in frames] == [(48, 48, 3), (48, 48, 3)]
    assert all(f.dtype == np.uint8 and f.std() > 0 for f in frames)


def test_wrong_action_shape_is_refused(envs):
    envs.reset([0, 1, 2])
    with pytest.raises(ValueError, match='actions must have shape'):
        envs.step(np.zeros((2, envs.action_dim)))


def test_a_partial_reset_leaves_the_other_envs_done_and_unstepped(envs):
    before = envs.reset([0, 1, 2])
    partial = envs.reset([7])
    np.testing.assert_array_equal(partial[1:], before[1:])
    result = envs.step(np.zeros((3, envs.action_dim)))
    assert result.done.tolist() == [False, True, True] and not result.just_finished[1:].any()
    np.testing.assert_array_equal(result.observations[1:], before[1:])
    assert (result.rewards[1:] == 0).all()
    with pytest.raises(ValueError, match='need 1 to 3 seeds'):
        envs.reset([0, 1, 2, 3])


def test_an_env_whose_episode_ends_restarts_with_its_next_seed_in_the_same_step(envs):
    """`start` refills chosen envs while the others run; `step` with next seeds restarts an env whose
    episode ends, exactly as `start` with that seed would, and keeps it running."""
    starts = envs.reset([0, 1, 2])
    np.testing.assert_array_equal(envs.start([1], [2]), starts[2:])
    actions = np.zeros((3, envs.action_dim))
    for _ in range(envs.max_episode_steps):
        result = envs.step(actions, next_seeds=[5, -1, 6])
    assert result.just_finished.tolist() == [True, True, True] and result.done.all()
    fresh = envs.reset([5, 0, 6])
    np.testing.assert_array_equal(result.observations[[0, 2]], fresh[[0, 2]])
    envs.reset([0, 1, 2])
    for _ in range(envs.max_episode_steps):
        envs.step(actions, next_seeds=[5, -1, 6])
    after = envs.step(actions)
    assert after.done.tolist() == [False, True, False] and (after.rewards[[0, 2]] != 0).all()


def _pointmaze_rollout(seeds):
    with make_eval_envs(resolve_task('pointmaze'), num_envs=len(seeds), num_workers=1) as vec:
        vec.reset(seeds)
        for _ in range(20):
            observations = vec.step(np.full((len(seeds), vec.action_dim), 0.3, np.float32)).observations
    return observations


def test_an_env_seed_reproduces_its_episode_in_a_fresh_worker():
    """OGBench's mazes draw their start noise from the global NumPy RNG: a reset must seed it too,
    or the env_seed recorded in eval.jsonl would not reproduce the episode (nor give every β the
    same starts in a sweep)."""
    first = _pointmaze_rollout([0, 1])
    np.testing.assert_array_equal(_pointmaze_rollout([0, 1]), first)
    assert not np.array_equal(first[0], first[1])


def test_workers_leave_ctrl_c_to_the_parent_and_die_with_it():
    """SIGINT (Ctrl-C reaches the whole process group) does not stop a worker; SIGKILL of the parent,
    which cannot shut its workers down, does, within a few seconds (no orphans)."""
    script = ('from envs.tasks import resolve_task\nfrom envs.vector import make_eval_envs\n'
              "envs = make_eval_envs(resolve_task('pointmaze'), 2, num_workers=2)\n"
              "print(' '.join(str(p.pid) for p in envs._procs), flush=True)\nimport time\ntime.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2
        for pid in workers:
            os.kill(pid, signal.SIGINT)
        time.sleep(1.0)
        assert all(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in workers)
        assert kill_and_wait_for_workers(parent, workers), 'workers outlived their killed parent'
    finally:
        parent.kill()
