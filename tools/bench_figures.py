"""The figures of `python -m tools.bench`: what each one compares, side by side in one process, and
the target it is held to (the numbering is the speed table's in docs/speed.md; tools/bench.py lists them)."""
from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agents import QFQLAgent, make_agent, resolve_config
from agents.losses import polyak_update
from agents.networks import MLP
from agents.training import make_optimizer, sample_batch
from envs.vector import make_eval_envs
from agents.training import create_agents
from harness.train import make_chunk_fn
from tools.bench_measure import (MEMORY_MARK, Report, Row, Sizes, block_medians_ms, interleaved_medians,
                                 make_single_env, ready, scan_fn)

# Figure 1's variants: same config (networks, batch, K) except QFQL's target action. The last QFQL
# variant is the opt-in next step for 1a: the flow target with half the Euler steps (acting keeps K).
CHEAP_TARGET_STEPS = 5
CHEAP_TARGET = f'QFQL flow target, {CHEAP_TARGET_STEPS} steps'
EXPECTILE = 'QFQL expectile critic'
TRAIN_VARIANTS = {'QFQL flow target': ('qfql', {}), 'QFQL onestep target': ('qfql', {'target_action': 'onestep'}),
                  CHEAP_TARGET: ('qfql', {'target_flow_steps': CHEAP_TARGET_STEPS}),
                  EXPECTILE: ('qfql', {'critic': 'expectile'}),
                  'FQL': ('fql', {})}


def figure_training(report: Report, sizes: Sizes, data) -> None:
    """Figure 1: updates/s of FQL and of QFQL with each target action, interleaved."""
    ex_obs, ex_act = data['observations'][:2], data['actions'][:2]
    scan = scan_fn()
    agents = {name: make_agent(kind, 0, ex_obs, ex_act, report.preset, **kw)
              for name, (kind, kw) in TRAIN_VARIANTS.items()}
    keys = iter(jax.random.split(jax.random.PRNGKey(1), 10_000))

    def run(name):
        agents[name] = ready(scan(agents[name], data, next(keys), sizes.train_chunk))[0]

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
    batch = ready(sample_batch(data, jax.random.PRNGKey(9), qfql.config.batch_size))
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
    scan = scan_fn()
    agents = {'scan': make_agent('qfql', 0, data['observations'][:2], data['actions'][:2], report.preset)}
    agents['per-call'] = agents['scan']
    batch_size = agents['scan'].config.batch_size
    keys = iter(jax.random.split(jax.random.PRNGKey(2), 10_000))

    def run_scan():
        agents['scan'] = ready(scan(agents['scan'], data, next(keys), n))[0]

    def run_calls():
        agent = agents['per-call']
        for _ in range(n):
            idx = rng.integers(0, host['observations'].shape[0], batch_size)
            agent, _ = agent.update({k: v[idx] for k, v in host.items()})
        agents['per-call'] = ready(agent)

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
    scan = scan_fn()
    vscan = make_chunk_fn(n)
    keys = iter(jax.random.split(jax.random.PRNGKey(4), 10_000))

    def run_vmapped():
        vmapped['agents'] = ready(vscan(vmapped['agents'], data, jax.random.split(next(keys), num_seeds)))[0]

    def run_sequential():
        for i in range(num_seeds):
            singles[i] = ready(scan(singles[i], data, next(keys), n))[0]

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
    calls = {'beta=1': lambda: ready(agent.sample_actions(obs, next(keys), 1.0)),
             'beta=0': lambda: ready(agent.sample_actions(obs, next(keys), 0))}
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
    single_env = make_single_env(task)
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
    scan = scan_fn()
    agent = make_agent('qfql', 0, ex_obs, ex_act, report.preset)
    n = sizes.gpu_chunk
    keys = iter(jax.random.split(jax.random.PRNGKey(7), 10_000))
    agent = ready(scan(agent, data, next(keys), n))[0]
    chunk_times = []
    for _ in range(3):
        start = time.perf_counter()
        agent = ready(scan(agent, data, next(keys), n))[0]
        chunk_times.append(time.perf_counter() - start)
    ups = n / statistics.median(chunk_times)
    million = 1_000_000
    if sizes.gpu_full_run:
        start = time.perf_counter()
        for _ in range(million // n):
            agent = scan(agent, data, next(keys), n)[0]
        ready(agent)
        million_s, how = time.perf_counter() - start, 'measured'
    else:
        million_s, how = million / ups, 'extrapolated from chunks'
    seeds = 8
    agents = _seed_agents(report.preset, seeds, ex_obs, ex_act)
    vscan = make_chunk_fn(n)
    agents = ready(vscan(agents, data, jax.random.split(next(keys), seeds)))[0]
    start = time.perf_counter()
    agents = ready(vscan(agents, data, jax.random.split(next(keys), seeds)))[0]
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



SWEEP_BETAS = (0.0, 0.003, 0.01, 0.03, 0.1, 0.3)
SWEEP_SEEDS = 3
SWEEP_CHECKPOINT = 'artifacts/checkpoints/cube-single-small'
SEQUENTIAL_ENVS = 10   # the small preset's --eval-envs: the batch of the one-group-at-a-time path


def figure_sweep(report: Report, sizes: Sizes, slots_per_seed: int = 10) -> None:
    """Figure 8: a 6-β x 3-seed β sweep of the shipped cube-single checkpoint (its parameters under
    three seeds' sampler keys): episodes/s of one (β, seed) group after another through a pool of
    10 envs (the scheduling of the evaluation before the whole-sweep rollout) against every group in
    one rollout through 3 x `slots_per_seed` envs. Beside them, in the same interleaved rounds, the
    two limits: physics alone (random actions through the big pool's workers) and the sampler alone
    at the big pool's batch."""
    from harness.checkpoints import restore_checkpoint
    from harness.config import plan_run
    from harness.evaluate import EpisodeGroup, group_key, make_policy, rollout
    from harness.run import build_parser

    config = plan_run(build_parser().parse_args(['--checkpoint', SWEEP_CHECKPOINT, '--video-episodes', '0']))
    pool = make_eval_envs(config.task, SWEEP_SEEDS * slots_per_seed, success_timing=config.success_timing)
    small = make_eval_envs(config.task, SEQUENTIAL_ENVS, success_timing=config.success_timing)
    try:
        examples = (np.zeros((1, pool.observation_dim), np.float32), np.zeros((1, pool.action_dim), np.float32))
        one = restore_checkpoint(config.checkpoint, create_agents(QFQLAgent, config.seeds, *examples,
                                                                  config.agent_config), 'the shipped checkpoint')
        agents = jax.tree.map(lambda x: jnp.concatenate([x] * SWEEP_SEEDS), one)
        stacked, single = make_policy(agents, config.sampler), make_policy(one, config.sampler)
        groups = [EpisodeGroup('sweep', beta, index, sizes.sweep_episodes, 1_000_000, group_key(index, 0xE7A1))
                  for beta in SWEEP_BETAS for index in range(SWEEP_SEEDS)]
        episodes = len(groups) * sizes.sweep_episodes
        steps, shares = {}, []

        def sequential():
            count = 0
            for group in groups:
                (outcome,), _ = rollout(single, small, [dataclasses.replace(group, seed_index=0)], 1)
                count += sum(e['length'] for e in outcome.episodes)
            steps['sequential'] = count

        def batched():
            start = time.perf_counter()
            outcomes, timing = rollout(stacked, pool, groups, SWEEP_SEEDS)
            shares.append({k: v / (time.perf_counter() - start) for k, v in timing.items()})
            steps['batched'] = sum(e['length'] for o in outcomes for e in o.episodes)

        rng = np.random.default_rng(0)

        def physics():
            pool.reset(list(range(pool.num_envs)))
            for _ in range(pool.max_episode_steps):
                pool.step(rng.uniform(-1, 1, (pool.num_envs, pool.action_dim)).astype(np.float32))
            steps['physics'] = pool.num_envs * pool.max_episode_steps

        observations = np.zeros((SWEEP_SEEDS, slots_per_seed, pool.observation_dim), np.float32)
        keys = np.zeros((SWEEP_SEEDS, slots_per_seed, 2), np.uint32)
        indices = np.zeros((SWEEP_SEEDS, slots_per_seed), np.int32)
        betas = np.full((SWEEP_SEEDS, slots_per_seed), 0.1, np.float32)
        calls = 200

        def sampler():
            for step in range(calls):
                actions, _ = stacked(observations, keys, indices, indices + step, betas)
            np.asarray(actions)

        sampler()        # compiles the big batch; the first sequential round compiles the small one
        sequential()
        seconds = interleaved_medians({'sequential': sequential, 'batched': batched, 'physics': physics,
                                       'sampler': sampler}, sizes.sweep_rounds)
    finally:
        pool.close()
        small.close()
    batched_sps = steps['batched'] / seconds['batched']
    physics_sps = steps['physics'] / seconds['physics']
    ratio = seconds['sequential'] / seconds['batched']
    report.rows.append(Row(
        '8', f'β sweep of {len(SWEEP_BETAS)} βs x {SWEEP_SEEDS} seeds x {sizes.sweep_episodes} episodes on '
             f'{config.task.name}: one rollout ({pool.num_envs} envs) vs one (β, seed) after another '
             f'({SEQUENTIAL_ENVS} envs)',
        {'one rollout episodes/s': round(episodes / seconds['batched'], 2),
         'group after group episodes/s': round(episodes / seconds['sequential'], 2),
         'one rollout env steps/s': round(batched_sps, 1),
         'group after group env steps/s': round(steps['sequential'] / seconds['sequential'], 1),
         'physics alone env steps/s': round(physics_sps, 1),
         'physics alone / one rollout': round(physics_sps / batched_sps, 2),
         'sampler alone actions/s': round(calls * SWEEP_SEEDS * slots_per_seed / seconds['sampler'], 1),
         'one rollout: share of wall time in env steps (workers)': round(statistics.median(
             s['env_step_s'] for s in shares), 3),
         'one rollout: share of wall time in the sampler': round(statistics.median(s['sampling_s'] for s in shares), 3)},
        ratio, '>= 2.5x, and physics alone <= 1.5x one rollout',
        ratio >= 2.5 and physics_sps / batched_sps <= 1.5,
        note='the shipped checkpoint under 3 seeds\' sampler keys; both paths act with the same policy code; '
             'physics alone steps random actions, which touch the cube less than the policy does'))
