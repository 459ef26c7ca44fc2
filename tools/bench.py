"""`python -m tools.bench`: what QFQL costs in wall-clock terms, next to our FQL.

A benchmark, not a test: it prints one table row per figure -- the measured values, their ratio, the
target and whether it is met -- and can write the same rows as JSON (--json PATH).

Every ratio compares variants measured side by side in ONE process, in interleaved rounds
(A, B, C, A, B, C, ...), and reports medians: on a shared machine the load drifts, and interleaving
makes the drift hit every variant alike. Absolute numbers are only as good as the machine's load;
the ratios are what we report.

Figures (the numbers are the row labels of the README's speed table):
  1  training updates/s: QFQL (flow target), QFQL (one-step target), FQL; same networks and batch;
     synthetic batches with the task's observation/action sizes (read from the env itself); 1c is
     the opt-in next step for 1a, the flow target with fewer Euler steps (--target-flow-steps)
  1p profile: each building block of an update timed alone, the updates composed from them, and
     the ratios that equal-size networks allow (where the time goes)
  2  N updates in one lax.scan with device-side sampling vs one jitted call per update with
     host-side (NumPy) sampling
  3  M seeds under jax.vmap in one call vs the same M seeds one after another (aggregate updates/s)
  4  guided sampling: one batched action for 50 envs, K flow steps, β = 1 vs β = 0 (β = 0 skips ∇Q)
  5  rollouts: env steps/s of make_eval_envs (2 worker processes, one batched policy call per step)
     vs one env stepped in a loop with the same policy; and the share of eval time in the policy
  6  GPU only: updates/s, wall time of 1M updates, 8 vmapped seeds
  7  peak resident memory of a training process holding a 1M-transition dataset (a child process)
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import psutil

from agents import PRESETS, QFQLAgent, make_agent, resolve_config
from agents.losses import polyak_update
from agents.networks import MLP
from agents.training import make_optimizer, sample_batch
from envs.rendering import choose_mujoco_gl
from envs.tasks import resolve_task
from envs.vector import make_eval_envs, make_task_env
from harness.checkpoints import write_json_atomic
from harness.errors import OneLineArgumentParser, UsageError, run_main
from harness.train import create_agents, make_chunk_fn

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


QUICK = Sizes(train_chunk=2, train_rounds=12, dataset_size=100_000, sample_rounds=30, rollout_envs=20,
              rollout_steps=20, rollout_rounds=3, memory_updates=20, gpu_chunk=1000, gpu_full_run=False)
FULL = Sizes(train_chunk=10, train_rounds=7, dataset_size=1_000_000, sample_rounds=60, rollout_envs=50,
             rollout_steps=50, rollout_rounds=3, memory_updates=300, gpu_chunk=10_000, gpu_full_run=True)
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
        _block(fn(*args))

    def repeated(fn, args):
        for _ in range(repeats):
            out = fn(*args)
        _block(out)

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
        data[name] = _block(jax.device_put(host.pop(name)))
        # The transfer leaves the host array reachable only through a reference cycle: without a
        # collection, every host copy outlives its transfer and the process holds the dataset twice.
        gc.collect()
    return data


def task_dims(task) -> tuple[int, int]:
    """(observation size, action size) read from the task's own env."""
    env = _make_single_env(task)
    try:
        return int(env.observation_space.shape[0]), int(env.action_space.shape[0])
    finally:
        env.close()


def _make_single_env(task):
    """One in-process env, made the way envs.vector's workers make theirs (headless GL first)."""
    choose_mujoco_gl()
    return make_task_env(task.env_id)


def _block(tree):
    return jax.block_until_ready(tree)


# Figure 1's variants: same config (networks, batch, K) except QFQL's target action. The last QFQL
# variant is the opt-in next step for 1a: the flow target with half the Euler steps (acting keeps K).
CHEAP_TARGET_STEPS = 5
CHEAP_TARGET = f'QFQL flow target, {CHEAP_TARGET_STEPS} steps'
EXPECTILE = 'QFQL expectile critic'
TRAIN_VARIANTS = {'QFQL flow target': ('qfql', {}), 'QFQL onestep target': ('qfql', {'target_action': 'onestep'}),
                  CHEAP_TARGET: ('qfql', {'target_flow_steps': CHEAP_TARGET_STEPS}),
                  EXPECTILE: ('qfql', {'critic': 'expectile'}),
                  'FQL': ('fql', {})}


def _scan_fn():
    """update_many with the dataset as an argument (never a baked-in constant)."""
    return jax.jit(lambda agent, data, key, n: agent.update_many(data, key, n), static_argnums=3)


# ---- figures ------------------------------------------------------------------------------------

def figure_training(report: Report, sizes: Sizes, data) -> None:
    """Figure 1: updates/s of FQL and of QFQL with each target action, interleaved."""
    ex_obs, ex_act = data['observations'][:2], data['actions'][:2]
    scan = _scan_fn()
    agents = {name: make_agent(kind, 0, ex_obs, ex_act, report.preset, **kw)
              for name, (kind, kw) in TRAIN_VARIANTS.items()}
    keys = iter(jax.random.split(jax.random.PRNGKey(1), 10_000))

    def run(name):
        agents[name] = _block(scan(agents[name], data, next(keys), sizes.train_chunk))[0]

    for name in agents:                      # compile outside the timing
        run(name)
    seconds = interleaved_medians({name: (lambda n=name: run(n)) for name in agents}, sizes.train_rounds)
    ups = {name: sizes.train_chunk / s for name, s in seconds.items()}
    k = agents['FQL'].config.flow_steps
    rows = [('1a', 'QFQL flow target', 'QFQL flow target (default) vs FQL', 1.5, '>= 1.5x', ''),
            ('1b', 'QFQL onestep target', 'QFQL onestep target vs FQL', 3.0, '>= 3x', ''),
            ('1c', CHEAP_TARGET, f'QFQL flow target with {CHEAP_TARGET_STEPS} Euler steps vs FQL', 1.5, "1a's >= 1.5x",
             f'opt-in: --target-flow-steps {CHEAP_TARGET_STEPS} (acting keeps K={k})')]
    for figure, name, what, target, target_text, note in rows:
        ratio = ups[name] / ups['FQL']
        values = {f'{name} updates/s': round(ups[name], 2), 'FQL updates/s': round(ups['FQL'], 2)}
        report.rows.append(Row(figure, f'train updates/s, {what}', values, ratio, target_text,
                               ratio >= target if report.backend == 'cpu' else None, note=note))
    default = 'QFQL flow target'
    values = {f'{EXPECTILE} updates/s': round(ups[EXPECTILE], 2), f'{default} updates/s': round(ups[default], 2)}
    report.rows.append(Row('1d', f'train updates/s, {EXPECTILE} (no actor samples) vs the default flow-target TD '
                                 'critic', values, ups[EXPECTILE] / ups[default], note='opt-in: --critic expectile'))


def figure_profile(report: Report, sizes: Sizes, data) -> None:
    """Figure 1p: where an update's time goes. Each building block is timed alone (interleaved), then
    the three updates are composed from blocks. The composed ratio is what equal-size networks allow;
    it is the ceiling for figure 1's ratios unless a block itself gets cheaper for one agent only."""
    ex_obs, ex_act = data['observations'][:2], data['actions'][:2]
    qfql = make_agent('qfql', 0, ex_obs, ex_act, report.preset)
    fql = make_agent('fql', 0, ex_obs, ex_act, report.preset)
    batch = _block(sample_batch(data, jax.random.PRNGKey(9), qfql.config.batch_size))
    obs, act = batch['observations'], batch['actions']
    times = jnp.zeros((obs.shape[0], 1), jnp.float32)
    key = jax.random.PRNGKey(10)

    def adam_step(agent):
        trainable = {k: agent.params[k] for k in agent.trainable_names(agent.config)}
        optimizer = make_optimizer(agent.config)
        state = optimizer.init(trainable)

        def step(tree, target):
            updates, _ = optimizer.update(tree, state, tree)
            return optax.apply_updates(tree, updates), polyak_update(target, tree['critic'], agent.config.tau)
        return jax.jit(step), (trainable, agent.params['target_critic'])

    qfql_adam, qfql_adam_args = adam_step(qfql)
    fql_adam, fql_adam_args = adam_step(fql)
    blocks = {
        'actor forward (1 net pass)': (jax.jit(lambda p: qfql.velocity_fn(p)(obs, act, times)), (qfql.params['actor'],)),
        'actor BC loss fwd+bwd': (jax.jit(jax.grad(lambda p: qfql.actor_loss({'actor': p}, batch, key)[0])),
                                  (qfql.params['actor'],)),
        'critic ensemble forward': (jax.jit(lambda p: qfql.critic_values(p, obs, act)), (qfql.params['critic'],)),
        'critic TD loss fwd+bwd': (jax.jit(jax.grad(lambda p: jnp.mean(jnp.square(
            qfql.critic_values(p, obs, act) - batch['rewards'])))), (qfql.params['critic'],)),
        'critic grad wrt action': (jax.jit(jax.grad(lambda a, p: qfql.critic_values(p, obs, a).mean())),
                                   (act, qfql.params['critic'])),
        'Adam+Polyak, QFQL params': (qfql_adam, qfql_adam_args),
        'Adam+Polyak, FQL params': (fql_adam, fql_adam_args),
    }
    ms = block_medians_ms(blocks, max(5, sizes.train_rounds))
    k = qfql.config.flow_steps
    fwd, bc, cf, ctd, cda = (ms['actor forward (1 net pass)'], ms['actor BC loss fwd+bwd'],
                             ms['critic ensemble forward'], ms['critic TD loss fwd+bwd'], ms['critic grad wrt action'])
    critic_part = cf + ctd                      # target critic on (s', a') + TD fwd/bwd
    composed = {
        'QFQL onestep': bc + fwd + critic_part + ms['Adam+Polyak, QFQL params'],
        'QFQL flow': bc + k * fwd + critic_part + ms['Adam+Polyak, QFQL params'],
        # FQL: flow BC + K-step distillation target + one-step policy fwd/bwd (same size as the BC
        # net) + dQ/da through the critic + one-step target action + the same critic part.
        'FQL': bc + k * fwd + bc + cda + fwd + critic_part + ms['Adam+Polyak, FQL params'],
    }
    values = {f'{name} ms': round(v, 2) for name, v in ms.items()}
    values.update({f'composed {name} ms/update': round(v, 1) for name, v in composed.items()})
    values['composed ratio FQL/QFQL flow'] = round(composed['FQL'] / composed['QFQL flow'], 2)
    values['composed ratio FQL/QFQL onestep'] = round(composed['FQL'] / composed['QFQL onestep'], 2)
    values['critic share of QFQL onestep'] = round(critic_part / composed['QFQL onestep'], 2)
    values['K-step target share of FQL'] = round(k * fwd / composed['FQL'], 2)
    values['K-step target share of QFQL flow'] = round(k * fwd / composed['QFQL flow'], 2)
    # The next step for 1a: the most target Euler steps whose composed update is still 1.5x faster than FQL.
    fixed = composed['QFQL flow'] - k * fwd
    values['most target_flow_steps with composed ratio >= 1.5'] = int((composed['FQL'] / 1.5 - fixed) // fwd)
    report.rows.append(Row('1p', f'profile: update building blocks at {report.preset} scale (ms, interleaved)', values,
                           note='composed = sum of the blocks each update runs; the composed ratios bound '
                                'figure 1 at equal network sizes'))


def figure_scan(report: Report, sizes: Sizes, data) -> None:
    """Figure 2: one lax.scan over N updates (device sampling) vs N jitted calls (host sampling)."""
    n = max(sizes.train_chunk, 10)   # per-call dispatch needs enough calls to show
    host = {k: np.asarray(v) for k, v in data.items()}
    rng = np.random.default_rng(0)
    scan = _scan_fn()
    agents = {'scan': make_agent('qfql', 0, data['observations'][:2], data['actions'][:2], report.preset)}
    agents['per-call'] = agents['scan']
    batch_size = agents['scan'].config.batch_size
    keys = iter(jax.random.split(jax.random.PRNGKey(2), 10_000))

    def run_scan():
        agents['scan'] = _block(scan(agents['scan'], data, next(keys), n))[0]

    def run_calls():
        agent = agents['per-call']
        for _ in range(n):
            idx = rng.integers(0, host['observations'].shape[0], batch_size)
            agent, _ = agent.update({k: v[idx] for k, v in host.items()})
        agents['per-call'] = _block(agent)

    run_scan()
    run_calls()
    seconds = interleaved_medians({'scan': run_scan, 'per-call': run_calls}, sizes.train_rounds)
    values = {f'scan of {n} updates/s': round(n / seconds['scan'], 2),
              'one call per update, host sampling updates/s': round(n / seconds['per-call'], 2)}
    report.rows.append(Row('2', f'{n} updates per call (lax.scan, device sampling) vs per-update calls', values,
                           seconds['per-call'] / seconds['scan'], 'report (matters most on GPU)'))


def _seed_agents(preset: str, num_seeds: int, ex_obs, ex_act):
    """QFQL agents for seeds 0..M-1 stacked along a leading axis, as harness.run builds them."""
    return create_agents(QFQLAgent, range(num_seeds), ex_obs, ex_act, resolve_config(preset))


def figure_seeds(report: Report, sizes: Sizes, data, num_seeds: int) -> None:
    """Figure 3: M seeds vmapped in one call vs M sequential single-seed calls."""
    ex_obs, ex_act = data['observations'][:2], data['actions'][:2]
    n = sizes.train_chunk
    vmapped = {'agents': _seed_agents(report.preset, num_seeds, ex_obs, ex_act)}
    singles = [make_agent('qfql', seed, ex_obs, ex_act, report.preset) for seed in range(num_seeds)]
    scan = _scan_fn()
    vscan = make_chunk_fn(n)
    keys = iter(jax.random.split(jax.random.PRNGKey(4), 10_000))

    def run_vmapped():
        vmapped['agents'] = _block(vscan(vmapped['agents'], data, jax.random.split(next(keys), num_seeds)))[0]

    def run_sequential():
        for i in range(num_seeds):
            singles[i] = _block(scan(singles[i], data, next(keys), n))[0]

    run_vmapped()
    run_sequential()
    seconds = interleaved_medians({'vmap': run_vmapped, 'sequential': run_sequential}, sizes.train_rounds)
    total = num_seeds * n
    values = {f'{num_seeds} seeds vmapped, aggregate updates/s': round(total / seconds['vmap'], 2),
              f'{num_seeds} seeds sequential, aggregate updates/s': round(total / seconds['sequential'], 2)}
    report.rows.append(Row('3', f'{num_seeds} seeds in parallel (vmap) vs sequential', values,
                           seconds['sequential'] / seconds['vmap'], 'report'))


def figure_sampling(report: Report, sizes: Sizes, data, num_envs: int = 50) -> None:
    """Figure 4: one batched guided action for `num_envs` envs at β = 1 vs β = 0 (no ∇Q)."""
    agent = make_agent('qfql', 0, data['observations'][:2], data['actions'][:2], report.preset)
    obs = data['observations'][:num_envs]
    keys = iter(jax.random.split(jax.random.PRNGKey(5), 10_000))
    calls = {'beta=1': lambda: _block(agent.sample_actions(obs, next(keys), 1.0)),
             'beta=0': lambda: _block(agent.sample_actions(obs, next(keys), 0))}
    for call in calls.values():
        call()
    seconds = interleaved_medians(calls, sizes.sample_rounds)
    ratio = seconds['beta=1'] / seconds['beta=0']
    values = {'beta=1 ms/action batch': round(seconds['beta=1'] * 1e3, 3),
              'beta=0 ms/action batch': round(seconds['beta=0'] * 1e3, 3)}
    report.rows.append(Row('4', f'guided sampling, {num_envs} envs, K={agent.config.flow_steps}, beta=1 vs beta=0',
                           values, ratio, '<= 3x', ratio <= 3.0))
    report.rows.append(_sampling_profile(agent, obs, sizes))


def _sampling_profile(agent, obs, sizes: Sizes) -> Row:
    """Figure 4p: one guided Euler step's blocks at the sampling batch size. Per step, β = 0 runs the
    actor once; β > 0 adds ∇_a of the ensemble-mean Q (a forward and a backward pass per member)."""
    c = agent.config
    action = jnp.zeros((obs.shape[0], agent.action_dim), jnp.float32)
    times = jnp.zeros((obs.shape[0], 1), jnp.float32)
    # One member as a plain MLP: an ensemble of one under nn.vmap runs ≈ 25 % slower on XLA:CPU.
    one_member = MLP(c.critic_hidden, 1, c.critic_layer_norm)
    (stacked,) = agent.params['critic'].values()
    first_member = jax.tree_util.tree_map(lambda x: x[0], stacked)
    blocks = {
        'actor forward': (jax.jit(lambda p, a: agent.velocity_fn(p)(obs, a, times)), (agent.params['actor'], action)),
        'critic ensemble forward': (jax.jit(lambda p, a: agent.critic_values(p, obs, a)),
                                    (agent.params['critic'], action)),
        'grad_a of ensemble-mean Q': (jax.jit(jax.grad(lambda a, p: agent.critic_values(p, obs, a).mean(0).sum())),
                                      (action, agent.params['critic'])),
        'grad_a of one member': (jax.jit(jax.grad(
            lambda a, p: one_member.apply({'params': p}, jnp.concatenate([obs, a], axis=-1)).sum())),
            (action, first_member)),
    }
    ms = block_medians_ms(blocks, max(5, sizes.train_rounds))
    values = {f'{name} ms': round(v, 3) for name, v in ms.items()}
    actor = ms['actor forward']
    values['composed ratio, ensemble-mean guidance'] = round(1 + ms['grad_a of ensemble-mean Q'] / actor, 2)
    values['composed ratio, one-member guidance'] = round(1 + ms['grad_a of one member'] / actor, 2)
    return Row('4p', f'profile: one guided Euler step, {obs.shape[0]} envs (ms, interleaved)', values,
               note='composed = (actor + grad_a Q) / actor per step: the ceiling of figure 4 at these network sizes')


def figure_rollouts(report: Report, sizes: Sizes, task, num_workers: int = 2) -> None:
    """Figure 5: vectorised evaluation (worker processes, one batched policy call per step) vs one
    env in a loop, both driven by the same jitted QFQL sampler (random init: speed, not skill)."""
    beta = 1.0
    agent = make_agent('qfql', 0, np.zeros((1, report.obs_dim), np.float32),
                       np.zeros((1, report.act_dim), np.float32), report.preset)
    keys = iter(jax.random.split(jax.random.PRNGKey(6), 1_000_000))

    def policy(observations):
        actions, _ = agent.sample_actions(jnp.asarray(observations), next(keys), beta)
        return np.asarray(actions)

    steps = sizes.rollout_steps
    policy_seconds = {'vector': 0.0}
    single_env = _make_single_env(task)
    envs = make_eval_envs(task, sizes.rollout_envs, num_workers=num_workers)
    try:
        def run_vector():
            observations = envs.reset(list(range(envs.num_envs)))
            spent = 0.0
            start = time.perf_counter()
            for _ in range(steps):
                t = time.perf_counter()
                actions = policy(observations)
                spent += time.perf_counter() - t
                observations = envs.step(actions).observations
            policy_seconds['vector'] += spent
            return time.perf_counter() - start

        def run_single():
            observation, _ = single_env.reset(seed=0)
            start = time.perf_counter()
            for _ in range(steps):
                action = policy(np.asarray(observation, np.float32)[None])[0]
                observation, *_ = single_env.step(action)
            return time.perf_counter() - start

        # Warm-up compiles both batch shapes; the reset in each round is outside the timing.
        policy(np.zeros((sizes.rollout_envs, report.obs_dim), np.float32))
        policy(np.zeros((1, report.obs_dim), np.float32))
        vector_times, single_times = [], []
        for _ in range(sizes.rollout_rounds):
            vector_times.append(run_vector())
            single_times.append(run_single())
    finally:
        envs.close()
        single_env.close()
    vector_sps = envs.num_envs * steps / statistics.median(vector_times)
    single_sps = steps / statistics.median(single_times)
    ratio = vector_sps / single_sps
    policy_share = policy_seconds['vector'] / sum(vector_times)
    report.rows.append(Row(
        '5', f'rollouts on {task.name}: {envs.num_envs} envs in {num_workers} workers vs 1 env in a loop',
        {'vectorised env steps/s': round(vector_sps, 1), 'single env steps/s': round(single_sps, 1),
         'share of vectorised eval time in the policy': round(policy_share, 3)},
        ratio, f'>= 1.7x on {num_workers} cores', ratio >= 1.7,
        note=f'policy: random-init QFQL ({report.preset}), beta={beta}, one jitted call per env step'))


def figure_gpu(report: Report, sizes: Sizes, data) -> None:
    """Figure 6 (GPU only): single-seed updates/s, 1M-update wall time, 8 vmapped seeds."""
    if report.backend != 'gpu':
        report.rows.append(Row('6', 'GPU: updates/s, 1M-update wall time, 8 seeds vmapped', {},
                               None, '>= 3000 updates/s; 1M updates <= 6 min', None,
                               note=f'not measured: JAX backend is {report.backend}, no GPU in this session'))
        return
    ex_obs, ex_act = data['observations'][:2], data['actions'][:2]
    scan = _scan_fn()
    agent = make_agent('qfql', 0, ex_obs, ex_act, report.preset)
    n = sizes.gpu_chunk
    keys = iter(jax.random.split(jax.random.PRNGKey(7), 10_000))
    agent = _block(scan(agent, data, next(keys), n))[0]
    chunk_times = []
    for _ in range(3):
        start = time.perf_counter()
        agent = _block(scan(agent, data, next(keys), n))[0]
        chunk_times.append(time.perf_counter() - start)
    ups = n / statistics.median(chunk_times)
    million = 1_000_000
    if sizes.gpu_full_run:
        start = time.perf_counter()
        for _ in range(million // n):
            agent = scan(agent, data, next(keys), n)[0]
        _block(agent)
        million_s, how = time.perf_counter() - start, 'measured'
    else:
        million_s, how = million / ups, 'extrapolated from chunks'
    seeds = 8
    agents = _seed_agents(report.preset, seeds, ex_obs, ex_act)
    vscan = make_chunk_fn(n)
    agents = _block(vscan(agents, data, jax.random.split(next(keys), seeds)))[0]
    start = time.perf_counter()
    agents = _block(vscan(agents, data, jax.random.split(next(keys), seeds)))[0]
    seeds_ups = seeds * n / (time.perf_counter() - start)
    report.rows.append(Row('6a', 'GPU single-seed train updates/s (QFQL flow target)',
                           {'updates/s': round(ups, 1)}, None, '>= 3000 updates/s', ups >= 3000))
    report.rows.append(Row('6b', f'GPU wall time of 1M updates ({how})', {'seconds': round(million_s, 1)},
                           None, '<= 360 s', million_s <= 360))
    report.rows.append(Row('6c', f'GPU {seeds} seeds vmapped, aggregate updates/s', {'updates/s': round(seeds_ups, 1)},
                           seeds_ups / ups, 'report (ratio vs single seed)'))


def figure_memory(report: Report, sizes: Sizes) -> None:
    """Figure 7: peak RSS of a child process that trains at this preset on a 1M-transition dataset."""
    command = [sys.executable, '-m', 'tools.bench', '--memory-child',
               f'{report.obs_dim},{report.act_dim},{sizes.memory_updates}', '--preset', report.preset]
    done = subprocess.run(command, capture_output=True, text=True, cwd=os.getcwd())
    lines = [line for line in done.stdout.splitlines() if line.startswith(MEMORY_MARK)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ['no output'])[-1]
        report.rows.append(Row('7', 'peak RSS of a training process', {}, note=f'child failed: {tail}'))
        return
    result = json.loads(lines[-1][len(MEMORY_MARK):])
    values = {'peak RSS MiB': round(result['peak_rss_mib'], 1), 'dataset MiB': round(result['dataset_mib'], 1),
              'updates run': result['updates']}
    values.update({f'RSS {name} MiB': round(v, 1) for name, v in result['rss_mib'].items()})
    if result.get('peak_device_mib') is not None:
        values['peak device MiB'] = round(result['peak_device_mib'], 1)
    report.rows.append(Row('7', f'peak RSS, {report.preset}-scale QFQL training, 1M-transition dataset on device',
                           values, note='child process; RSS includes the JAX runtime and compiled code'))


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
    data = _block(synthetic_dataset(MEMORY_DATASET_SIZE, obs_dim, act_dim))
    phases['after dataset'] = process.memory_info().rss
    agent = make_agent('qfql', 0, data['observations'][:2], data['actions'][:2], preset)
    scan = _scan_fn()
    chunk = min(updates, 50)
    done, key = 0, jax.random.PRNGKey(0)
    while done < updates:
        key, sub = jax.random.split(key)
        agent = _block(scan(agent, data, sub, chunk))[0]
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


# ---- output -------------------------------------------------------------------------------------

def format_table(report: Report) -> str:
    def fmt(x):
        return f'{x:g}' if isinstance(x, (int, float)) else str(x)
    lines = [f'backend: {report.backend} ({report.device}); mode: {report.mode}; preset: {report.preset}; '
             f'task: {report.task} (obs {report.obs_dim}, act {report.act_dim})',
             f'{"fig":4s} {"measurement":70s} {"ratio":>7s}  {"target":28s} status']
    for row in report.rows:
        ratio = '' if row.ratio is None else f'{row.ratio:.2f}x'
        lines.append(f'{row.figure:4s} {row.what[:70]:70s} {ratio:>7s}  {row.target[:28]:28s} {row.status()}')
        for name, value in row.values.items():
            lines.append(f'       {name}: {fmt(value)}')
        if row.note:
            lines.append(f'       note: {row.note}')
    return '\n'.join(lines)


FIGURES = ('1', '2', '3', '4', '5', '6', '7')


def _dims(text: str) -> tuple[int, int]:
    parts = text.split(',')
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected two positive integers OBS,ACT such as 37,5, got '{text}'")
    return int(parts[0]), int(parts[1])


def parse_args(argv):
    parser = OneLineArgumentParser(prog='python -m tools.bench', description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='few iterations; under 5 minutes on a 2-core CPU')
    parser.add_argument('--json', metavar='PATH', help='also write the rows as JSON to PATH')
    parser.add_argument('--task', default='cube-double', help='task whose obs/action sizes and env are used')
    parser.add_argument('--preset', default='paper', help='agent preset (paper = 4x512, batch 256, 2 critics, K=10)')
    parser.add_argument('--figures', default=','.join(FIGURES), help='comma-separated subset of 1-7')
    parser.add_argument('--dims', type=_dims, metavar='OBS,ACT',
                        help="observation and action sizes instead of reading them from the task's env, e.g. 37,5 "
                             '(for machines without mujoco/ogbench; figure 5 still needs the env)')
    parser.add_argument('--memory-child', help=argparse.SUPPRESS)   # internal: figure 7's child process
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.preset not in PRESETS:
        raise UsageError(f'unknown preset {args.preset!r}; choose one of {sorted(PRESETS)}')
    if args.memory_child:
        return memory_child(args.memory_child, args.preset)
    figures = [f.strip() for f in args.figures.split(',') if f.strip()]
    unknown = sorted(set(figures) - set(FIGURES))
    if unknown:
        raise UsageError(f'unknown figure(s) {unknown}; choose from {",".join(FIGURES)}')
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        raise UsageError(f'--json {args.json}: its folder does not exist')
    task = resolve_task(args.task)
    sizes = QUICK if args.quick else FULL
    backend = jax.default_backend()
    if backend != 'cpu':
        # An accelerator update takes well under a millisecond: time long scans, or dispatch dominates.
        sizes = dataclasses.replace(sizes, train_chunk=max(sizes.train_chunk, 200))
    obs_dim, act_dim = args.dims or task_dims(task)
    report = Report(backend=backend, device=str(jax.devices()[0]), mode='quick' if args.quick else 'full',
                    preset=args.preset, task=task.name, obs_dim=obs_dim, act_dim=act_dim)
    print(f'JAX backend: {backend} ({jax.devices()[0]}), {os.cpu_count()} CPU cores visible', flush=True)
    if args.dims:
        print(f'Sizes from --dims: obs {obs_dim}, act {act_dim} (not read from the {task.name} env).', flush=True)
    if backend == 'cpu':
        print('No GPU: figure 6 (GPU updates/s, 1M-update wall time, 8 seeds) is not measured.', flush=True)
    data = _block(synthetic_dataset(sizes.dataset_size, obs_dim, act_dim))
    steps = [('1', lambda: figure_training(report, sizes, data)),
             ('1p', lambda: figure_profile(report, sizes, data)),
             ('2', lambda: figure_scan(report, sizes, data)),
             ('3', lambda: figure_seeds(report, sizes, data, 8 if backend == 'gpu' else 4)),
             ('4', lambda: figure_sampling(report, sizes, data)),
             ('5', lambda: figure_rollouts(report, sizes, task)),
             ('6', lambda: figure_gpu(report, sizes, data)),
             ('7', lambda: figure_memory(report, sizes))]
    start = time.perf_counter()
    for number, run in steps:
        if number.rstrip('p') in figures:
            t = time.perf_counter()
            run()
            print(f'[figure {number} done in {time.perf_counter() - t:.0f} s]', flush=True)
    print(format_table(report))
    print(f'total bench time: {time.perf_counter() - start:.0f} s')
    if args.json:
        write_json_atomic(args.json, asdict(report))
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
