"""Collectors for OGBench's expert-driven locomotion datasets: antmaze-large-navigate, antsoccer-arena-navigate.

Our own implementation of the procedure of OGBench's `data_gen_scripts/generate_locomaze.py` and
`generate_antsoccer.py` ('navigate' type, 1001-row episodes, N(0, 0.2²) action noise clipped to [-1, 1]),
written against the per-episode collector contract of `envs/generate.py`:

* antmaze: start in a random free cell, goal in a random non-corridor ("vertex") cell; at every step the
  shipped ant expert (artifacts/experts/ant.msgpack, trained by tools/experts.py) walks toward the BFS
  oracle subgoal of the maze (the next cell on the shortest path); on success a new vertex-cell goal is
  drawn and the episode continues.
* antsoccer: agent, ball and goal start in three distinct random cells of the arena; while the agent is
  more than 2 m from the ball it walks to the ball, otherwise it dribbles the ball to the goal; on success
  a new goal cell is drawn; if the agent has stayed within 2 m for 150 steps it detours to a random cell.

Dribbling. OGBench dribbles with a second SAC expert trained for 12M steps on `online-antball-v0`, far out
of reach of this project's CPU. `DribbleController` replaces it with a controller built on the ant walking
expert: it circles the ball until it is behind it (as seen from the goal), then walks through the ball
toward the goal. The ant tends to step over the ball, so each pass moves the ball about a metre and the
collector scores far less often than a dedicated dribbling expert would. The dataset card's `generator`
line names the controller. `python -m tools.locomotion success` measures how often the collectors
reach a goal.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from envs.collectors import EpisodeRows, MazeNavigateCollector, make_locomaze_env, maze_cells, unit
from envs.dataset_spec import DatasetError, DatasetSpec, Episode
from envs.seeding import seed_everything

EXPERTS_DIR = Path(__file__).resolve().parent.parent / 'artifacts' / 'experts'

ACTION_NOISE = 0.2  # OGBench generate_locomaze.py / generate_antsoccer.py default (--noise)
BALL_NEAR = 2.0  # generate_antsoccer.py: dribble when the agent is within 2 m of the ball
STUCK_WINDOW, STUCK_RADIUS = 150, 2.0  # generate_antsoccer.py stuck detection
VIRTUAL_GOAL_TOL = 0.5
ANTMAZE_ENV, ANTSOCCER_ENV = 'antmaze-large-v0', 'antsoccer-arena-v0'


# ------------------------------------------------------------------------------------------ expert policy


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """flax's default `nn.gelu` (tanh approximation), in NumPy."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def numpy_actor(actor_params: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """The exported SAC actor's (kernel, bias) pairs in float64: hidden layers, then the mean head."""
    hidden = sorted((k for k in actor_params if k.startswith('Dense_')), key=lambda k: int(k.split('_')[1]))
    return [
        (np.asarray(actor_params[k]['kernel'], np.float64), np.asarray(actor_params[k]['bias'], np.float64))
        for k in [*hidden, 'mean']
    ]


def actor_mean_action(layers: list[tuple[np.ndarray, np.ndarray]], obs: np.ndarray) -> np.ndarray:
    """Deterministic action tanh(mean) of the exported SAC actor (OGBench's temperature 0), in NumPy.

    Collectors call the expert once per environment step; a NumPy forward pass of a 2x256 MLP costs a few
    microseconds, where a jitted JAX call costs a dispatch each time and a compile per worker process.
    """
    x = np.asarray(obs, np.float64)
    for kernel, bias in layers[:-1]:
        x = gelu_tanh(x @ kernel + bias)
    kernel, bias = layers[-1]
    return np.tanh(x @ kernel + bias)


def load_ant_actor() -> list[tuple[np.ndarray, np.ndarray]]:
    """The shipped ant expert's actor layers (see `numpy_actor`), or a DatasetError naming how to get them.

    Collecting needs only the exported actor's arrays, so they are read without rebuilding the flax
    model; training and export are offline tools (tools/experts.py) that the runtime never imports."""
    weights = EXPERTS_DIR / 'ant.msgpack'
    card = weights.with_suffix('.json')
    if not weights.exists() or not card.exists():
        raise DatasetError(
            f'expert weights {weights} (and card {card.name}) not found; restore artifacts/experts/ from git or '
            'train with `python -m tools.experts train ant` then `python -m tools.experts export ant`'
        )
    import flax.serialization  # imports JAX: only the processes that build a locomotion collector need it

    return numpy_actor(flax.serialization.msgpack_restore(weights.read_bytes()))


# ------------------------------------------------------------------------------------------------ antmaze


def ant_act(actor: list) -> Callable[[object, np.ndarray], np.ndarray]:
    """The ant expert's mean action for walking in `direction` (the oracle's unit subgoal direction)."""
    def act(maze, direction: np.ndarray) -> np.ndarray:
        return actor_mean_action(actor, np.concatenate([maze.get_ob(ob_type='states')[2:], direction]))
    return act


def make_antmaze_large_collector(episode_steps: int) -> Callable[[int], Episode]:
    return MazeNavigateCollector(make_locomaze_env(ANTMAZE_ENV, episode_steps), ant_act(load_ant_actor()), ACTION_NOISE)


# ---------------------------------------------------------------------------------------------- antsoccer


def rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


@dataclass(frozen=True)
class DribbleController:
    """Dribbling on top of the ant walking expert: choose the walking direction from agent, ball and goal.

    Let e be the signed angle from the agent->ball direction to the ball->goal direction. When |e| is
    below `push_angle` the agent is behind the ball: it walks at the ball, turned by `push_gain * e` away
    from the goal side, so the contact point slides onto the goal line while the ball rolls goalward.
    Otherwise it circles the ball at radius `orbit_radius` (tangential walking plus a radial correction of
    gain `radial_gain`), in the sense that shrinks |e|, until it is behind the ball.
    """

    push_angle: float = np.deg2rad(35)
    push_gain: float = 1.0
    orbit_radius: float = 1.5
    radial_gain: float = 1.0

    def direction(self, agent_xy: np.ndarray, ball_xy: np.ndarray, goal_xy: np.ndarray) -> np.ndarray:
        to_goal = unit(goal_xy - ball_xy)
        to_ball = ball_xy - agent_xy
        dist = np.linalg.norm(to_ball)
        to_ball = to_ball / (dist + 1e-6)
        e = np.arctan2(to_ball[0] * to_goal[1] - to_ball[1] * to_goal[0], to_ball @ to_goal)
        if abs(e) <= self.push_angle:
            return unit(rotate(to_ball, -self.push_gain * e))
        # Circling counter-clockwise (e > 0) turns the agent->ball direction toward the goal direction.
        tangent = rotate(-to_ball, np.sign(e) * np.pi / 2)
        return unit(tangent + self.radial_gain * (dist - self.orbit_radius) * to_ball)


class AntsoccerNavigateCollector:
    """One antsoccer 'navigate' episode per call; `goals_reached` holds the count of the latest episode."""

    def __init__(self, env, actor: list, dribble: DribbleController = DribbleController(),
                 noise: float = ACTION_NOISE):
        self.env, self.actor, self.dribble, self.noise = env, actor, dribble, noise
        self.base = env.unwrapped
        self.free_cells, _ = maze_cells(self.base.maze_map)
        self.goals_reached = 0

    def walk_action(self, ob: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """Ant expert input in antsoccer: agent qpos without x-y (ob[2:15]), agent qvel (ob[22:36]), direction."""
        return actor_mean_action(self.actor, np.concatenate([ob[2:15], ob[22:36], direction]))

    def __call__(self, episode_seed: int) -> Episode:
        env, base = self.env, self.base
        seed_everything(env, episode_seed)
        agent_idx, ball_idx, goal_idx = np.random.choice(len(self.free_cells), 3, replace=False)
        task_info = dict(agent_init_ij=self.free_cells[agent_idx], ball_init_ij=self.free_cells[ball_idx],
                         goal_ij=self.free_cells[goal_idx])
        ob, _ = env.reset(seed=episode_seed, options=dict(task_info=task_info))
        rows, done, self.goals_reached = EpisodeRows(), False, 0
        recent_xy: deque = deque(maxlen=STUCK_WINDOW)
        virtual_goal = None
        step = 0
        while not done:
            agent_xy, ball_xy = (np.array(v) for v in base.get_agent_ball_xy())
            goal_xy = np.array(base.cur_goal_xy)
            if virtual_goal is not None:
                direction = unit(virtual_goal - agent_xy)
            elif np.linalg.norm(agent_xy - ball_xy) > BALL_NEAR:
                direction = unit(ball_xy - agent_xy)
            else:
                direction = self.dribble.direction(agent_xy, ball_xy, goal_xy)
            action = self.walk_action(ob, direction)
            action = np.clip(action + np.random.normal(0, self.noise, action.shape), -1, 1)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if virtual_goal is not None and np.linalg.norm(virtual_goal - next_ob[:2]) <= VIRTUAL_GOAL_TOL:
                virtual_goal = None
            if info['success']:
                self.goals_reached += 1
                base.set_goal(self.free_cells[np.random.randint(len(self.free_cells))])
            # Stuck: the last 150 observed positions (before this step's) all lie within 2 m of the new one.
            if (
                step > STUCK_WINDOW
                and virtual_goal is None
                and np.linalg.norm(np.asarray(recent_xy) - next_ob[:2], axis=1).max() <= STUCK_RADIUS
            ):
                virtual_goal = np.array(base.ij_to_xy(self.free_cells[np.random.randint(len(self.free_cells))]))
            recent_xy.append(ob[:2])
            rows.append(ob, action, done, info)
            ob = next_ob
            step += 1
        return rows.stack()


def make_antsoccer_arena_collector(episode_steps: int) -> Callable[[int], Episode]:
    return AntsoccerNavigateCollector(make_locomaze_env(ANTSOCCER_ENV, episode_steps), load_ant_actor())


# --------------------------------------------------------------------------------------------- registry

DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec(
            'antmaze-large-navigate-v0',
            make_antmaze_large_collector,
            generator='SAC ant expert (artifacts/experts/ant.msgpack) toward BFS oracle subgoals + N(0, 0.2^2) '
            'action noise, new vertex-cell goal on success',
        ),
        DatasetSpec(
            'antsoccer-arena-navigate-v0',
            make_antsoccer_arena_collector,
            generator='SAC ant expert (artifacts/experts/ant.msgpack): walk to the ball, then dribble with '
            'envs.locomotion.DribbleController (scripted, in place of OGBench antball SAC expert) + N(0, 0.2^2) '
            'action noise, new goal on success, stuck detour',
        ),
    ]
}

