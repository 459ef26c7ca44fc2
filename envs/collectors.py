"""Per-episode data collectors that reproduce OGBench's documented dataset procedures.

Our own implementation of the procedure in OGBench's `data_gen_scripts` (generate_locomaze.py for
'navigate' pointmaze data, generate_manipspace.py for 'play' manipulation data), written against the
collector contract of `envs/generate.py`: a factory called once per worker process returns a function
that turns an episode seed into one episode dict. Every random draw (environment resets, the
oracles' global-NumPy noise, the maze's stabilising random actions) comes from that seed, so an
episode does not depend on which worker produced it.

gymnasium and OGBench are imported only when a collector is built (in a generator worker process), so
importing this module to register the collectors stays cheap.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from envs.dataset_spec import Episode
from envs.seeding import seed_everything

POINTMAZE_ACTION_NOISE = 0.5  # OGBench commands.sh: --noise=0.5 for pointmaze
PLAN_NOISE = 0.1  # generate_manipspace.py defaults for 'play' data
PLAN_NOISE_SMOOTHING = 0.5


class EpisodeRows:
    """Accumulates an episode's rows in OGBench's file layout: the observation the action was taken
    in, the action, whether the episode ends on this row, and the simulator state (qpos, qvel and,
    where the env has them, button states) *before* the step, as OGBench's scripts record it."""

    def __init__(self, has_buttons: bool = False):
        keys = ['observations', 'actions', 'terminals', 'qpos', 'qvel'] + (['button_states'] if has_buttons else [])
        self.rows: dict[str, list] = {k: [] for k in keys}

    def append(self, ob, action, done: bool, info: dict) -> None:
        self.rows['observations'].append(ob)
        self.rows['actions'].append(action)
        self.rows['terminals'].append(done)
        self.rows['qpos'].append(info['prev_qpos'])
        self.rows['qvel'].append(info['prev_qvel'])
        if 'button_states' in self.rows:
            self.rows['button_states'].append(info['prev_button_states'])

    def stack(self) -> Episode:
        return {k: np.asarray(v) for k, v in self.rows.items()}


# --------------------------------------------------------------------------------------- pointmaze
def maze_cells(maze_map: np.ndarray) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Free cells (start states) and free cells that are not straight corridor pieces (goals)."""
    free, goals = [], []
    for i in range(maze_map.shape[0]):
        for j in range(maze_map.shape[1]):
            if maze_map[i, j] != 0:
                continue
            free.append((i, j))
            vertical_corridor = (
                maze_map[i - 1, j] == 0 and maze_map[i + 1, j] == 0 and maze_map[i, j - 1] == 1 and maze_map[i, j + 1] == 1
            )
            horizontal_corridor = (
                maze_map[i, j - 1] == 0 and maze_map[i, j + 1] == 0 and maze_map[i - 1, j] == 1 and maze_map[i + 1, j] == 1
            )
            if not (vertical_corridor or horizontal_corridor):
                goals.append((i, j))
    return free, goals


def unit(v: np.ndarray) -> np.ndarray:
    """v / ‖v‖ with OGBench's 1e-6 guard."""
    return v / (np.linalg.norm(v) + 1e-6)


def make_locomaze_env(env_id: str, episode_steps: int):
    """A point/ant maze or arena env that keeps going after reaching its goal, as the data needs."""
    import gymnasium  # heavy (MuJoCo): imported only where a collector is built

    import ogbench.locomaze  # noqa: F401  (registers the environments)

    return gymnasium.make(env_id, terminate_at_goal=False, max_episode_steps=episode_steps)


class MazeNavigateCollector:
    """'navigate' data on a point or ant maze, one episode per call: start in a random free cell, goal
    in a random goal cell, `act(maze, direction)` towards the BFS oracle's subgoal plus N(0, noise²)
    action noise, a new goal on every success. `goals_reached` holds the latest episode's count."""

    def __init__(self, env, act: Callable[[object, np.ndarray], np.ndarray], noise: float):
        self.env, self.act, self.noise = env, act, noise
        self.maze = env.unwrapped
        self.free_cells, self.goal_cells = maze_cells(self.maze.maze_map)
        self.goals_reached = 0

    def __call__(self, episode_seed: int) -> Episode:
        env, maze = self.env, self.maze
        seed_everything(env, episode_seed)
        init_ij = self.free_cells[np.random.randint(len(self.free_cells))]
        goal_ij = self.goal_cells[np.random.randint(len(self.goal_cells))]
        ob, _ = env.reset(seed=episode_seed, options=dict(task_info=dict(init_ij=init_ij, goal_ij=goal_ij)))
        rows, done, self.goals_reached = EpisodeRows(), False, 0
        while not done:
            xy = maze.get_xy()
            subgoal_xy, _ = maze.get_oracle_subgoal(xy, maze.cur_goal_xy)
            action = self.act(maze, unit(subgoal_xy - xy))
            action = np.clip(action + np.random.normal(0.0, self.noise, action.shape), -1, 1)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if info['success']:
                self.goals_reached += 1
                maze.set_goal(self.goal_cells[np.random.randint(len(self.goal_cells))])
            rows.append(ob, action, done, info)
            ob = next_ob
        return rows.stack()


def _point_act(maze, direction: np.ndarray) -> np.ndarray:
    """The point mass is commanded with the oracle direction itself."""
    return direction


def make_pointmaze_navigate_collector(env_name: str, episode_steps: int) -> Callable[[int], Episode]:
    """'navigate' data: the BFS direction oracle plus N(0, 0.5²) action noise, new goal on every success."""
    return MazeNavigateCollector(make_locomaze_env(env_name, episode_steps), _point_act, POINTMAZE_ACTION_NOISE)


def make_pointmaze_medium_collector(episode_steps: int) -> Callable[[int], Episode]:
    return make_pointmaze_navigate_collector('pointmaze-medium-v0', episode_steps)


def make_pointmaze_large_collector(episode_steps: int) -> Callable[[int], Episode]:
    return make_pointmaze_navigate_collector('pointmaze-large-v0', episode_steps)


# ------------------------------------------------------------------------------------ manipulation
def _stacking_probability(env_name: str) -> float:
    """OGBench's per-episode probability that a cube target is on top of another cube."""
    if 'single' in env_name:
        return 0.0
    if 'double' in env_name:
        return np.random.uniform(0.0, 0.25)
    if 'triple' in env_name:
        return np.random.uniform(0.05, 0.35)
    if 'quadruple' in env_name:
        return np.random.uniform(0.1, 0.5)
    return 0.5


def _scene_episode_is_healthy(qpos: np.ndarray) -> bool:
    """OGBench's scene check: the cube stays visible (not too far right, not far left unless in the drawer)."""
    cube_xyz = qpos[:, 14:17]
    too_far_right = (cube_xyz[:, 1] >= 0.29).any()
    left_outside_drawer = ((cube_xyz[:, 1] <= -0.3) & ((cube_xyz[:, 2] < 0.06) | (cube_xyz[:, 2] > 0.08))).any()
    return not (too_far_right or left_outside_drawer)


def _plan_oracles(env, env_name: str) -> dict:
    """The plan ('play') oracles shipped in ogbench, keyed by the env's 'privileged/target_task'."""
    # ogbench's oracles import MuJoCo: imported only where a collector is built.
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

    noise = dict(noise=PLAN_NOISE, noise_smoothing=PLAN_NOISE_SMOOTHING)
    if env_name.startswith('cube'):
        return {'cube': CubePlanOracle(env=env, **noise)}
    if env_name.startswith('scene'):
        return {
            'cube': CubePlanOracle(env=env, **noise),
            'button': ButtonPlanOracle(env=env, **noise),
            'drawer': DrawerPlanOracle(env=env, **noise),
            'window': WindowPlanOracle(env=env, **noise),
        }
    if env_name.startswith('puzzle'):
        return {'button': ButtonPlanOracle(env=env, gripper_always_closed=True, **noise)}
    raise ValueError(f'no plan oracle for {env_name}')


def make_manipspace_play_collector(env_name: str, episode_steps: int) -> Callable[[int], Episode]:
    """'play' data: chained plan-oracle subtasks with smoothed plan noise; scene episodes are health-checked."""
    import gymnasium  # heavy (MuJoCo): imported only where a collector is built

    import ogbench.manipspace  # noqa: F401  (registers the environments)

    env = gymnasium.make(env_name, terminate_at_goal=False, mode='data_collection', max_episode_steps=episode_steps)
    oracles = _plan_oracles(env, env_name)
    has_buttons = hasattr(env.unwrapped, '_cur_button_states')

    def one_attempt(reset_kwargs: dict) -> Episode:
        ob, info = env.reset(**reset_kwargs)
        p_stack = _stacking_probability(env_name)
        oracle = oracles[info['privileged/target_task']]
        oracle.reset(ob, info)
        rows = EpisodeRows(has_buttons)
        done = False
        while not done:
            action = np.clip(np.asarray(oracle.select_action(ob, info)), -1, 1)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if oracle.done:
                task_ob, task_info = env.unwrapped.set_new_target(p_stack=p_stack)
                oracle = oracles[task_info['privileged/target_task']]
                oracle.reset(task_ob, task_info)
            rows.append(ob, action, done, info)
            ob = next_ob
        return rows.stack()

    def collect_episode(episode_seed: int) -> Episode:
        seed_everything(env, episode_seed)
        episode = one_attempt(dict(seed=episode_seed))
        while env_name.startswith('scene') and not _scene_episode_is_healthy(episode['qpos']):
            episode = one_attempt({})  # retry, continuing the seeded RNG streams
        return episode

    return collect_episode


def make_cube_single_collector(episode_steps: int) -> Callable[[int], Episode]:
    return make_manipspace_play_collector('cube-single-v0', episode_steps)


def make_cube_double_collector(episode_steps: int) -> Callable[[int], Episode]:
    return make_manipspace_play_collector('cube-double-v0', episode_steps)


def make_scene_collector(episode_steps: int) -> Callable[[int], Episode]:
    return make_manipspace_play_collector('scene-v0', episode_steps)


def make_puzzle_3x3_collector(episode_steps: int) -> Callable[[int], Episode]:
    return make_manipspace_play_collector('puzzle-3x3-v0', episode_steps)
