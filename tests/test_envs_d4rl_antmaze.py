"""D4RL's antmaze-*-diverse-v2 rebuilt on OGBench's ant maze (envs/d4rl_antmaze.py).

Fast checks only: the maps are D4RL's, the evaluation env starts and sets its goal as D4RL does, a scripted
oracle (the ant expert on D4RL's BFS waypoints) reaches the umaze goal through the evaluation envs, short
generation runs of each maze load back as FQL-style transitions (also from a D4RL-layout hdf5 file), and
`python -m harness.run` trains and evaluates on umaze end to end.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs import d4rl_antmaze
from envs.d4rl_antmaze import MAZES
from envs.datasets import DatasetError, ensure_dataset, load_task_dataset
from envs.generate import generate_dataset
from envs.locomotion import actor_mean_action, load_expert_actor
from envs.seeding import seed_everything
from envs.tasks import resolve_task
from envs.vector import make_eval_envs, make_task_env

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')

UMAZE = 'antmaze-umaze-diverse-v2'


def test_maps_are_d4rls():
    """The evaluation maps of D4RL (1 wall, R start, G goal) and the horizons of its v2 registrations."""
    assert '/'.join(MAZES[UMAZE].layout) == '11111/1R001/11101/1G001/11111'
    assert '/'.join(MAZES['antmaze-medium-diverse-v2'].layout) == \
        '11111111/1R011001/10010001/11000111/10010001/10100101/100010G1/11111111'
    assert '/'.join(MAZES['antmaze-large-diverse-v2'].layout) == (
        '111111111111/1R0001000001/101101010101/100000010001/101111011101/100101000001/110101010111/'
        '100100010G01/111111111111')
    assert [m.max_episode_steps for m in MAZES.values()] == [700, 1000, 1000]


@pytest.fixture(scope='module')
def umaze_env():
    return make_task_env(UMAZE)


@pytest.mark.parametrize('maze_type', ['medium', 'large'])
def test_ogbench_medium_and_large_walls_equal_d4rls(maze_type):
    from ogbench.locomaze.maze import make_maze_env

    env = make_task_env(f'antmaze-{maze_type}-diverse-v2')
    assert np.array_equal(env.unwrapped.maze_map, make_maze_env('ant', 'maze', maze_type=maze_type).maze_map)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_evaluation_reset_is_d4rls(umaze_env, seed):
    """The ant starts at the origin (R cell, D4RL's frame) with its ±0.1 reset noise; the goal lies in
    D4RL's G-cell + [0, 1.5]² box; both are functions of the seed."""
    env = umaze_env
    seed_everything(env, seed)
    ob, _ = env.reset(seed=seed)
    goal = env.unwrapped.cur_goal_xy.copy()
    assert ob.shape == (29,) and np.all(np.abs(ob[:2]) <= 0.1 + 1e-9)
    offset = goal - d4rl_antmaze.cell_xy(MAZES[UMAZE].cell('G'))
    assert np.all((offset >= 0) & (offset <= 1.5))
    seed_everything(env, seed)
    again, _ = env.reset(seed=seed)
    assert np.array_equal(ob, again) and np.array_equal(goal, env.unwrapped.cur_goal_xy)


@settings(max_examples=30, deadline=None)
@given(i=st.integers(1, 6), j=st.integers(1, 6), offset=st.tuples(st.floats(0, 3.99), st.floats(0, 3.99)))
def test_d4rl_grid_lookup_counts_a_cell_from_its_centre_on(i, j, offset):
    """D4RL's int(1 + xy / 4): a cell runs from its centre to the next centre, half a cell later than the
    walls (a cell's walls are 2 m either side of its centre)."""
    xy = d4rl_antmaze.cell_xy((i, j)) + np.array(offset)
    assert d4rl_antmaze.d4rl_cell(xy) == (i, j)


def test_medium_waypoints_lead_through_the_evaluation_goal_cell():
    """On medium the (6, 5) goal cell is a dead end entered only through (6, 6), the evaluation goal's cell.
    From (5, 6) D4RL's collector aims at (6, 6)'s centre plus fresh U[0, 1]² noise at every call (mean
    0.25 m per axis from the relabelling goal), and at the goal itself from (6, 6) on."""
    maze = MAZES['antmaze-medium-diverse-v2']
    assert maze.cell('G') == (6, 6) and (6, 5) in maze.data_goals
    assert d4rl_antmaze.path_lengths(maze, (6, 5))[(5, 6)] == 2
    goal = d4rl_antmaze.cell_xy((6, 5)) + 0.7
    np.random.seed(0)
    from_above = np.array([d4rl_antmaze.waypoint(maze, d4rl_antmaze.cell_xy((5, 6)), goal) for _ in range(200)])
    offsets = from_above - d4rl_antmaze.cell_xy((6, 6))
    assert np.all((offsets >= 0) & (offsets <= 1)) and len(np.unique(from_above, axis=0)) == 200
    inside = d4rl_antmaze.cell_xy((6, 6)) + 0.2
    assert np.array_equal(d4rl_antmaze.waypoint(maze, inside, goal), goal)
    # Just short of (6, 6)'s centre the lookup still counts the ant in (5, 6): it walks on, not round.
    assert d4rl_antmaze.d4rl_cell(d4rl_antmaze.cell_xy((6, 6)) - [0.0, 0.1]) == (5, 6)


def test_scripted_oracle_reaches_the_umaze_goal_through_the_evaluation_envs(umaze_env):
    """Positive control for the evaluation path: the ant expert walking D4RL's waypoints (from the
    observation's x-y, with the goal read from an identically seeded env) succeeds and ends the episode."""
    seed, actor, local = 1_000_000, load_expert_actor('ant'), umaze_env
    seed_everything(local, seed)
    local.reset(seed=seed)
    goal = local.unwrapped.cur_goal_xy.copy()
    with make_eval_envs(resolve_task('antmaze-umaze-diverse'), 1, num_workers=1, success_timing='post') as envs:
        obs = envs.reset([seed])
        assert envs.max_episode_steps == 700
        for step in range(700):
            xy = obs[0, :2].astype(float)
            direction = d4rl_antmaze.unit(d4rl_antmaze.waypoint(MAZES[UMAZE], xy, goal) - xy)
            action = actor_mean_action(actor, np.concatenate([obs[0, 2:], direction]))[None]
            result = envs.step(action.astype(np.float32))
            obs = result.observations
            if result.done[0]:
                break
    assert result.success[0] and step < 699
    assert np.linalg.norm(obs[0, :2] - goal) <= 0.5


@pytest.mark.parametrize('env_id', list(MAZES))
def test_short_generation_loads_back_as_fql_transitions(tmp_path, env_id):
    steps = 30
    train_path, _ = generate_dataset(env_id, str(tmp_path), episodes=2, workers=1, seed=0, episode_steps=steps,
                                     progress=False)
    raw = np.load(train_path)
    assert raw['observations'].shape == (2 * steps, 29) and raw['terminals'].sum() == 2
    assert set(np.unique(raw['rewards'])) <= {0.0, 1.0} and raw['goals'].shape == (2 * steps, 2)
    data = load_task_dataset(resolve_task(env_id), data_dir=str(tmp_path))
    # D4RL's qlearning_dataset pairs: each episode's last row has no successor in the episode.
    assert data['observations'].shape == (2 * (steps - 1), 29)
    assert np.array_equal(data['next_observations'][: steps - 2], raw['observations'][1: steps - 1])
    assert set(np.unique(data['rewards'])) <= {-1.0, 0.0}
    assert np.array_equal(data['masks'], -data['rewards'])  # masks 1 - terminal, terminal = at the goal
    card = json.load(open(train_path[: -len('.npz')] + '.card.json'))
    assert 0 <= card['collector_success'] <= 1 and 'ant expert' in card['generator']
    assert card['procedure'].startswith('D4RL scripts/generation')


def test_collector_episode_is_a_function_of_its_seed():
    collect = d4rl_antmaze.DATASETS['antmaze-medium-diverse-v2'].make_collector(20)
    first, other, again = collect(5), collect(6), collect(5)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first['observations'], other['observations'])


def test_collector_summary_counts_episodes_that_reach_their_goal():
    goals = np.zeros((6, 2))
    obs = np.full((6, 29), 5.0)
    obs[4, :2] = 0.3  # only the second episode (rows 3-5) comes within 0.5 m of its goal
    arrays = dict(observations=obs, goals=goals, terminals=np.array([0, 0, 1, 0, 0, 1], bool),
                  rewards=np.array([0, 0, 0, 0, 1, 0.0]))
    summary = d4rl_antmaze.collector_summary(arrays)
    assert summary['collector_success'] == 0.5 and summary['episodes_reaching_goal'] == 1


@settings(max_examples=30, deadline=None)
@given(ends=st.lists(st.booleans(), min_size=8, max_size=8), hits=st.lists(st.booleans(), min_size=8, max_size=8))
def test_transitions_follow_qlearning_dataset(ends, hits):
    """Every kept row i pairs with row i + 1, rows ending an episode (timeouts) and the last row are
    dropped, and labels are r - 1 and 1 - terminal."""
    n = 8
    d4rl = dict(observations=np.arange(n, dtype=float)[:, None].repeat(3, 1), actions=np.zeros((n, 2)),
                rewards=np.array(hits, float), terminals=np.array(hits), timeouts=np.array(ends))
    out = d4rl_antmaze.to_transitions(d4rl)
    kept = [i for i in range(n - 1) if not ends[i]]
    assert out['observations'][:, 0].tolist() == kept
    assert (out['next_observations'][:, 0] == out['observations'][:, 0] + 1).all()
    assert out['rewards'].tolist() == [float(hits[i]) - 1 for i in kept]
    assert out['masks'].tolist() == [1.0 - hits[i] for i in kept]


def test_official_hdf5_is_preferred_and_read(tmp_path):
    h5py = pytest.importorskip('h5py')
    n = 12
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / d4rl_antmaze.D4RL_FILES[UMAZE], 'w') as f:
        f['observations'] = rng.normal(size=(n, 29)).astype(np.float32)
        f['actions'] = rng.uniform(-1, 1, (n, 8)).astype(np.float32)
        f['rewards'] = np.zeros(n, np.float32)
        f['terminals'] = np.zeros(n, bool)
        f['timeouts'] = np.arange(n) % 6 == 5
        f['infos/goal'] = np.zeros((n, 2), np.float32)
    task = resolve_task('antmaze-umaze-diverse')
    assert ensure_dataset(task, str(tmp_path))[0].endswith('.hdf5')  # nothing regenerated
    data = load_task_dataset(task, data_dir=str(tmp_path))
    assert data['observations'].shape == (10, 29) and (data['rewards'] == -1).all() and (data['masks'] == 1).all()


def test_missing_and_download_give_one_actionable_line(tmp_path):
    task = resolve_task('antmaze-large-diverse')
    for call in (lambda: load_task_dataset(task, str(tmp_path)),
                 lambda: ensure_dataset(task, str(tmp_path), download=True)):
        with pytest.raises(DatasetError) as err:
            call()
        assert '\n' not in str(err.value) and d4rl_antmaze.D4RL_FILES[task.env_id] in str(err.value)


@pytest.mark.slow
def test_harness_trains_and_evaluates_umaze_end_to_end(tmp_path):
    from harness.errors import run_main
    from harness.run import main

    data_dir = tmp_path / 'data'
    generate_dataset(UMAZE, str(data_dir), episodes=2, workers=1, seed=0, episode_steps=40, progress=False)
    run = tmp_path / 'run'
    assert run_main(main, ['--task', 'antmaze-umaze-diverse', '--preset', 'tiny', '--steps', '50',
                           '--eval-episodes', '1', '--eval-envs', '1', '--video-episodes', '0',
                           '--data-dir', str(data_dir), '--out', str(run)]) == 0
    summary = json.loads((run / 'summary.json').read_text())
    assert summary['results'][0]['beta'] == 0.3
    episode = json.loads((run / 'eval.jsonl').read_text().splitlines()[0])
    assert 1 <= episode['length'] <= 700
