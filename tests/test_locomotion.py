"""The antmaze / antsoccer collectors and the runtime loader of the shipped ant expert.

Fast checks only: the loader reads the same actor the expert's own flax model acts with, short generation
runs of both datasets load back through OGBench's loader, the collectors are deterministic per seed, the
dribbler's aims and score, its lookahead agreeing exactly with the env, and `python -m envs.locomotion success`
replays a dataset file row for row. The expert's training is tested in tests/test_tools_experts.py.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from envs import locomotion
from envs.collectors import make_locomaze_env
from envs.datasets import DatasetError, load_task_dataset
from envs.generate import generate_dataset
from envs.tasks import resolve_task
from tools import experts

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')


# ------------------------------------------------------------------------------------------ shipped expert


def test_numpy_actor_matches_flax_actor():
    expert = experts.load_expert('ant')
    obs = np.random.default_rng(0).normal(size=(7, expert.obs_dim)).astype(np.float32)
    numpy_actions = locomotion.actor_mean_action(locomotion.load_expert_actor('ant'), obs)
    assert np.allclose(numpy_actions, expert.act(obs), atol=1e-5)


def test_missing_weights_give_one_actionable_line(tmp_path, monkeypatch):
    monkeypatch.setattr(locomotion, 'EXPERTS_DIR', tmp_path)
    with pytest.raises(DatasetError) as err:
        locomotion.load_expert_actor('ant')
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


# ------------------------------------------------------------------------------------- lookahead dribbler

coordinate = st.floats(-20, 20, allow_nan=False)
DRIBBLER = locomotion.LookaheadDribbler()


@settings(max_examples=100, deadline=None)
@given(st.tuples(coordinate, coordinate), st.tuples(coordinate, coordinate), st.tuples(coordinate, coordinate))
def test_every_aim_gives_a_unit_walking_direction(agent, ball, goal):
    agent, ball, goal = np.array(agent), np.array(ball), np.array(goal)
    assume(np.linalg.norm(agent - ball) > 1e-2 and np.linalg.norm(goal - ball) > 1e-2)
    for aim in DRIBBLER.aims():  # unit() keeps OGBench's 1e-6 guard: |v| / (|v| + 1e-6) >= 1 - 1e-4 here
        direction = DRIBBLER.direction(aim, agent, ball, goal)
        assert np.isfinite(direction).all() and abs(np.linalg.norm(direction) - 1) < 1e-3


@settings(max_examples=100, deadline=None)
@given(st.floats(0, 2 * np.pi), st.sampled_from(DRIBBLER.aims()[:-1]), st.floats(0.05, 3.0), st.floats(0, 2 * np.pi))
def test_an_aim_walks_to_behind_the_ball_then_along_its_line(goal_angle, aim, distance, bearing):
    """The aim's line is the ball->goal line turned by the aim's angle; from afar the ant walks to the point
    `aim_behind` behind the ball on it, within `contact` it walks along it."""
    assume(abs(distance - DRIBBLER.contact) > 1e-6)  # at the boundary itself rounding picks the branch
    ball = np.array([10.0, 10.0])
    goal = ball + 8.0 * np.array([np.cos(goal_angle), np.sin(goal_angle)])
    line = np.array([np.cos(goal_angle + aim), np.sin(goal_angle + aim)])
    agent = ball + distance * np.array([np.cos(bearing), np.sin(bearing)])
    direction = DRIBBLER.direction(aim, agent, ball, goal)
    expected = line if distance <= DRIBBLER.contact else locomotion.unit(ball - DRIBBLER.aim_behind * line - agent)
    assert np.allclose(direction, expected, atol=1e-6)  # unit()'s 1e-6 guard shortens the 8 m goal line by ~1e-7


def test_the_lookahead_is_what_the_env_then_does():
    """The lookahead steps a copy of the MuJoCo state with the noise drawn ahead: walking the same aim in the
    env ends exactly where the lookahead said, and looking ahead leaves the env's own state untouched."""
    env = make_locomaze_env(locomotion.ANTSOCCER_ENV, 100)
    collect = locomotion.AntsoccerNavigateCollector(env, locomotion.load_expert_actor('ant'))
    base = collect.base
    ob, _ = env.reset(seed=5)
    for _ in range(10):
        ob, *_ = env.step(env.action_space.sample())
    goal = np.array(base.cur_goal_xy)
    noise = np.random.default_rng(0).normal(0, locomotion.ACTION_NOISE, (DRIBBLER.horizon, 8))
    aim = DRIBBLER.aims()[2]
    before = base.data.qpos.copy()
    predicted_agent, predicted_ball = collect.lookahead(aim, goal, noise)
    assert np.array_equal(base.data.qpos, before)
    for row in noise:
        agent, ball = (np.array(v) for v in base.get_agent_ball_xy())
        ob, *_ = env.step(np.clip(collect.walk_action(ob, DRIBBLER.direction(aim, agent, ball, goal)) + row, -1, 1))
    agent, ball = (np.array(v) for v in base.get_agent_ball_xy())
    assert np.array_equal(agent, predicted_agent) and np.array_equal(ball, predicted_ball)
    assert not np.allclose(agent, before[:2])  # the ant did walk


@settings(max_examples=50, deadline=None)
@given(st.floats(0, 3), st.floats(0, 5))
def test_the_score_is_ball_progress_less_the_ant_straying(progress, final_gap):
    ball, goal = np.array([0.0, 0.0]), np.array([5.0, 0.0])
    final_ball = ball + np.array([progress, 0.0])
    final_agent = final_ball - np.array([final_gap, 0.0])
    expected = progress - DRIBBLER.stray_cost * max(0.0, final_gap - DRIBBLER.stray)
    assert np.isclose(DRIBBLER.score(ball, goal, final_agent, final_ball), expected)


def test_antball_observation_is_what_the_antball_env_shows_for_the_same_state():
    """The trained antball expert sees in antsoccer exactly the input it was trained on in
    `online-antball-v0`: same agent and ball state, same goal, same observation."""
    soccer = make_locomaze_env(locomotion.ANTSOCCER_ENV, 20)
    ob, _ = soccer.reset(seed=3)
    for _ in range(5):
        ob, *_ = soccer.step(soccer.action_space.sample())
    base = soccer.unwrapped
    agent_xy, ball_xy = (np.array(v) for v in base.get_agent_ball_xy())
    goal_xy = ball_xy + np.array([3.0, -4.0])
    antball = experts.make_online_env(experts.EXPERTS['antball']).unwrapped
    antball.set_state(base.data.qpos.copy(), base.data.qvel.copy())
    antball.set_goal(goal_xy)
    assert np.allclose(locomotion.antball_observation(ob, agent_xy, ball_xy, goal_xy), antball._get_obs(), atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.1, 30.0), st.floats(0.0, 2 * np.pi))
def test_antball_goal_is_pulled_within_its_training_reach(distance, angle):
    ball = np.array([1.0, -2.0])
    goal = ball + distance * np.array([np.cos(angle), np.sin(angle)])
    to_goal = locomotion.antball_observation(np.zeros(42), np.zeros(2), ball, goal)[-2:]
    assert np.isclose(np.linalg.norm(to_goal), min(distance, locomotion.BALL_GOAL_REACH))
    assert np.allclose(to_goal / np.linalg.norm(to_goal), (goal - ball) / distance)


def test_antsoccer_dribbles_with_the_antball_expert_when_one_is_given():
    """Near the ball the antball expert acts (here one that always outputs tanh(0.5)), away from it the
    walking expert does; compared over the first `STUCK_WINDOW` steps, before a stuck detour can send
    the ant walking from next to the ball."""
    env = make_locomaze_env(locomotion.ANTSOCCER_ENV, 200)
    constant = [(np.zeros((42, 8)), np.full(8, 0.5))]
    collect = locomotion.AntsoccerNavigateCollector(env, locomotion.load_expert_actor('ant'), noise=0.0,
                                                    ball_actor=constant)
    episode = {k: v[: locomotion.STUCK_WINDOW + 1] for k, v in collect(11).items()}
    agent_to_ball = np.linalg.norm(episode['observations'][:, :2] - episode['observations'][:, 15:17], axis=1)
    near = agent_to_ball <= locomotion.BALL_NEAR
    by_ball_actor = np.all(np.isclose(episode['actions'], np.tanh(0.5)), axis=1)
    assert near.any() and not near.all()
    assert np.array_equal(by_ball_actor, near)


# ----------------------------------------------------------------------------------- collector success CLI

SOCCER = 'antsoccer-arena-navigate-v0'
CLI_STEPS = 30


@pytest.fixture(scope='module')
def soccer_dir(tmp_path_factory):
    """A two-episode antsoccer dataset of 30-row episodes, generated at seed 3."""
    root = str(tmp_path_factory.mktemp('soccer'))
    generate_dataset(SOCCER, root, episodes=2, workers=1, seed=3, episode_steps=CLI_STEPS, progress=False)
    return root


def test_success_replays_the_file_and_ends_with_the_count(soccer_dir, capsys):
    assert locomotion.main(['success', SOCCER, '--episodes', '2', '--data-dir', soccer_dir]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[0])
    assert (result['seed'], result['episode_steps'], result['episodes']) == (3, CLI_STEPS, 2)  # from the card
    assert lines[-1] == f"collector success: {result['episodes_with_goal']}/2 episodes"


def test_success_refuses_a_file_from_another_collector(soccer_dir, tmp_path, capsys):
    train_path = locomotion.dataset_paths(SOCCER, soccer_dir)[0]
    arrays = dict(np.load(train_path))
    arrays['actions'][CLI_STEPS + 5] *= -1  # episode 1 no longer matches its seed's replay
    np.savez(tmp_path / f'{SOCCER}.npz', **arrays)
    shutil.copy(locomotion.card_path(train_path), tmp_path)
    assert locomotion.main(['success', SOCCER, '--episodes', '2', '--data-dir', str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert '\n' not in err and err.startswith('error: episode 1 of') and '--force' in err


def test_success_refuses_a_seed_other_than_the_files(soccer_dir, capsys):
    with pytest.raises(SystemExit) as exit_:
        locomotion.main(['success', SOCCER, '--seed', '0', '--data-dir', soccer_dir])
    assert exit_.value.code == 2 and 'generated with --seed 3' in capsys.readouterr().err


def test_success_names_the_command_that_generates_a_missing_file(tmp_path, capsys):
    assert locomotion.main(['success', SOCCER, '--data-dir', str(tmp_path)]) == 2
    assert f'python -m envs.generate {SOCCER} --data-dir {tmp_path}' in capsys.readouterr().err
