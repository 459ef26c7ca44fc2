"""Vectorised single-task evaluation environments in worker processes.

`make_eval_envs(task, N)` spreads N OGBench single-task envs over up to one spawned worker process
per core (each process owns a contiguous slice). Unlike gymnasium's autoreset vector envs, an env
whose episode is over is frozen: it is not stepped again, so each env yields exactly one episode per
`reset`, and `success` is `info['success']` at that episode's last step — the OGBench/FQL metric.

Rendering is headless: MUJOCO_GL is chosen (EGL, else OSMesa) before any worker imports MuJoCo, and
only the envs named in `render(indices)` ever create a renderer.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from envs import d4rl_antmaze
from envs.rendering import choose_mujoco_gl
from envs.seeding import seed_everything
from envs.workers import start_worker


@dataclass(frozen=True)
class StepResult:
    observations: np.ndarray  # [N, obs_dim] f32 (frozen for finished envs)
    rewards: np.ndarray  # [N] f32 (0 for envs not stepped)
    done: np.ndarray  # [N] bool: episode over, now or before
    success: np.ndarray  # [N] bool: info['success'] at the latest step
    just_finished: np.ndarray  # [N] bool: episode ended at this step


SUCCESS_TIMINGS = ('pre', 'post')


def make_task_env(env_id: str, render_size: int | None = None, success_timing: str | None = None):
    """One OGBench single-task env as evaluation makes it (render_size: square frames; None keeps
    OGBench's default). Call `envs.rendering.choose_mujoco_gl()` first in the process that renders.

    success_timing: when success, termination and reward are computed. 'pre' (from s, before the
    action: the default of OGBench >= 1.2's single-task envs) or 'post' (from s', after it: OGBench
    1.1, which the FQL and QFQL papers evaluated with); None keeps the installed OGBench's default."""
    warnings.filterwarnings('ignore', message='.*precision lowered by casting')
    if env_id in d4rl_antmaze.MAZES:  # D4RL's antmazes, rebuilt on OGBench's ant maze
        return d4rl_antmaze.make_env(env_id, render_size, success_timing)
    import ogbench  # heavy (MuJoCo): imported only in the processes that build envs

    kwargs = {} if render_size is None else dict(width=render_size, height=render_size)
    if success_timing is not None:
        if success_timing not in SUCCESS_TIMINGS:
            raise ValueError(f'success_timing must be one of {SUCCESS_TIMINGS}, got {success_timing!r}')
        kwargs['success_timing'] = success_timing
    return ogbench.make_env_and_datasets(env_id, env_only=True, **kwargs)


def _worker(conn, env_id: str, count: int, render_size: int, success_timing: str | None) -> None:
    """Own `count` envs; answer (command, payload) messages until 'close'. MUJOCO_GL comes from the
    parent's environment, which a spawned process inherits."""
    start_worker()
    try:
        envs = [make_task_env(env_id, render_size, success_timing) for _ in range(count)]
        env = envs[0]
        conn.send(('ok', (env.observation_space.shape[0], env.action_space.shape[0], env.spec.max_episode_steps)))
    except Exception:
        conn.send(('error', traceback.format_exc()))
        return
    while True:
        command, payload = conn.recv()
        try:
            if command == 'reset':
                result = [_start(envs[i], seed) for i, seed in payload]
            elif command == 'step':
                # One message each way per worker and step: local env indices, their actions and the seed
                # each starts next if its episode ends (-1: none) in; observations, rewards, ends and
                # successes out. Restarting here keeps resets parallel and costs no extra round trip.
                local, actions, next_seeds = payload
                obs, rewards, done, success = [], np.zeros(len(local), np.float32), np.zeros(len(local), bool), \
                    np.zeros(len(local), bool)
                for j, (i, action, next_seed) in enumerate(zip(local, actions, next_seeds)):
                    ob, rewards[j], terminated, truncated, info = envs[i].step(action)
                    done[j], success[j] = terminated or truncated, info['success']
                    obs.append(_start(envs[i], next_seed) if done[j] and next_seed >= 0 else np.asarray(ob, np.float32))
                result = (np.stack(obs) if obs else None, rewards, done, success)
            elif command == 'render':
                result = [np.asarray(envs[i].render(), np.uint8) for i, _ in payload]
            elif command == 'close':
                for env in envs:
                    env.close()
                conn.send(('ok', None))
                return
            else:
                raise ValueError(f'unknown command {command}')
            conn.send(('ok', result))
        except Exception:
            conn.send(('error', traceback.format_exc()))


def _start(env, seed: int) -> np.ndarray:
    # OGBench's mazes draw start noise from the global NumPy RNG, not from the env's.
    seed_everything(env, int(seed))
    return np.asarray(env.reset(seed=int(seed))[0], np.float32)


class EvalEnvs:
    """N single-task envs in worker processes; one episode per env per `reset`."""

    def __init__(self, task, num_envs: int, render_size: int = 200, num_workers: int | None = None,
                 success_timing: str | None = None):
        if num_envs < 1:
            raise ValueError('num_envs must be >= 1')
        self.num_envs = num_envs
        num_workers = min(num_envs, num_workers or os.cpu_count() or 1)
        choose_mujoco_gl()  # sets MUJOCO_GL before the workers start, so they inherit it
        # Contiguous slices: worker w owns envs [bounds[w], bounds[w+1]).
        self._bounds = np.linspace(0, num_envs, num_workers + 1).round().astype(int)
        ctx = mp.get_context('spawn')
        self._conns, self._procs = [], []
        for w in range(num_workers):
            parent, child = ctx.Pipe()
            count = int(self._bounds[w + 1] - self._bounds[w])
            proc = ctx.Process(target=_worker, args=(child, task.env_id, count, render_size, success_timing), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        dims = [self._receive(c) for c in self._conns]
        self.observation_dim, self.action_dim, self.max_episode_steps = dims[0]
        self._obs = np.zeros((num_envs, self.observation_dim), np.float32)
        self._done = np.ones(num_envs, bool)
        self._success = np.zeros(num_envs, bool)

    def _receive(self, conn):
        status, payload = conn.recv()
        if status != 'ok':
            self._terminate()
            raise RuntimeError(f'evaluation env worker failed:\n{payload}')
        return payload

    def _owner(self, index: int) -> tuple[int, int]:
        worker = int(np.searchsorted(self._bounds, index, side='right') - 1)
        return worker, index - int(self._bounds[worker])

    def _scatter(self, items: dict[int, object], command: str) -> dict[int, object]:
        """Send per-env payloads to their workers (all at once, so they run in parallel), gather by env index."""
        per_worker: dict[int, list] = {}
        for index, item in items.items():
            worker, local = self._owner(index)
            per_worker.setdefault(worker, []).append((index, local, item))
        for worker, entries in per_worker.items():
            payload = [(local, item) for _, local, item in entries]
            self._conns[worker].send((command, payload))
        out = {}
        for worker, entries in per_worker.items():
            results = self._receive(self._conns[worker])
            out.update({index: r for (index, _, _), r in zip(entries, results)})
        return out

    def reset(self, seeds: Sequence[int]) -> np.ndarray:
        """Start one episode in each of the first len(seeds) envs, env i seeded with seeds[i]; the
        other envs count as done (never stepped) until the next reset, so a last, partial batch
        of episodes costs no env steps beyond its own."""
        if not 1 <= len(seeds) <= self.num_envs:
            raise ValueError(f'need 1 to {self.num_envs} seeds, got {len(seeds)}')
        self._done[:] = True
        self._success[:] = False
        self.start(range(len(seeds)), seeds)
        return self._obs.copy()

    def start(self, indices: Sequence[int], seeds: Sequence[int]) -> np.ndarray:
        """Start a new episode in each env of `indices` (env indices[j] seeded with seeds[j]) and leave
        the others as they are, running or done: a pool refills the envs whose episode ended while
        the rest keep stepping. Returns the first observations of the started envs, in order."""
        indices = [int(i) for i in indices]
        if len(indices) != len(seeds) or len(set(indices)) != len(indices):
            raise ValueError(f'need one seed per distinct env index, got {len(indices)} indices and {len(seeds)} seeds')
        if any(not 0 <= i < self.num_envs for i in indices):
            raise ValueError(f'env indices must lie in [0, {self.num_envs}), got {indices}')
        for index, ob in self._scatter(dict(zip(indices, seeds)), 'reset').items():
            self._obs[index] = ob
        self._done[indices] = False
        self._success[indices] = False
        return self._obs[indices].copy()

    def step(self, actions: np.ndarray, next_seeds: np.ndarray | None = None) -> StepResult:
        """Step the envs whose episode is still running; finished ones keep their last observation.

        `next_seeds` ([N] ints, -1 for none): an env whose episode ends at this step starts its next
        one at once with this seed, in the same round trip; its `done` says the episode ended and its
        observation is the new episode's first, and it keeps running."""
        actions = np.asarray(actions, np.float32)
        if actions.shape != (self.num_envs, self.action_dim):
            raise ValueError(f'actions must have shape {(self.num_envs, self.action_dim)}, got {actions.shape}')
        next_seeds = np.full(self.num_envs, -1) if next_seeds is None else np.asarray(next_seeds, np.int64)
        running = np.flatnonzero(~self._done)
        rewards = np.zeros(self.num_envs, np.float32)
        just_finished = np.zeros(self.num_envs, bool)
        owners = np.searchsorted(self._bounds, running, side='right') - 1
        busy = [w for w in range(len(self._conns)) if np.any(owners == w)]
        for w in busy:
            mine = running[owners == w]
            self._conns[w].send(('step', ((mine - self._bounds[w]).tolist(), actions[mine], next_seeds[mine].tolist())))
        for w in busy:
            mine = running[owners == w]
            obs, rewards[mine], done, success = self._receive(self._conns[w])
            self._obs[mine] = obs
            self._success[mine] = success
            just_finished[mine] = done
            self._done[mine] = done
        result = StepResult(self._obs.copy(), rewards, self._done.copy(), self._success.copy(), just_finished)
        restarted = just_finished & (next_seeds >= 0)
        self._done[restarted] = False
        self._success[restarted] = False
        return result

    def render(self, indices: Sequence[int]) -> list[np.ndarray]:
        """RGB frames (H, W, 3) uint8 of the selected envs, in the order given."""
        frames = self._scatter({int(i): None for i in indices}, 'render')
        return [frames[int(i)] for i in indices]

    def close(self) -> None:
        for conn, proc in zip(self._conns, self._procs):
            if proc.is_alive():
                try:
                    conn.send(('close', None))
                    conn.recv()
                except (OSError, EOFError, BrokenPipeError):
                    pass
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        self._conns, self._procs = [], []

    def _terminate(self) -> None:
        for proc in self._procs:
            proc.terminate()
            proc.join(timeout=5)
        self._conns, self._procs = [], []

    def __enter__(self) -> EvalEnvs:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_eval_envs(task, num_envs: int, render_size: int = 200, num_workers: int | None = None,
                   success_timing: str | None = None) -> EvalEnvs:
    """N seeded single-task evaluation envs for `task` in up to `num_workers` (default: cores) processes
    (success_timing: see make_task_env)."""
    return EvalEnvs(task, num_envs, render_size, num_workers, success_timing)
