"""How tools.bench measures: interleaved median timings, synthetic datasets on the device, the sizes
of a quick and a full run, the rows a figure reports, and the figure-7 child that measures its own
peak memory. Kept apart from the figures so that each figure reads as what it compares and why."""
from __future__ import annotations

import gc
import json
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import jax
import numpy as np
import psutil

from agents import make_agent
from envs.rendering import choose_mujoco_gl
from envs.vector import make_task_env

MEMORY_MARK = 'BENCH_MEMORY '


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does; --quick keeps the CPU run under five minutes."""
    train_chunk: int            # updates per timed call (figures 1-3)
    train_rounds: int           # interleaved rounds (median over these)
    dataset_size: int           # synthetic transitions on the device for figures 1-3
    sample_rounds: int          # figure 4
    rollout_envs: int           # figure 5: envs in the vectorised evaluation
    rollout_steps: int          # figure 5: env steps per round
    rollout_rounds: int
    memory_updates: int         # figure 7: updates the child process runs
    gpu_chunk: int              # figure 6: updates per call
    gpu_full_run: bool          # figure 6: really run 1M updates (else extrapolate from chunks)
    sweep_episodes: int         # figure 8: episodes per (β, seed) of the 6-β x 3-seed sweep
    sweep_rounds: int


QUICK = Sizes(train_chunk=2, train_rounds=12, dataset_size=100_000, sample_rounds=30, rollout_envs=20,
              rollout_steps=20, rollout_rounds=3, memory_updates=20, gpu_chunk=1000, gpu_full_run=False,
              sweep_episodes=3, sweep_rounds=1)
FULL = Sizes(train_chunk=10, train_rounds=7, dataset_size=1_000_000, sample_rounds=60, rollout_envs=50,
             rollout_steps=50, rollout_rounds=3, memory_updates=300, gpu_chunk=10_000, gpu_full_run=True,
             sweep_episodes=10, sweep_rounds=2)
MEMORY_DATASET_SIZE = 1_000_000


@dataclass
class Row:
    figure: str
    what: str
    values: dict                  # name -> number (units in the name)
    ratio: float | None = None
    target: str = ''
    met: bool | None = None       # None: no target, or not measured
    note: str = ''

    def status(self) -> str:
        return {True: 'met', False: 'NOT met', None: '-'}[self.met]


@dataclass
class Report:
    backend: str
    device: str
    mode: str
    preset: str
    task: str
    obs_dim: int
    act_dim: int
    rows: list = field(default_factory=list)


# ---- measurement plumbing ---------------------------------------------------------------------

def interleaved_medians(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each call over `rounds` interleaved rounds (each call blocks until done).
    Interleaving spreads the drifting load of a shared machine evenly over the variants."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def block_medians_ms(blocks: dict[str, tuple[Callable, tuple]], rounds: int, repeats: int = 8) -> dict[str, float]:
    """Median milliseconds per call of each jitted block `fn(*args)`, compiled first, interleaved.
    A block takes a few ms, so each round repeats it: one burst of load from other processes then
    cannot decide its median."""
    for fn, args in blocks.values():
        ready(fn(*args))

    def repeated(fn, args):
        for _ in range(repeats):
            out = fn(*args)
        ready(out)

    seconds = interleaved_medians(
        {name: (lambda fn=fn, args=args: repeated(fn, args)) for name, (fn, args) in blocks.items()}, rounds)
    return {name: 1e3 * s / repeats for name, s in seconds.items()}


def synthetic_dataset(size: int, obs_dim: int, act_dim: int, seed: int = 0) -> dict[str, jax.Array]:
    """Random transitions (actions inside [-1, 1]) moved to the device the way a real run moves its
    loaded dataset: float32 host arrays, jax.device_put, host copies dropped."""
    rng = np.random.default_rng(seed)
    host = {
        'observations': rng.standard_normal((size, obs_dim), np.float32),
        'actions': rng.uniform(-1.0, 1.0, (size, act_dim)).astype(np.float32),
        'rewards': rng.standard_normal(size, np.float32),
        'masks': np.ones(size, np.float32),
        'next_observations': rng.standard_normal((size, obs_dim), np.float32),
    }
    data = {}
    for name in list(host):
        data[name] = ready(jax.device_put(host.pop(name)))
        # The transfer leaves the host array reachable only through a reference cycle: without a
        # collection, every host copy outlives its transfer and the process holds the dataset twice.
        gc.collect()
    return data


def task_dims(task) -> tuple[int, int]:
    """(observation size, action size) read from the task's own env."""
    env = make_single_env(task)
    try:
        return int(env.observation_space.shape[0]), int(env.action_space.shape[0])
    finally:
        env.close()


def make_single_env(task):
    """One in-process env, made the way envs.vector's workers make theirs (headless GL first)."""
    choose_mujoco_gl()
    return make_task_env(task.env_id)


def ready(tree):
    return jax.block_until_ready(tree)


def scan_fn():
    """update_many with the dataset as an argument (never a baked-in constant)."""
    return jax.jit(lambda agent, data, key, n: agent.update_many(data, key, n), static_argnums=3)


# ---- the figure-7 child -----------------------------------------------------------------------

def _peak_rss_bytes() -> int:
    """This process's own high-water RSS. /proc's VmHWM belongs to the address space made at exec;
    getrusage's ru_maxrss would also count the parent's RSS at fork time."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # Linux reports KiB


def memory_child(spec: str, preset: str) -> int:
    """Body of the figure-7 child: build the dataset on the device, train, print peak RSS as JSON."""
    process = psutil.Process()
    phases = {'after imports': process.memory_info().rss}
    obs_dim, act_dim, updates = (int(x) for x in spec.split(','))
    data = ready(synthetic_dataset(MEMORY_DATASET_SIZE, obs_dim, act_dim))
    phases['after dataset'] = process.memory_info().rss
    agent = make_agent('qfql', 0, data['observations'][:2], data['actions'][:2], preset)
    scan = scan_fn()
    chunk = min(updates, 50)
    done, key = 0, jax.random.PRNGKey(0)
    while done < updates:
        key, sub = jax.random.split(key)
        agent = ready(scan(agent, data, sub, chunk))[0]
        done += chunk
        phases.setdefault('after first chunk (compiled)', process.memory_info().rss)
    phases['at the end'] = process.memory_info().rss
    device_stats = jax.devices()[0].memory_stats() or {}
    peak_device = device_stats.get('peak_bytes_in_use')
    result = {
        'peak_rss_mib': _peak_rss_bytes() / 2**20,
        'dataset_mib': sum(v.nbytes for v in data.values()) / 2**20,
        'updates': done,
        'rss_mib': {name: rss / 2**20 for name, rss in phases.items()},
        'peak_device_mib': None if peak_device is None else peak_device / 2**20,
    }
    print(MEMORY_MARK + json.dumps(result), flush=True)
    return 0
