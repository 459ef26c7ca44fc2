"""The antmaze / antsoccer collectors and the runtime loader of the shipped ant expert.

Fast checks only: the loader reads the same actor the expert's own flax model acts with, short generation
runs of both datasets load back through OGBench's loader, the collectors are deterministic per seed, and the
dribble controller pushes goalward. The expert's training is tested in tests/test_tools_experts.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from envs import locomotion
from envs.datasets import DatasetError, load_task_dataset
from envs.generate import generate_dataset
from envs.tasks import resolve_task
from tools import experts

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')


# ------------------------------------------------------------------------------------------ shipped expert


def test_numpy_actor_matches_flax_actor():
    expert = experts.load_expert('ant')
    obs = np.random.default_rng(0).normal(size=(7, expert.obs_dim)).astype(np.float32)
    assert np.allclose(locomotion.actor_mean_action(locomotion.load_ant_actor(), obs), expert.act(obs), atol=1e-5)


def test_missing_weights_give_one_actionable_line(tmp_path, monkeypatch):
    monkeypatch.setattr(locomotion, 'EXPERTS_DIR', tmp_path)
    with pytest.raises(DatasetError) as err:
        locomotion.load_ant_actor()
    message = str(err.value)
    assert '\n' not in message and 'python -m tools.experts train ant' in message


# ------------------------------------------------------------------------------------------------ datasets


@pytest.mark.parametrize('task_name', ['antmaze', 'antsoccer'])
def test_short_generation_loads_through_ogbench(tmp_path, task_name):
    task = resolve_task(task_name)
    steps = 40
    train_path, val_path = generate_dataset(
        task.dataset_name, str(tmp_path), episodes=2, workers=1, seed=0, episode_steps=steps, progress=False
    )
    raw = np.load(train_path)
    assert raw['observations'].shape[0] == 2 * steps and raw['terminals'].sum() == 2
    assert np.abs(raw['actions']).max() <= 1.0
    data = load_task_dataset(task, data_dir=str(tmp_path))
    assert data['observations'].shape[0] == data['actions'].shape[0] > 0
    assert all(np.isfinite(v).all() for v in data.values())
    card = json.load(open(train_path[: -len('.npz')] + '.card.json'))
    assert 'ant expert' in card['generator']
    assert np.load(val_path)['terminals'].sum() == 1


@pytest.mark.parametrize('dataset', list(locomotion.DATASETS))
def test_collector_episode_is_a_function_of_its_seed(dataset):
    collect = locomotion.DATASETS[dataset].make_collector(30)
    first, again, other = collect(7), collect(7), collect(8)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first['actions'], other['actions'])
    assert first['terminals'][-1] and not first['terminals'][:-1].any()


# --------------------------------------------------------------------------------------- dribble controller

coordinate = st.floats(-20, 20, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.tuples(coordinate, coordinate), st.tuples(coordinate, coordinate), st.tuples(coordinate, coordinate))
def test_dribble_direction_is_a_unit_vector(agent, ball, goal):
    agent, ball, goal = np.array(agent), np.array(ball), np.array(goal)
    assume(np.linalg.norm(agent - ball) > 1e-2 and np.linalg.norm(goal - ball) > 1e-2)
    direction = locomotion.DribbleController().direction(agent, ball, goal)
    assert np.isfinite(direction).all() and abs(np.linalg.norm(direction) - 1) < 1e-3


@settings(max_examples=100, deadline=None)
@given(st.floats(0, 2 * np.pi), st.floats(0.5, 1.5), st.floats(3, 15))
def test_dribble_pushes_goalward_from_behind_and_goes_around_from_the_front(angle, gap, goal_distance):
    controller = locomotion.DribbleController()
    to_goal = np.array([np.cos(angle), np.sin(angle)])
    ball = np.array([1.0, -2.0])
    goal = ball + goal_distance * to_goal
    behind = controller.direction(ball - gap * to_goal, ball, goal)
    assert behind @ to_goal > 0.9
    in_front = ball + gap * to_goal
    around = controller.direction(in_front, ball, goal)
    assert around @ (ball - in_front) / gap < 0.9  # does not walk straight through the ball back toward it
