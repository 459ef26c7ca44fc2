"""Locomotion experts and the antmaze / antsoccer collectors.

Fast checks only: the shipped ant expert walks where it is told, short generation runs of both datasets
load back through OGBench's loader, the collectors are deterministic per seed, and the SAC pieces behave.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from envs import experts, locomotion
from envs.datasets import DatasetError, load_task_dataset
from envs.generate import generate_dataset
from envs.tasks import resolve_task

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')


@pytest.fixture(scope='module')
def ant_expert():
    return experts.load_expert('ant')


# ------------------------------------------------------------------------------------------ shipped expert


def _walk(expert, direction: np.ndarray, steps: int, seed: int) -> np.ndarray:
    """Displacement of the ant on OGBench's online ant env when the expert is told to walk along `direction`."""
    import gymnasium

    import ogbench.online_locomotion  # noqa: F401

    env = gymnasium.make('online-ant-v0').unwrapped
    env.reset(seed=seed)
    start = env.data.qpos[:2].copy()
    for _ in range(steps):
        state = np.concatenate([env.data.qpos, env.data.qvel])
        env.step(expert.act(experts.ant_direction_ob(state, direction)))
    return env.data.qpos[:2] - start


@pytest.mark.parametrize('angle', [0.0, 2.3, 4.2])
def test_shipped_ant_expert_walks_in_the_commanded_direction(ant_expert, angle):
    direction = np.array([np.cos(angle), np.sin(angle)])
    displacement = _walk(ant_expert, direction, steps=100, seed=0)  # 10 s at 10 Hz
    along = displacement @ direction
    across = abs(displacement @ np.array([-direction[1], direction[0]]))
    assert along > 3.0, f'walked only {along:.2f} m along the commanded direction in 10 s'
    assert across < 0.5 * along


def test_shipped_expert_card_records_training(ant_expert):
    card = ant_expert.card
    assert card['env_id'] == 'online-ant-xy-v0'
    assert card['env_steps_trained'] > 0 and card['train_command'].startswith('python -m envs.experts train ant')
    assert card['evaluation']['eval_speed'] > 0.5 and card['evaluation']['episodes'] >= 10


def test_numpy_actor_matches_flax_actor(ant_expert):
    obs = np.random.default_rng(0).normal(size=(7, ant_expert.obs_dim)).astype(np.float32)
    assert np.allclose(locomotion.actor_mean_action(locomotion.numpy_actor(ant_expert.params), obs), ant_expert.act(obs), atol=1e-5)


def test_missing_weights_give_one_actionable_line(tmp_path, monkeypatch):
    monkeypatch.setattr(experts, 'EXPERTS_DIR', tmp_path)
    with pytest.raises(DatasetError) as err:
        locomotion.load_ant_actor()
    message = str(err.value)
    assert '\n' not in message and 'python -m envs.experts train ant' in message


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


# ------------------------------------------------------------------------------------------------------ SAC


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    mean, log_std = jnp.array([[0.3, -1.2]]), jnp.array([[-0.5, 0.2]])
    action, logp = experts.tanh_gaussian_sample(mean, log_std, jax.random.PRNGKey(3))
    pre = jnp.arctanh(action)
    std = jnp.exp(log_std)
    gauss = -0.5 * ((pre - mean) / std) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi)
    expected = jnp.sum(gauss - jnp.log(1 - action**2), -1)
    assert np.allclose(logp, expected, atol=1e-3)


def test_sac_training_resumes_from_its_checkpoint(tmp_path):
    tiny = dataclasses.replace(
        experts.EXPERTS['ant'], sac=dataclasses.replace(experts.SACConfig(), actor_hidden=(16,), critic_hidden=(16,),
                                                         batch_size=8),
        seed_steps=32,
    )
    first = experts.train(tiny, 64, tmp_path, num_envs=4, checkpoint_every=32, eval_every=10**9, eval_episodes=1)
    assert first['step'] == 64 and np.isfinite(first['critic_loss'])
    resumed = experts.train(tiny, 96, tmp_path, num_envs=4, checkpoint_every=32, eval_every=10**9, eval_episodes=1)
    log = json.loads((tmp_path / 'progress.json').read_text())['log']
    assert resumed['step'] == 96 and [e['step'] for e in log] == [32, 64, 96]
