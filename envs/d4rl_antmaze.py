"""D4RL's antmaze-{umaze,medium,large}-diverse-v2, rebuilt on OGBench's ant maze: tasks, data, loading.

D4RL needs mujoco-py, old MuJoCo binaries and a download server these machines cannot reach, so the three
tasks are rebuilt here from D4RL's published maze, evaluation and dataset procedure (d4rl/locomotion and
scripts/generation/generate_ant_maze_datasets.py), on the ant of the installed `ogbench` package. Its ant
is D4RL's: the same body, joint ranges, 0.02 s RK4 steps with frame skip 5, and torque 30 × action; its
29-d observation is D4RL's (qpos[:15] + qvel[:14], x-y first); its maze puts cell (i, j) at
x = 4j - 4, y = 4i - 4, which is D4RL's frame because every D4RL map starts the ant in cell (1, 1).

Evaluation (`make_env`, also what `envs.vector.make_task_env` builds for these ids): the ant starts at the
R cell with the ant's own reset noise (qpos ± 0.1, qvel N(0, 0.1²)); the goal is the G cell plus
U[0, 1] + U[0, 0.5] in x and in y, drawn from the global NumPy RNG at every reset (D4RL's v2 resets);
reward 1 and success within 0.5 m of the goal after the step; the episode ends there, or after 700
(umaze) / 1000 (medium, large) steps.

Data ('diverse' = multistart, multigoal; `DATASETS`, through `python -m envs.generate`): each episode
starts in a random free cell of D4RL's dataset map that is not one of its goal cells, offset by U[0, 1] in
x and y, and walks toward one of the map's goal cells (offset like an evaluation goal) for the whole
episode: the shipped ant expert follows D4RL's waypoints (`waypoint`: D4RL's grid lookup, the next cell on
the BFS shortest path, offset by fresh U[0, 1] noise at every step, and the goal itself once that next cell
is the goal's) with N(0, 0.2²) action noise clipped to [-1, 1]. Rewards are D4RL's sparse
relabelling: 1 where s' is within 0.5 m of one fixed evaluation goal, `REWARD_GOAL_OFFSET` past the G cell.

Differences from D4RL that cannot be avoided, each also in docs/d4rl-antmaze.md:
* physics runs on MuJoCo 3 (not mujoco-py / MuJoCo 2.0), so identical actions give other trajectories;
* the walking policy is this project's SAC ant expert (artifacts/experts/ant.msgpack, unit goal
  directions) instead of D4RL's unpublished goal-reaching policy (fed direction × 10);
* the relabelling goal is the mean of the evaluation goal distribution; D4RL used one random draw of it,
  which its files do not record;
* our files hold 1000 episodes × 1001 rows (1,000,000 transitions) plus a 100-episode -val file; D4RL's
  hold 1,000,000 rows (999 whole episodes and a cut one), one file.

Loading (`load_transitions`) reads our .npz or, when a user has it in --data-dir, D4RL's own hdf5 file
(needs h5py), and turns either into transitions the way the FQL code does for antmaze: D4RL's
`qlearning_dataset` pairs (drop each episode's last row), rewards r - 1, masks 1 - terminal.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from envs.collectors import EpisodeRows, unit
from envs.dataset_spec import DatasetError, DatasetSpec, Episode, dataset_paths
from envs.locomotion import ACTION_NOISE, ant_act, load_expert_actor
from envs.seeding import seed_everything

MAZE_UNIT = 4.0  # D4RL's maze_size_scaling
GOAL_TOLERANCE = 0.5  # D4RL: sparse reward and evaluation success within 0.5 m
CELL_NOISE, EXTRA_GOAL_NOISE = 1.0, 0.5  # D4RL's goal: cell + U[0, 1] + U[0, 0.5] per axis
REWARD_GOAL_OFFSET = (CELL_NOISE + EXTRA_GOAL_NOISE) / 2  # mean of that noise, per axis


@dataclass(frozen=True)
class D4RLMaze:
    """One D4RL antmaze. `layout`: D4RL's evaluation map, rows top (y = -4) to bottom, '1' wall, 'R' start,
    'G' goal, '0' free. `data_goals`: the goal cells of the map D4RL's dataset script used (the same walls
    with other G cells); `max_episode_steps`: the evaluation horizon."""

    env_id: str
    layout: tuple[str, ...]
    data_goals: tuple[tuple[int, int], ...]
    max_episode_steps: int

    @property
    def walls(self) -> np.ndarray:
        return np.array([[1 if c == '1' else 0 for c in row] for row in self.layout])

    def cell(self, marker: str) -> tuple[int, int]:
        (i, j), = [(i, j) for i, row in enumerate(self.layout) for j, c in enumerate(row) if c == marker]
        return i, j

    @property
    def data_starts(self) -> list[tuple[int, int]]:
        """Start cells of the dataset episodes: D4RL resets in any free cell but its goal cells."""
        walls = self.walls
        return [(i, j) for i in range(walls.shape[0]) for j in range(walls.shape[1])
                if walls[i, j] == 0 and (i, j) not in self.data_goals]


MAZES: dict[str, D4RLMaze] = {m.env_id: m for m in [
    D4RLMaze('antmaze-umaze-diverse-v2', ('11111', '1R001', '11101', '1G001', '11111'), ((3, 1),), 700),
    D4RLMaze('antmaze-medium-diverse-v2',
             ('11111111', '1R011001', '10010001', '11000111', '10010001', '10100101', '100010G1', '11111111'),
             ((2, 6), (5, 1), (6, 5)), 1000),
    D4RLMaze('antmaze-large-diverse-v2',
             ('111111111111', '1R0001000001', '101101010101', '100000010001', '101111011101', '100101000001',
              '110101010111', '100100010G01', '111111111111'),
             ((1, 6), (3, 5), (3, 10), (5, 2), (7, 4), (7, 6), (7, 9)), 1000),
]}


def cell_xy(ij: tuple[int, int]) -> np.ndarray:
    """Centre of cell (i, j) in D4RL's (and OGBench's) frame, where cell (1, 1) is the origin."""
    return np.array([ij[1] * MAZE_UNIT - MAZE_UNIT, ij[0] * MAZE_UNIT - MAZE_UNIT])


def sample_goal(ij: tuple[int, int]) -> np.ndarray:
    """D4RL's goal near cell ij: U[0, 1] + U[0, 0.5] per axis, from the global NumPy RNG, floored at 0."""
    noise = np.random.uniform(0, CELL_NOISE, 2) + np.random.uniform(0, EXTRA_GOAL_NOISE, 2)
    return np.maximum(cell_xy(ij) + noise, 0.0)


def reward_goal(maze: D4RLMaze) -> np.ndarray:
    """The one goal the dataset's sparse rewards are relabelled against (see the module docstring)."""
    return cell_xy(maze.cell('G')) + REWARD_GOAL_OFFSET


# -------------------------------------------------------------------------------------------- environment


@functools.cache
def _env_class() -> type:
    """The D4RL antmaze env class, a subclass of OGBench's ant maze. OGBench defines its maze class inside a
    factory function, so the class is taken from one small throwaway instance (≈ 20 ms, once per process)."""
    from ogbench.locomaze.maze import make_maze_env  # heavy (MuJoCo): only where an env is built

    ogbench_maze = type(make_maze_env('ant', 'maze', maze_type='arena'))

    class D4RLAntMazeEnv(ogbench_maze):
        """OGBench's ant maze with a D4RL map, D4RL's fixed start and its goal noise. reset(options) takes
        `start_xy` (else the R cell with the ant's reset noise) and `goal_xy` (else a `sample_goal` at G)."""

        def __init__(self, maze: D4RLMaze, **kwargs):
            self.d4rl_maze = maze
            super().__init__(maze_type='arena', add_noise_to_goal=False, **kwargs)

        def update_tree(self, tree):
            self.maze_map = self.d4rl_maze.walls  # OGBench builds the walls and camera from maze_map
            super().update_tree(tree)

        def set_tasks(self):
            maze = self.d4rl_maze
            self.task_infos = [dict(task_name='task1', init_ij=maze.cell('R'), init_xy=tuple(cell_xy(maze.cell('R'))),
                                    goal_ij=maze.cell('G'), goal_xy=tuple(cell_xy(maze.cell('G'))))]

        def reset(self, *, seed=None, options=None):
            options = options or {}
            super(ogbench_maze, self).reset(seed=seed)  # the ant's own reset (qpos ± 0.1, qvel N(0, 0.1²))
            goal = options['goal_xy'] if 'goal_xy' in options else sample_goal(self.d4rl_maze.cell('G'))
            self.set_goal(goal_xy=np.asarray(goal, float))
            # set_xy runs MuJoCo's forward pass, which also moves the goal marker for the first frame.
            self.set_xy(np.asarray(options.get('start_xy', self.get_xy()), float))
            return self.get_ob(), {}

    return D4RLAntMazeEnv


def _register(env_id: str) -> None:
    import gymnasium  # heavy: only where an env is built

    if env_id not in gymnasium.registry:
        maze = MAZES[env_id]
        gymnasium.register(id=env_id, entry_point=lambda **kw: _env_class()(maze, **kw),
                           max_episode_steps=maze.max_episode_steps)


def make_env(env_id: str, render_size: int | None = None, success_timing: str | None = None, **kwargs):
    """The evaluation env of a D4RL antmaze id (a gymnasium env with its spec and time limit).

    success_timing 'post' (D4RL's: success from s') or 'pre' (from s); None means 'post'. kwargs go to
    gymnasium.make (e.g. terminate_at_goal=False, max_episode_steps=N for data collection)."""
    if env_id not in MAZES:
        raise DatasetError(f"unknown D4RL antmaze id '{env_id}'; one of: {', '.join(MAZES)}")
    _register(env_id)
    import gymnasium

    size = {} if render_size is None else dict(width=render_size, height=render_size)
    return gymnasium.make(env_id, success_timing=success_timing or 'post', disable_env_checker=True, **size, **kwargs)


# ------------------------------------------------------------------------------------------------- data


def d4rl_cell(xy: np.ndarray) -> tuple[int, int]:
    """D4RL's grid lookup, int(1 + y / 4), int(1 + x / 4) (x-y floored at 1e-4). Cell centres sit at
    multiples of 4, so this reads half a cell late: an ant is counted in a cell from its centre onward. On
    medium that makes ants bound for the (6, 5) goal walk on to the centre of (6, 6), the evaluation goal's
    cell, before they turn; with a cell-centre lookup they cut the corner well clear of it and the data
    holds almost no reward."""
    x, y = max(float(xy[0]), 1e-4), max(float(xy[1]), 1e-4)
    return int(1 + y / MAZE_UNIT), int(1 + x / MAZE_UNIT)


def _neighbours(ij: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    i, j = ij
    return (i, j - 1), (i, j + 1), (i + 1, j), (i - 1, j)


@functools.cache
def path_lengths(maze: D4RLMaze, target: tuple[int, int]) -> dict[tuple[int, int], int]:
    """Steps from every free cell of the maze to `target` along its corridors (breadth-first)."""
    walls, lengths, frontier = maze.walls, {target: 0}, [target]
    while frontier:
        following = []
        for ij in frontier:
            for n in _neighbours(ij):
                inside = 0 <= n[0] < walls.shape[0] and 0 <= n[1] < walls.shape[1]
                if inside and walls[n] == 0 and n not in lengths:
                    lengths[n] = lengths[ij] + 1
                    following.append(n)
        frontier = following
    return lengths


def waypoint(maze: D4RLMaze, xy: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Where D4RL's data collector walks next: the goal itself once `d4rl_cell` puts the ant in the goal's
    cell or next to it on the way, else the centre of the neighbouring cell nearest the goal plus fresh
    U[0, 1] per axis (D4RL adds the noise at every call). The lookup can place the ant in a wall cell near
    a corner; the nearest free neighbour is still the way on."""
    here, target = d4rl_cell(xy), d4rl_cell(goal)
    lengths = path_lengths(maze, target)
    following = min((n for n in _neighbours(here) if n in lengths), key=lengths.get, default=target)
    if here == target or following == target:
        return goal
    return cell_xy(following) + np.random.uniform(0, CELL_NOISE, 2)


class DiverseCollector:
    """One 'diverse' episode per call (see the module docstring). Rows are OGBench's file layout
    (`EpisodeRows`) plus `rewards` (D4RL's relabelled sparse reward at s') and `goals` (the episode's goal,
    D4RL's infos/goal). `goals_reached` is 1 if the latest episode came within 0.5 m of its goal, else 0."""

    def __init__(self, env, maze: D4RLMaze, act: Callable[[object, np.ndarray], np.ndarray],
                 noise: float = ACTION_NOISE):
        self.env, self.maze, self.act, self.noise = env, maze, act, noise
        self.base = env.unwrapped
        self.reward_goal = reward_goal(maze)
        self.goals_reached = 0

    def __call__(self, episode_seed: int) -> Episode:
        env, base, maze = self.env, self.base, self.maze
        seed_everything(env, episode_seed)
        start = maze.data_starts[np.random.randint(len(maze.data_starts))]
        start_xy = cell_xy(start) + np.random.uniform(0, CELL_NOISE, 2)
        goal = sample_goal(maze.data_goals[np.random.randint(len(maze.data_goals))])
        ob, _ = env.reset(seed=episode_seed, options=dict(start_xy=start_xy, goal_xy=goal))
        rows, rewards, done, self.goals_reached = EpisodeRows(), [], False, 0
        while not done:
            xy = base.get_xy()
            action = self.act(base, unit(waypoint(maze, xy, goal) - xy))
            action = np.clip(action + np.random.normal(0.0, self.noise, action.shape), -1, 1)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            self.goals_reached = max(self.goals_reached, int(info['success']))
            rewards.append(float(np.linalg.norm(next_ob[:2] - self.reward_goal) <= GOAL_TOLERANCE))
            rows.append(ob, action, done, info)
            ob = next_ob
        return {**rows.stack(), 'rewards': np.asarray(rewards), 'goals': np.tile(goal, (len(rewards), 1))}


def make_collector(env_id: str, episode_steps: int) -> DiverseCollector:
    env = make_env(env_id, terminate_at_goal=False, max_episode_steps=episode_steps)
    return DiverseCollector(env, MAZES[env_id], ant_act(load_expert_actor('ant')))


def collector_summary(arrays: Episode) -> dict:
    """What the data card says about the collector: the fraction of episodes whose ant came within 0.5 m of
    its own goal (from the stored x-y and goals), and the fraction of rows with reward 1."""
    ends = np.flatnonzero(arrays['terminals'])
    episode_of_row = np.searchsorted(ends, np.arange(len(arrays['terminals'])))
    near = np.linalg.norm(arrays['observations'][:, :2] - arrays['goals'], axis=1) <= GOAL_TOLERANCE
    reached = np.bincount(episode_of_row, weights=near, minlength=len(ends)) > 0
    return {'collector_success': round(float(reached.mean()), 4), 'episodes_reaching_goal': int(reached.sum()),
            'reward_fraction': round(float(arrays['rewards'].mean()), 5)}


_GENERATOR = ('D4RL antmaze diverse: SAC ant expert (artifacts/experts/ant.msgpack) toward D4RL\'s BFS waypoints '
              '(its int(1 + xy/4) grid lookup, next cell centre + U[0,1] per step) on the D4RL map, random non-goal '
              'start cell + U[0,1], goal cell of the D4RL dataset map + U[0,1] + U[0,0.5], one goal per episode, '
              'N(0, 0.2^2) action noise; rewards 1 within 0.5 of the evaluation goal + 0.75')
DATASETS: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec(env_id, functools.partial(make_collector, env_id), generator=_GENERATOR, summarize=collector_summary,
                procedure='D4RL scripts/generation/generate_ant_maze_datasets.py and relabel_antmaze_rewards.py')
    for env_id in MAZES
]}


# ---------------------------------------------------------------------------------------------- loading

D4RL_FILES = {  # the file names of D4RL's own downloads (the last part of its dataset URLs)
    'antmaze-umaze-diverse-v2': 'Ant_maze_u-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5',
    'antmaze-medium-diverse-v2': 'Ant_maze_big-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5',
    'antmaze-large-diverse-v2': 'Ant_maze_hardest-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5',
}


def official_file(dataset_name: str, data_dir: str) -> str | None:
    """D4RL's own hdf5 file in data_dir, under D4RL's name or `<id>.hdf5`, if the user put one there."""
    for name in (D4RL_FILES[dataset_name], f'{dataset_name}.hdf5'):
        path = os.path.join(os.path.expanduser(data_dir), name)
        if os.path.exists(path):
            return path
    return None


def read_official(path: str) -> dict[str, np.ndarray]:
    """D4RL's hdf5 keys observations, actions, rewards, terminals, timeouts (h5py is needed only here)."""
    try:
        import h5py
    except ImportError:
        raise DatasetError(f'{path} is a D4RL hdf5 file and reading it needs h5py '
                           "(`pip install -e '.[d4rl]'`), or move it away to use the regenerated dataset") from None
    try:
        with h5py.File(path, 'r') as f:
            return {k: np.asarray(f[k]) for k in ('observations', 'actions', 'rewards', 'terminals', 'timeouts')}
    except (OSError, KeyError) as e:
        raise DatasetError(f'{path} is not a readable D4RL antmaze file ({str(e)[:80]}); '
                           'replace it with the official download or delete it') from None


def read_generated(path: str) -> dict[str, np.ndarray]:
    """Our .npz in D4RL's terms: its episode ends are D4RL's timeouts, and D4RL's terminals are its rewards
    (D4RL's relabelling sets both from the same 0.5 m test)."""
    with np.load(path) as raw:
        missing = [k for k in ('observations', 'actions', 'terminals', 'rewards') if k not in raw.files]
        if missing:
            raise DatasetError(f'{path} has no {missing}; it is not a D4RL antmaze dataset of this project: '
                               'regenerate it with --force')
        rewards = raw['rewards']
        return {'observations': raw['observations'], 'actions': raw['actions'], 'rewards': rewards,
                'terminals': rewards > 0, 'timeouts': raw['terminals']}


def to_transitions(d4rl: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """D4RL's qlearning_dataset pairs (row i with row i + 1, dropping rows that end an episode by timeout,
    and the last row), then the FQL code's antmaze labels: rewards r - 1, masks 1 - terminal."""
    keep = np.flatnonzero(~d4rl['timeouts'][:-1].astype(bool))
    rows = {'observations': d4rl['observations'][keep], 'actions': d4rl['actions'][keep],
            'rewards': d4rl['rewards'][keep] - 1.0, 'masks': 1.0 - d4rl['terminals'][keep].astype(float),
            'next_observations': d4rl['observations'][keep + 1]}
    return {k: np.asarray(v, np.float32) for k, v in rows.items()}


def load_transitions(dataset_name: str, data_dir: str, split: str = 'train') -> tuple[dict[str, np.ndarray], str]:
    """(transitions, path read): D4RL's own hdf5 when data_dir has it (train only: D4RL has no validation
    split), else our regenerated .npz. Missing files are the caller's to handle (`envs.datasets`)."""
    official = official_file(dataset_name, data_dir)
    if official is not None:
        if split != 'train':
            raise DatasetError(f'D4RL publishes no validation split of {dataset_name}; {official} is train only')
        return to_transitions(read_official(official)), official
    path = dataset_paths(dataset_name, data_dir)[0 if split == 'train' else 1]
    return to_transitions(read_generated(path)), path
