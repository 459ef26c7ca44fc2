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

Dribbling. OGBench dribbles with a second SAC expert trained for 12M steps on `online-antball-v0`, which
this project's CPU has not finished training (tools/experts.py; the collector uses it once it is shipped).
Until then `LookaheadDribbler` aims the same ant walking expert: it tries a few walking aims in an exact copy
of the simulation, over the action noise the collector has already drawn, and keeps the one that brings the
ball nearest the goal. The dataset card's `generator` line names the dribbler.

`python -m envs.locomotion success DATASET [--episodes N] [--seed S | --data-dir D]` measures how often the
collectors reach a goal: it replays the generation episodes (same per-episode seeds), checked row for row
against the dataset file when given one, and ends with the line `collector success: K/N episodes`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from envs.cli import OneLineArgumentParser
from envs.collectors import EpisodeRows, MazeNavigateCollector, make_locomaze_env, maze_cells, unit
from envs.dataset_spec import DatasetError, DatasetSpec, Episode, card_path, dataset_paths
from envs.seeding import episode_seed, seed_everything

EXPERTS_DIR = Path(__file__).resolve().parent.parent / 'artifacts' / 'experts'

ACTION_NOISE = 0.2  # OGBench generate_locomaze.py / generate_antsoccer.py default (--noise)
BALL_NEAR = 2.0  # generate_antsoccer.py: dribble when the agent is within 2 m of the ball
BALL_GOAL_REACH = 10.0  # generate_antsoccer.py (arena): the antball expert is shown goals at most 10 m from the ball
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


def expert_files(name: str) -> tuple[Path, Path]:
    """A shipped expert's weights and card under artifacts/experts/."""
    weights = EXPERTS_DIR / f'{name}.msgpack'
    return weights, weights.with_suffix('.json')


def expert_shipped(name: str) -> bool:
    """Whether both of the expert's files are there (antsoccer dribbles with 'antball' only if so)."""
    return all(path.exists() for path in expert_files(name))


def load_expert_actor(name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """A shipped expert's actor layers (see `numpy_actor`), or a DatasetError naming how to get them.

    Collecting needs only the exported actor's arrays, so they are read without rebuilding the flax
    model; training and export are offline tools (tools/experts.py) that the runtime never imports."""
    weights, card = expert_files(name)
    if not expert_shipped(name):
        raise DatasetError(
            f'expert weights {weights} (and card {card.name}) not found; restore artifacts/experts/ from git or '
            f'train with `python -m tools.experts train {name}` then `python -m tools.experts export {name}`'
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
    env = make_locomaze_env(ANTMAZE_ENV, episode_steps)
    return MazeNavigateCollector(env, ant_act(load_expert_actor('ant')), ACTION_NOISE)


# ---------------------------------------------------------------------------------------------- antsoccer


@dataclass(frozen=True)
class LookaheadDribbler:
    """Dribbling on top of the ant walking expert by looking ahead in an exact copy of the simulation.

    Why look ahead. The ball weighs as much as the ant's torso (0.33 kg) and its rolling friction (0.5) makes
    it slide rather than roll, with sliding friction 1; the torso rides above the ball's equator, so only the
    legs move it, and where a kick sends it depends on the gait's phase and the ant's yaw, which drift as it
    walks. No fixed rule about where to walk reads that from positions alone (scripted passes along the goal
    line reached a goal in a few episodes of a hundred), but the simulator knows: MuJoCo is deterministic, and
    the collector draws its action noise `horizon` steps ahead, so a copy of the current state stepped with the
    expert's actions plus that noise shows exactly where each candidate walk leaves the ball.

    Every `replan_every` steps the dribbler tries `headings` aims spread over +-90 degrees around the
    ball->goal line, plus walking straight at the ball, for `horizon` steps each, and keeps the one that brings
    the ball nearest the goal, minus `stray_cost` per metre the ant ends farther than `stray` from the ball.
    An aim at angle a walks to the point `aim_behind` metres behind the ball on the line at a from the goal
    line, then along that line once within `contact` of the ball.
    """

    horizon: int = 15
    replan_every: int = 5
    headings: int = 7
    aim_behind: float = 0.3
    contact: float = 0.6
    stray: float = 1.0
    stray_cost: float = 0.1

    def aims(self) -> list[float | None]:
        """The candidate aims: angles (radians) off the ball->goal line, and None for straight at the ball."""
        return [*np.linspace(-np.pi / 2, np.pi / 2, self.headings), None]

    def direction(self, aim: float | None, agent_xy: np.ndarray, ball_xy: np.ndarray,
                  goal_xy: np.ndarray) -> np.ndarray:
        if aim is None:
            return unit(ball_xy - agent_xy)
        cos, sin = np.cos(aim), np.sin(aim)
        u = unit(goal_xy - ball_xy)
        line = np.array([cos * u[0] - sin * u[1], sin * u[0] + cos * u[1]])
        if np.linalg.norm(ball_xy - agent_xy) > self.contact:
            return unit(ball_xy - self.aim_behind * line - agent_xy)
        return line

    def score(self, ball_xy: np.ndarray, goal_xy: np.ndarray, final_agent_xy: np.ndarray,
              final_ball_xy: np.ndarray) -> float:
        progress = np.linalg.norm(ball_xy - goal_xy) - np.linalg.norm(final_ball_xy - goal_xy)
        return float(progress - self.stray_cost * max(0.0, np.linalg.norm(final_agent_xy - final_ball_xy) - self.stray))


def antball_observation(ob: np.ndarray, agent_xy: np.ndarray, ball_xy: np.ndarray,
                        goal_xy: np.ndarray) -> np.ndarray:
    """The antball expert's input (OGBench's `online-antball-v0` observation) from an antsoccer one: the
    agent's and the ball's qpos without their x-y, both qvels, ball - agent and goal - ball. A goal
    farther than `BALL_GOAL_REACH` from the ball is pulled in to that distance along the same line, as
    generate_antsoccer.py does in the arena: the expert was trained on nearer goals only."""
    to_goal = goal_xy - ball_xy
    distance = np.linalg.norm(to_goal)
    if distance > BALL_GOAL_REACH:
        to_goal = to_goal * (BALL_GOAL_REACH / distance)
    return np.concatenate([ob[2:15], ob[17:], ball_xy - agent_xy, to_goal])


class AntsoccerNavigateCollector:
    """One antsoccer 'navigate' episode per call; `goals_reached` holds the count of the latest episode.

    Near the ball it dribbles with `ball_actor`, a trained antball expert, when one is given (OGBench's
    collector), else with the `dribble` lookahead on the walking expert. The action noise is drawn from the
    global NumPy RNG `dribble.horizon` steps ahead of its use, so the lookahead sees the noise to come."""

    def __init__(self, env, actor: list, dribble: LookaheadDribbler = LookaheadDribbler(),
                 noise: float = ACTION_NOISE, ball_actor: list | None = None):
        import mujoco  # the lookahead steps a copy of the env's MuJoCo state

        self.env, self.actor, self.dribble, self.noise, self.ball_actor = env, actor, dribble, noise, ball_actor
        self.base = env.unwrapped
        self.free_cells, _ = maze_cells(self.base.maze_map)
        self.goals_reached = 0
        self._mujoco, self._scratch = mujoco, mujoco.MjData(self.base.model)

    def walk_action(self, ob: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """Ant expert input in antsoccer: agent qpos without x-y (ob[2:15]), agent qvel (ob[22:36]), direction."""
        return actor_mean_action(self.actor, np.concatenate([ob[2:15], ob[22:36], direction]))

    def lookahead(self, aim: float | None, goal_xy: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Agent and ball x-y after walking with `aim` for len(noise) steps from the current state, exactly as
        `env.step` would (the antsoccer observation is qpos then qvel; one step is `frame_skip` MuJoCo steps)."""
        model, scratch = self.base.model, self._scratch
        self._mujoco.mj_copyData(scratch, model, self.base.data)
        for row in noise:
            ob = np.concatenate([scratch.qpos, scratch.qvel])
            direction = self.dribble.direction(aim, scratch.qpos[:2], scratch.qpos[-7:-5], goal_xy)
            scratch.ctrl[:] = np.clip(self.walk_action(ob, direction) + row, -1, 1)
            self._mujoco.mj_step(model, scratch, nstep=self.base.frame_skip)
        return scratch.qpos[:2].copy(), scratch.qpos[-7:-5].copy()

    def best_aim(self, ball_xy: np.ndarray, goal_xy: np.ndarray, noise: np.ndarray) -> float | None:
        aims = self.dribble.aims()
        scores = [self.dribble.score(ball_xy, goal_xy, *self.lookahead(aim, goal_xy, noise)) for aim in aims]
        return aims[int(np.argmax(scores))]

    def __call__(self, episode_seed: int) -> Episode:
        env, base = self.env, self.base
        seed_everything(env, episode_seed)
        agent_idx, ball_idx, goal_idx = np.random.choice(len(self.free_cells), 3, replace=False)
        task_info = dict(agent_init_ij=self.free_cells[agent_idx], ball_init_ij=self.free_cells[ball_idx],
                         goal_ij=self.free_cells[goal_idx])
        ob, _ = env.reset(seed=episode_seed, options=dict(task_info=task_info))
        action_dim = env.action_space.shape[0]
        upcoming_noise = np.random.normal(0, self.noise, (self.dribble.horizon, action_dim))
        rows, done, self.goals_reached = EpisodeRows(), False, 0
        recent_xy: deque = deque(maxlen=STUCK_WINDOW)
        virtual_goal, aim, aimed_at = None, None, None
        step = 0
        while not done:
            agent_xy, ball_xy = (np.array(v) for v in base.get_agent_ball_xy())
            goal_xy = np.array(base.cur_goal_xy)
            dribbling = virtual_goal is None and np.linalg.norm(agent_xy - ball_xy) <= BALL_NEAR
            if virtual_goal is not None:
                action = self.walk_action(ob, unit(virtual_goal - agent_xy))
            elif not dribbling:
                action = self.walk_action(ob, unit(ball_xy - agent_xy))
            elif self.ball_actor is not None:
                action = actor_mean_action(self.ball_actor, antball_observation(ob, agent_xy, ball_xy, goal_xy))
            else:
                if aimed_at is None or step - aimed_at >= self.dribble.replan_every:
                    aim, aimed_at = self.best_aim(ball_xy, goal_xy, upcoming_noise), step
                action = self.walk_action(ob, self.dribble.direction(aim, agent_xy, ball_xy, goal_xy))
            if not dribbling:
                aimed_at = None
            action = np.clip(action + upcoming_noise[0], -1, 1)
            upcoming_noise = np.vstack([upcoming_noise[1:], np.random.normal(0, self.noise, (1, action_dim))])
            next_ob, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if virtual_goal is not None and np.linalg.norm(virtual_goal - next_ob[:2]) <= VIRTUAL_GOAL_TOL:
                virtual_goal = None
            if info['success']:
                self.goals_reached += 1
                base.set_goal(self.free_cells[np.random.randint(len(self.free_cells))])
                aimed_at = None
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
    env = make_locomaze_env(ANTSOCCER_ENV, episode_steps)
    ball_actor = load_expert_actor('antball') if expert_shipped('antball') else None
    return AntsoccerNavigateCollector(env, load_expert_actor('ant'), ball_actor=ball_actor)


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
            generator='SAC ant expert (artifacts/experts/ant.msgpack): walk to the ball, then dribble with ' + (
                'the SAC antball expert (artifacts/experts/antball.msgpack, goals pulled to 10 m from the ball)'
                if expert_shipped('antball') else
                f'envs.locomotion.LookaheadDribbler (the walking expert aimed by a {LookaheadDribbler.horizon}-step '
                f'lookahead in a copy of the simulation, replanned every {LookaheadDribbler.replan_every} steps; in '
                'place of OGBench antball SAC expert)'
            ) + ' + N(0, 0.2^2) action noise, new goal on success, stuck detour',
        ),
    ]
}


# ------------------------------------------------------------------------------------ collector success


def collector_success(name: str, episodes: int, seed: int = 0, episode_steps: int = 1001,
                      data_file: str | None = None) -> dict:
    """Replay the first `episodes` episodes of `python -m envs.generate NAME --seed SEED` and count reached goals.

    The goals are not in the files (antsoccer's observation has no goal), so success is measured by
    running the collector again on the same per-episode seeds. With `data_file`, each replayed episode
    must equal that file's rows, so the rate is the one of the data on disk and not of a newer collector.
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown locomotion dataset '{name}'; choose one of {', '.join(DATASETS)}")
    stored = None
    if data_file:
        with np.load(data_file) as npz:  # each key of an npz is read in full on every access: read once
            stored = {k: npz[k] for k in ('observations', 'actions')}
        if episodes * episode_steps > len(stored['actions']):
            raise DatasetError(f"{data_file} holds {len(stored['actions']) // episode_steps} episodes; "
                               'ask for at most that many with --episodes')
    collect = DATASETS[name].make_collector(episode_steps)
    goals, t0 = [], time.time()
    # disable=None: a bar on a terminal only, so a redirected stderr keeps its one-line errors
    for i in tqdm(range(episodes), desc=f'{name} success', unit='ep', file=sys.stderr, disable=None):
        episode = collect(episode_seed(seed, i))
        if stored is not None:
            rows = slice(i * episode_steps, (i + 1) * episode_steps)
            if not all(np.array_equal(stored[k][rows], episode[k].astype(stored[k].dtype))
                       for k in ('observations', 'actions')):
                raise DatasetError(
                    f'episode {i} of {data_file} is not what this collector produces for its seed (the file comes '
                    'from another collector version); regenerate it with '
                    f'`python -m envs.generate {name} --force --data-dir {os.path.dirname(data_file)}`')
        goals.append(collect.goals_reached)
    goals = np.asarray(goals)
    return {
        'dataset': name,
        'file': data_file,
        'episodes': episodes,
        'seed': seed,
        'episode_steps': episode_steps,
        'episodes_with_goal': int(np.sum(goals > 0)),
        'success_rate': float(np.mean(goals > 0)),
        'goals_per_episode': float(np.mean(goals)),
        'wall_time_s': round(time.time() - t0, 1),
    }


def main(argv: list[str] | None = None, prog: str = 'python -m envs.locomotion') -> int:
    """`success DATASET`: how often the collector reached a goal, as one JSON line then
    `collector success: K/N episodes`. With --data-dir the dataset's own file is replayed (seed and episode
    length from its data card) and checked row for row; without, the episodes of `--seed` are replayed."""
    parser = OneLineArgumentParser(prog=prog, description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('success', help="fraction of a dataset's episodes in which the collector reached a goal")
    p.add_argument('dataset', help=f"one of: {', '.join(DATASETS)}")
    p.add_argument('--episodes', type=int, default=50)
    p.add_argument('--seed', type=int, default=None, help='generation seed to replay (default 0, or the card\'s)')
    p.add_argument('--episode-steps', type=int, default=None, help='rows per episode (default 1001, or the card\'s)')
    p.add_argument('--data-dir', default=None, help='replay and check the dataset file in this folder')
    args = parser.parse_args(argv)
    try:
        seed, steps, data_file = args.seed, args.episode_steps, None
        if args.data_dir is not None:
            data_file = dataset_paths(args.dataset, args.data_dir)[0]
            if not os.path.exists(data_file) or not os.path.exists(card_path(data_file)):
                raise DatasetError(f'{data_file} (and its data card) not found; generate it with '
                                   f'`python -m envs.generate {args.dataset} --data-dir {args.data_dir}`')
            with open(card_path(data_file)) as f:
                card = json.load(f)
            for flag, given, recorded in (('--seed', seed, card['seed']),
                                          ('--episode-steps', steps, card['episode_steps'])):
                if given is not None and given != recorded:
                    parser.error(f'{flag} {given} disagrees with {data_file}, generated with {flag} {recorded}; '
                                 f'drop {flag} to replay the file')
            seed, steps = card['seed'], card['episode_steps']
        seed = 0 if seed is None else seed
        steps = 1001 if steps is None else steps
        if args.episodes < 1 or steps < 2:
            parser.error('--episodes must be >= 1 and --episode-steps >= 2')
        result = collector_success(args.dataset, args.episodes, seed, steps, data_file)
    except DatasetError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(json.dumps(result))
    print(f"collector success: {result['episodes_with_goal']}/{result['episodes']} episodes")
    return 0


if __name__ == '__main__':
    sys.exit(main())
