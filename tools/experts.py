"""Locomotion experts for the antmaze / antsoccer dataset collectors: SAC training, export, evaluation.

OGBench collects `antmaze-*-navigate` and `antsoccer-*-navigate` with SAC experts trained on its online
locomotion environments (shipped in the `ogbench` package):

* `ant`     -- `online-ant-v0` wrapped in `GymXYWrapper`: the observation is the ant's state without its
               x-y position plus a unit direction z, the reward is the x-y displacement along z, z is
               resampled every 100 steps, episodes last 1000 steps and end early if the ant flips.
* `antball` -- `online-antball-v0`: dribble a ball to a goal, 200-step episodes.

The SAC itself (networks, losses, train state, checkpoint) is tools/sac.py, with OGBench's published
hyperparameters; this module adds OGBench's schedule around it: 10k random seed steps, one update per
environment step. OGBench trains the ant for 400k steps (the default here too, about an hour on a shared
2-core CPU); the shipped expert stopped at 240k, and its card records the steps used.

CLI:
    python -m tools.experts train ant [--steps N] [--run-dir DIR]      # resumes from the checkpoint in DIR
    python -m tools.experts export ant [--run-dir DIR]                 # writes artifacts/experts/ant.{msgpack,json}
    python -m tools.experts eval ant [--weights PATH]                  # evaluates an exported expert
    python -m tools.experts snapshot antball [--run-dir DIR]           # latest checkpoint, no buffer, to commit

A run longer than one working session (antball: about 11 hours of CPU) is carried across fresh clones by
`snapshot`: the latest checkpoint's agent state, progress log and config, without the replay buffer (hundreds
of MB), under artifacts/experts/training/NAME/, which git tracks. `train` starts from that snapshot when its run
folder holds no checkpoint, and refills the buffer with the current policy before updating again.

The exported expert is the actor's parameters only; acting uses the deterministic action tanh(mean)
(OGBench's temperature 0) and the collectors add their own Gaussian noise.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from envs.cli import OneLineArgumentParser
from envs.locomotion import EXPERTS_DIR
from envs.rendering import choose_mujoco_gl
from harness.errors import UsageError, run_main
from tools.sac import (ReplayBuffer, SACConfig, atomic_write_bytes, atomic_write_text, copy_checkpoint,
                       init_train_state, load_checkpoint, make_modules, make_policy_fn, make_update_fn, save_checkpoint, to_numpy)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUNS_DIR = REPO_ROOT / 'artifacts' / 'runs' / 'experts'
SNAPSHOTS_DIR = EXPERTS_DIR / 'training'

EXPORT_EVAL_EPISODES, EXPORT_EVAL_SEED = 20, 12345  # evaluation written into the shipped card


@dataclass(frozen=True)
class ExpertSpec:
    """How one expert is trained: which online env, how long, and OGBench's own schedule for comparison."""

    name: str
    env_id: str
    sac: SACConfig
    default_steps: int  # what `train` runs when --steps is not given (sized for this project's CPU)
    ogbench_steps: int  # OGBench's commands.sh
    train_interval: int = 1  # env steps per update (OGBench: 1 for ant, 4 for antball)
    seed_steps: int = 10_000
    buffer_size: int = 1_000_000  # replay capacity; a 12M-transition antball buffer would need 4.5 GB
    terminate_at_end: bool = False  # treat time-limit truncation as terminal (OGBench antball)


EXPERTS: dict[str, ExpertSpec] = {
    'ant': ExpertSpec(
        name='ant', env_id='online-ant-xy-v0', sac=SACConfig(), default_steps=400_000, ogbench_steps=400_000
    ),
    'antball': ExpertSpec(
        name='antball',
        env_id='online-antball-v0',
        sac=SACConfig(critic_layer_norm=True),
        default_steps=12_000_000,
        ogbench_steps=12_000_000,
        train_interval=4,
        terminate_at_end=True,
    ),
}


class ExpertError(UsageError):
    """Bad user input or missing files; str is one actionable line."""


# ------------------------------------------------------------------------------------------- environments


def make_online_env(spec: ExpertSpec):
    """The OGBench online env for `spec` (direction wrapper for the `-xy` ant, as OGBench's online_env_utils)."""
    import gymnasium  # heavy (MuJoCo): imported only when an online env is built

    import ogbench.online_locomotion  # noqa: F401  (registers online-*-v0)

    if spec.env_id == 'online-ant-xy-v0':
        from ogbench.online_locomotion.wrappers import GymXYWrapper

        return GymXYWrapper(gymnasium.make('online-ant-v0'), resample_interval=100)
    # AntBallEnv renders once in its constructor (to place its camera), so it needs a render mode and a
    # working headless GL backend even though training never looks at a frame.
    choose_mujoco_gl()
    return gymnasium.make(spec.env_id, render_mode='rgb_array', width=64, height=64)


# ------------------------------------------------------------------------------------------------- train


def train(spec: ExpertSpec, steps: int, run_dir: Path, seed: int = 0, num_envs: int = 4,
          checkpoint_every: int = 20_000, eval_every: int = 50_000, eval_episodes: int = 10,
          snapshot_dir: Path | None = None) -> dict:
    """SAC on `spec`'s online env, `num_envs` envs stepped in lockstep and one update per env step.

    Stepping several envs per policy call and scanning the matching updates in one jitted call removes
    most per-step Python/dispatch overhead on CPU without changing the update-to-data ratio.
    Resumes from `run_dir` if a checkpoint exists, else from the committed snapshot (default
    artifacts/experts/training/NAME) if there is one. Returns the final progress log entry.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    snapshot = snapshot_dir or SNAPSHOTS_DIR / spec.name
    if not (run_dir / 'progress.json').exists() and (snapshot / 'progress.json').exists():
        copy_checkpoint(snapshot, run_dir)
        print(f'starting {spec.name} from the snapshot in {snapshot}; the replay buffer is refilled by the current '
              'policy before updates resume', flush=True)
    np.random.seed(seed)  # GymXYWrapper draws directions from the global NumPy RNG
    envs = [make_online_env(spec) for _ in range(num_envs)]
    obs_dim = envs[0].observation_space.shape[0]
    action_dim = envs[0].action_space.shape[0]
    state = init_train_state(spec.sac, obs_dim, action_dim, seed)
    progress_path = run_dir / 'progress.json'
    saved_step = json.loads(progress_path.read_text())['step'] if progress_path.exists() else 0
    buffer = ReplayBuffer(min(spec.buffer_size, max(steps, spec.seed_steps, saved_step)), obs_dim, action_dim)
    update_fn = make_update_fn(spec.sac, action_dim)
    policy_fn = make_policy_fn(spec.sac, action_dim)
    sample_rng = np.random.default_rng(seed)
    start, log = 0, []
    restored = load_checkpoint(run_dir, to_numpy(state), buffer)
    if restored is not None:
        state, start, np_state, log = restored
        state = jax.tree_util.tree_map(jnp.asarray, state)
        np.random.set_state((np_state[0], np.array(np_state[1], np.uint32), *np_state[2:]))
        sample_rng = np.random.default_rng([seed, start])
        print(f'resumed {spec.name} from step {start} ({run_dir})', flush=True)
    config = {'expert': spec.name, 'env_id': spec.env_id, 'sac': dataclasses.asdict(spec.sac), 'steps': steps,
              'seed': seed, 'num_envs': num_envs, 'seed_steps': spec.seed_steps,
              'train_interval': spec.train_interval}
    atomic_write_text(run_dir / 'config.json', json.dumps(config, indent=1))

    obs = np.stack([env.reset(seed=seed * 1000 + start + i)[0] for i, env in enumerate(envs)])
    ep_return = np.zeros(num_envs)
    recent_returns: list[float] = []
    key = jax.random.PRNGKey(seed + start)
    pending_updates, info = 0, {}
    bar = tqdm(total=steps, initial=start, desc=f'SAC {spec.name}', dynamic_ncols=True, mininterval=5)
    step, t0 = start, time.time() - (log[-1]['wall_s'] if log else 0.0)
    while step < steps:
        if step < spec.seed_steps:
            actions = np.stack([env.action_space.sample() for env in envs])
        else:
            key, sub = jax.random.split(key)
            actions = np.asarray(policy_fn(state['params']['actor'], jnp.asarray(obs, jnp.float32), sub, False))
        for i, env in enumerate(envs):
            next_ob, reward, terminated, truncated, _ = env.step(actions[i])
            if spec.terminate_at_end and truncated:
                terminated = True
            buffer.add(observations=obs[i], actions=actions[i], rewards=reward, masks=float(not terminated),
                       next_observations=next_ob)
            ep_return[i] += reward
            if terminated or truncated:
                recent_returns = (recent_returns + [float(ep_return[i])])[-20:]
                ep_return[i] = 0.0
                next_ob, _ = env.reset()
            obs[i] = next_ob
        step += num_envs
        bar.update(num_envs)
        if buffer.size >= spec.seed_steps:
            pending_updates += num_envs
            num_updates = pending_updates // spec.train_interval
            if num_updates:
                pending_updates -= num_updates * spec.train_interval
                batches = buffer.sample(sample_rng, num_updates, spec.sac.batch_size)
                state, info = update_fn(state, batches)
        if step % checkpoint_every < num_envs or step >= steps:
            entry = {'step': step, 'wall_s': round(time.time() - t0, 1),
                     'train_return_mean20': float(np.mean(recent_returns)) if recent_returns else None,
                     **{k: float(v) for k, v in info.items()}}
            if step % eval_every < num_envs or step >= steps:
                entry.update(evaluate(spec, to_numpy(state['params']['actor']), eval_episodes, seed=10_000 + step))
            log.append(entry)
            bar.write(json.dumps(entry))
            np_state = np.random.get_state()
            save_checkpoint(run_dir, state, buffer, step,
                            [np_state[0], np_state[1].tolist(), *[float(x) for x in np_state[2:]]], log)
    bar.close()
    return log[-1] if log else {}


# ------------------------------------------------------------------------------------- export and loading


def require_checkpoint(spec: ExpertSpec, run_dir: Path) -> dict:
    """The progress record of the checkpoint in `run_dir`, or an ExpertError naming the command that makes one."""
    progress_path = run_dir / 'progress.json'
    if not progress_path.exists():
        raise ExpertError(f'no checkpoint in {run_dir}; run `python -m tools.experts train {spec.name}` first')
    return json.loads(progress_path.read_text())


def export_expert(spec: ExpertSpec, run_dir: Path, out_dir: Path = EXPERTS_DIR, command: str = '') -> Path:
    """Write the trained actor (msgpack) and its card (json) under `out_dir`; returns the weights path."""
    progress = require_checkpoint(spec, run_dir)
    config = json.loads((run_dir / 'config.json').read_text())
    env = make_online_env(spec)
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    template = to_numpy(init_train_state(spec.sac, obs_dim, action_dim, 0))
    state = flax.serialization.from_bytes(template, (run_dir / f'agent-{progress["step"]}.msgpack').read_bytes())
    actor = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), state['params']['actor'])
    weights = out_dir / f'{spec.name}.msgpack'
    atomic_write_bytes(weights, flax.serialization.to_bytes(actor))
    evaluation = evaluate(spec, actor, EXPORT_EVAL_EPISODES, seed=EXPORT_EVAL_SEED)
    card = {
        'expert': spec.name,
        'env_id': spec.env_id,
        'obs_dim': obs_dim,
        'action_dim': action_dim,
        'actor_hidden': list(spec.sac.actor_hidden),
        # The schedule does not depend on --steps (the buffer never wraps below it), so a run stopped at
        # step N is reproduced by asking for N steps.
        'train_command': command
        or f'python -m tools.experts train {spec.name} --steps {progress["step"]} --num-envs {config["num_envs"]}',
        'env_steps_trained': progress['step'],
        'ogbench_env_steps': spec.ogbench_steps,
        'train_config': config,
        'evaluation': {'episodes': EXPORT_EVAL_EPISODES, 'seed': EXPORT_EVAL_SEED, **evaluation},
        'progress_log': progress['log'],
    }
    atomic_write_text(out_dir / f'{spec.name}.json', json.dumps(card, indent=1))
    return weights


@dataclass(frozen=True)
class Expert:
    """A loaded expert: `act(obs [B,D]) -> actions [B,A]`, deterministic tanh(mean) (OGBench's temperature 0)."""

    name: str
    obs_dim: int
    action_dim: int
    params: Any
    card: dict
    _policy: Callable

    def act(self, obs: np.ndarray) -> np.ndarray:
        batched = np.asarray(obs, np.float32).reshape(-1, self.obs_dim)
        out = np.asarray(self._policy(self.params, jnp.asarray(batched), jax.random.PRNGKey(0), True))
        return out.reshape(np.shape(obs)[:-1] + (self.action_dim,))


def load_expert(name: str, weights: Path | None = None) -> Expert:
    """Load a shipped (or given) expert; raises ExpertError with one actionable line when missing."""
    if name not in EXPERTS:
        raise ExpertError(f'unknown expert {name!r}; choose one of {sorted(EXPERTS)}')
    weights = Path(weights) if weights is not None else EXPERTS_DIR / f'{name}.msgpack'
    card_path = weights.with_suffix('.json')
    if not weights.exists() or not card_path.exists():
        raise ExpertError(
            f'expert weights {weights} (and card {card_path.name}) not found; restore artifacts/experts/ from '
            f'git or train with `python -m tools.experts train {name}` then `python -m tools.experts export {name}`'
        )
    card = json.loads(card_path.read_text())
    spec = EXPERTS[name]
    actor, _ = make_modules(spec.sac, card['action_dim'])
    template = to_numpy(actor.init(jax.random.PRNGKey(0), jnp.zeros((1, card['obs_dim'])))['params'])
    params = flax.serialization.from_bytes(template, weights.read_bytes())
    return Expert(name, card['obs_dim'], card['action_dim'], params, card, make_policy_fn(spec.sac, card['action_dim']))


# --------------------------------------------------------------------------------------------- evaluation


def ant_direction_ob(state_ob: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """The ant expert's input: ant state (qpos+qvel, 29) without x-y, plus a unit direction (as OGBench)."""
    return np.concatenate([state_ob[2:], direction])


def evaluate(spec: ExpertSpec, actor_params, episodes: int, seed: int = 0) -> dict:
    """Deterministic-policy evaluation.

    ant: `eval_speed` = mean displacement per second along the commanded direction over 1000-step episodes
    (direction resampled every 100 steps, as in training), and `eval_goal_success` = fraction of episodes in
    which, steering toward a goal 10 m away by feeding the unit vector to it as the direction, the ant gets
    within 0.5 m (antmaze's goal tolerance) in 300 steps.
    antball: `eval_ball_progress` = mean decrease of the ball-goal distance over a 200-step episode, and
    `eval_success` = fraction of episodes with the ball within 0.5 m of the goal at some step.
    """
    env = make_online_env(spec)
    action_dim = env.action_space.shape[0]
    policy = make_policy_fn(spec.sac, action_dim)
    key = jax.random.PRNGKey(0)

    def act(ob):
        return np.asarray(policy(actor_params, jnp.asarray(ob[None], jnp.float32), key, True))[0]

    rng = np.random.default_rng(seed)
    np.random.seed(seed)
    if spec.name == 'antball':
        progress, successes = [], []
        for ep in range(episodes):
            ob, _ = env.reset(seed=seed + ep)
            start = np.linalg.norm(env.unwrapped.get_agent_ball_xy()[1] - env.unwrapped.cur_goal_xy)
            success = False
            for _ in range(200):
                ob, _, terminated, truncated, info = env.step(act(ob))
                success |= bool(info['success'])
                if terminated or truncated:
                    break
            end = np.linalg.norm(env.unwrapped.get_agent_ball_xy()[1] - env.unwrapped.cur_goal_xy)
            progress.append(start - end)
            successes.append(success)
        return {'eval_ball_progress': float(np.mean(progress)), 'eval_success': float(np.mean(successes))}

    dt = env.unwrapped.dt
    speeds, successes = [], []
    for ep in range(episodes):
        ob, _ = env.reset(seed=seed + ep)
        total, n = 0.0, 0
        for _ in range(1000):
            ob, reward, terminated, truncated, _ = env.step(act(ob))
            total, n = total + reward, n + 1
            if terminated or truncated:
                break
        speeds.append(total / (1000 * dt))  # an ant that flips early is charged for the lost time
    base = env.unwrapped
    for ep in range(episodes):
        env.reset(seed=seed + 100 + ep)
        angle = rng.uniform(0, 2 * np.pi)
        goal = base.data.qpos[:2] + 10.0 * np.array([np.cos(angle), np.sin(angle)])
        success = False
        for _ in range(300):
            xy = base.data.qpos[:2]
            to_goal = goal - xy
            if np.linalg.norm(to_goal) <= 0.5:
                success = True
                break
            state_ob = np.concatenate([base.data.qpos, base.data.qvel])
            _, _, terminated, _, _ = base.step(act(ant_direction_ob(state_ob, to_goal / np.linalg.norm(to_goal))))
            if terminated:
                break
        successes.append(success)
    return {'eval_speed': float(np.mean(speeds)), 'eval_goal_success': float(np.mean(successes))}


# ---------------------------------------------------------------------------------------------------- CLI


def _parse(argv):
    parser = OneLineArgumentParser(prog='python -m tools.experts', description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    for name in ('train', 'export', 'eval', 'snapshot'):
        p = sub.add_parser(name)
        p.add_argument('expert', help=f'one of {sorted(EXPERTS)}')
        p.add_argument('--run-dir', type=Path, default=None, help='training folder (default artifacts/runs/experts/NAME)')
        if name in ('train', 'eval'):
            p.add_argument('--seed', type=int, default=0)
        if name == 'train':
            p.add_argument('--steps', type=int, default=None, help='environment steps (default: the spec default)')
            p.add_argument('--num-envs', type=int, default=4)
            p.add_argument('--checkpoint-every', type=int, default=20_000)
            p.add_argument('--eval-every', type=int, default=50_000)
            p.add_argument('--export', action='store_true', help='export to artifacts/experts/ when done')
        if name == 'eval':
            p.add_argument('--weights', type=Path, default=None)
            p.add_argument('--episodes', type=int, default=20)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    if args.expert not in EXPERTS:
        raise ExpertError(f'unknown expert {args.expert!r}; choose one of {sorted(EXPERTS)}')
    spec = EXPERTS[args.expert]
    run_dir = args.run_dir or DEFAULT_RUNS_DIR / spec.name
    if args.command == 'train':
        steps = args.steps or spec.default_steps
        if steps <= 0 or args.num_envs <= 0:
            raise ExpertError('--steps and --num-envs must be positive')
        train(spec, steps, run_dir, args.seed, args.num_envs, args.checkpoint_every, args.eval_every)
        if args.export:
            print(export_expert(spec, run_dir))
    elif args.command == 'export':
        print(export_expert(spec, run_dir))
    elif args.command == 'snapshot':
        require_checkpoint(spec, run_dir)
        step = copy_checkpoint(run_dir, SNAPSHOTS_DIR / spec.name)
        print(f'{SNAPSHOTS_DIR / spec.name}: step {step}; commit it to carry the run to a fresh clone')
    else:
        expert = load_expert(spec.name, args.weights)
        print(json.dumps(evaluate(spec, expert.params, args.episodes, seed=args.seed)))
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
