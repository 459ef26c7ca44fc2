"""`train(config)`: one training run from the dataset to summary.json, read top to bottom.

    dataset -> one agent per seed -> chunks of updates (checkpoint, periodic evaluation)
            -> final evaluation at every β -> plots, summary.json

Seeds: one agent per seed is built with jax.vmap over PRNG keys, and one jitted call advances all
of them by `chunk` updates (jax.vmap over agent.update_many, which samples its batches on the
device with lax.scan). Parameters therefore carry a leading seed axis everywhere in the harness.

Determinism: the key of the chunk that starts at update `step` is fold_in(PRNGKey(seed), step),
so it depends only on the seed and the position, and the rest of the randomness lives in the agent
state that checkpoints save. Chunks always start at multiples of `chunk` (evaluations and
checkpoints are placed on chunk boundaries), so a run stopped after a checkpoint and resumed with
--resume performs exactly the same computations as one that was never stopped.

Crash safety: one process at a time trains into a run folder (its lock is held from the first step
to the last); --resume refuses a dataset other than the one the run trained on (config.json records
its sha256); a full disk ends with one line saying what works next (the same command while the
folder has no config.json yet, --resume after).
"""
from __future__ import annotations

import dataclasses
import errno
import gc
import json
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from agents import AGENTS
from agents.chunks import chunk_starts
from agents.training import create_agents
from envs.datasets import check_against_env, dataset_digest, ensure_dataset, load_task_dataset
from envs.vector import make_task_env
from harness.checkpoints import restore_newest_intact, save_checkpoint, step_folders
from harness.errors import UsageError
from harness.files import write_json_atomic
from harness.outputs import (Timer, append_jsonl, fallback_warning, finish_plots, fmt_seconds, periodic_points,
                             print_result, rows_by_step, run_folder_lock, truncate_logs_after, write_summary)
from harness.page import write_page
from harness.scoring import evaluate_betas, make_eval_pool
from harness.tracking import make_tracker
from harness.watch import DivergenceWatch, q_bounds


def train(config) -> int:
    """Train (or continue, `config.mode == 'resume'`) and evaluate; returns the exit status."""
    try:
        with run_folder_lock(config.out):
            return _train(config)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        follow_up = (f'continue with --resume {config.out}' if (config.out / 'config.json').is_file() else
                     'run the same command again')
        raise UsageError(f'{error.strerror or error} writing {error.filename or config.out}; free some space, '
                         f'then {follow_up} (nothing half-written is ever loaded)') from None


def _train(config) -> int:
    timer = Timer()
    started = time.perf_counter()
    dataset, digest = load_dataset(config, timer)
    start = time.perf_counter()
    agents = create_agents(AGENTS[config.agent], config.seeds, dataset['observations'][:1], dataset['actions'][:1],
                           config.agent_config)
    if config.mode == 'resume' and step_folders(config.out / 'checkpoints'):
        obs_dim, act_dim = dataset['observations'].shape[1], dataset['actions'].shape[1]
        agents, config = restore_for_resume(config, agents, f'{config.task.env_id} (obs {obs_dim}, action '
                                                            f'{act_dim}, preset {config.preset})')
    config = dataclasses.replace(config, dataset_sha256=digest)
    timer.add('setup', time.perf_counter() - start)
    out = config.out
    write_run_folder(config)                     # everything is checked: from here on the folder is written
    tracker = make_tracker(config)

    watch = DivergenceWatch(config.seeds, q_bounds(dataset['rewards'], config.agent_config.discount))
    warnings = {'q_out_of_range': 0, 'critic_grad_growth': 0}
    for step, infos in rows_by_step(out / 'metrics.jsonl'):   # a resumed run's watch continues where it stopped
        for kind, _ in watch.check(step, infos):
            warnings[kind] += 1
    trainer = Trainer(agents, dataset, config.seeds)
    # The trainer holds the dataset on the device; free the host copy now rather than at the next
    # garbage collection, or a 1M-transition run holds the dataset twice.
    del dataset
    gc.collect()

    envs, last_eval = None, '—'
    periodic = periodic_points(out)
    bar = tqdm(total=config.steps, initial=config.start_step, unit='upd', dynamic_ncols=True,
               desc=f'{config.task.name} {config.agent}', file=sys.stdout, mininterval=1.0)
    try:
        if _periodic_evaluation_was_interrupted(config, periodic):
            envs = make_eval_pool(config, timer)
            last_eval = periodic_evaluation(config, trainer.agents, envs, config.start_step, timer, bar, periodic,
                                            tracker)
        for n, (first, count) in enumerate(chunk_boundaries(config.start_step, config.steps, config.chunk)):
            report = trainer.run_chunk(first, count)
            timer.add('compile', report.compile_seconds)
            timer.add('training', report.seconds)
            rate = count / max(report.seconds, 1e-9)
            rows = [{'step': report.step, 'seed': seed, 'updates_per_s': rate, **info}
                    for seed, info in zip(config.seeds, report.infos)]
            append_jsonl(out / 'metrics.jsonl', rows)
            tracker.log_training(report.step, rows)
            for kind, message in watch.check(report.step, report.infos):
                warnings[kind] += 1
                if sum(warnings.values()) <= 10:
                    bar.write(f'warning: {message} (Appendix A of the paper saw this before guidance failed)')
            if n == 0:
                announce_eta(config, bar, report, rate)
            bar.set_postfix_str(f'{rate:,.0f} upd/s, last eval: {last_eval}', refresh=False)
            bar.update(count)
            at_end = report.step == config.steps
            if config.checkpoint_every and report.step % config.checkpoint_every == 0 or at_end:
                start = time.perf_counter()
                save_checkpoint(out / 'checkpoints', report.step, trainer.agents, checkpoint_meta(config))
                timer.add('checkpointing', time.perf_counter() - start)
            if config.eval_every and report.step % config.eval_every == 0 and not at_end:
                envs = envs or make_eval_pool(config, timer)
                last_eval = periodic_evaluation(config, trainer.agents, envs, report.step, timer, bar, periodic,
                                                tracker)
                bar.set_postfix_str(f'{rate:,.0f} upd/s, last eval: {last_eval}')
        bar.close()
        envs = envs or make_eval_pool(config, timer)
        final, selection_only = evaluate_betas(config, trainer.agents, envs, config.final_betas, config.steps, 'final',
                                               out, timer, videos=True, bar=None)
        tracker.log_evaluation(config.steps, 'final', final)
    finally:
        bar.close()
        if envs is not None:
            envs.close()

    if periodic:
        at_beta = next((r for r in final if r['beta'] == config.beta), final[0])
        periodic.append((config.steps, at_beta['success_rate'], *at_beta['ci95']))
    start = time.perf_counter()
    finish_plots(config, out, final, periodic)
    timer.add('writing', time.perf_counter() - start)
    timer.add('total', time.perf_counter() - started)
    summary = write_summary(config, out, final, timer, selection_only,
                            extra={'divergence_warnings': {**warnings, **fallback_warning(final)}})
    tracker.finish(summary, out)
    print_result(out, final, timer, selection_only)
    print(f'page: {write_page(out)}  (python -m harness.view {out})')
    return 0


# ---- the steps of `train` ------------------------------------------------------------------------------
def load_dataset(config, timer: Timer) -> tuple[dict, str]:
    """The task's dataset, checked against the env's sizes, and its sha256. A missing one is downloaded
    (--download) or regenerated offline with OGBench's procedure; a present but broken one fails with
    one line, and so does, on --resume, one that is not the file the run trained on."""
    start = time.perf_counter()
    ensure_dataset(config.task, config.data_dir, episodes=config.dataset_episodes, download=config.download)
    dataset = load_task_dataset(config.task, config.data_dir, reward=config.reward)
    digest = dataset_digest(config.task, config.data_dir)
    if config.mode == 'resume' and config.dataset_sha256 not in (None, digest):
        raise UsageError(f'--resume {config.out}: its dataset {config.task.dataset_name} in {config.data_dir} changed '
                         f'since the run started (sha256 {digest[:12]}, trained on {config.dataset_sha256[:12]}); '
                         'put the original file back, or start a new run on this one')
    env = make_task_env(config.task.env_id)
    check_against_env(dataset, config.task, env.observation_space.shape[0], env.action_space.shape[0], config.data_dir)
    env.close()
    horizon = config.agent_config.horizon
    if horizon > 1:
        dataset['chunk_starts'] = chunk_starts(dataset['observations'], dataset['next_observations'], horizon)
        if not len(dataset['chunk_starts']):
            raise UsageError(f'--horizon {horizon}: no episode of {config.task.dataset_name} is {horizon} transitions '
                             'long; choose a shorter horizon')
    timer.add('dataset', time.perf_counter() - start)
    return dataset, digest


def restore_for_resume(config, template, expected_what: str):
    """The newest intact checkpoint's state and the config that continues from it; damaged ones are
    skipped with a warning each (`restore_newest_intact`), and when none is left the line says how to
    go on: without checkpoints --resume trains the run again from update 0."""
    root = config.out / 'checkpoints'
    found = restore_newest_intact(root, template, expected_what)
    if found is None:
        raise UsageError(f'--resume {config.out}: every checkpoint in {root} is damaged; remove them '
                         f'(rm -r {root}/step_*) to train this run again from update 0 with --resume {config.out}, '
                         'or start the original command again with a new --out')
    step, path, agents = found
    return agents, dataclasses.replace(config, checkpoint=path, start_step=step)


def write_run_folder(config) -> None:
    """Create the run folder and its config.json; a resumed run drops the log lines written after its
    checkpoint and records the evaluation settings it changed."""
    out = config.out
    for sub in ('checkpoints', 'eval', 'videos', 'plots'):
        (out / sub).mkdir(parents=True, exist_ok=True)
    if config.mode == 'train':
        write_json_atomic(out / 'config.json', config.to_json())
        return
    truncate_logs_after(out, config.start_step)
    saved = json.loads((out / 'config.json').read_text())
    saved['steps'] = config.steps
    saved['dataset_sha256'] = config.dataset_sha256         # a run from before digests were recorded gets one
    changed = {k: v for k, v in config.evaluation_settings().items() if saved.get(k) != v}
    saved.update(changed)
    saved.setdefault('resumed', []).append({'from_step': config.start_step, 'command': config.command,
                                            'changed': sorted(changed)})
    write_json_atomic(out / 'config.json', saved)
    print(f'resuming {out} from update {config.start_step} of {config.steps}', flush=True)


def checkpoint_meta(config) -> dict:
    return {'task': dataclasses.asdict(config.task), 'agent': config.agent, 'preset': config.preset,
            'config': dataclasses.asdict(config.agent_config), 'seeds': config.seeds, 'beta': config.beta,
            'reward': config.reward}


def _periodic_evaluation_was_interrupted(config, periodic: list) -> bool:
    """Killed during the periodic evaluation that follows a checkpoint: it runs again before training goes on."""
    return (config.mode == 'resume' and bool(config.eval_every) and 0 < config.start_step < config.steps
            and config.start_step % config.eval_every == 0 and config.start_step not in [p[0] for p in periodic])


def periodic_evaluation(config, agents, envs, step: int, timer: Timer, bar, periodic: list, tracker) -> str:
    """Evaluate at the run's β during training; appends (step, success, ci) to `periodic`."""
    [r], _ = evaluate_betas(config, agents, envs, [config.beta], step, 'periodic', config.out, timer, videos=False,
                            bar=bar)
    tracker.log_evaluation(step, 'periodic', [r])
    periodic.append((step, r['success_rate'], *r['ci95']))
    return f"{r['success_rate']:.2f} @ {step}"


def announce_eta(config, bar, report, rate: float) -> None:
    """Print the measured speed and the ETA before the long part of the run; on a CPU with the paper
    preset say that it takes hours and name --preset small (but go on: the user asked for it)."""
    remaining = config.steps - report.step
    eta = remaining / max(rate, 1e-9)
    periodic = len(range(config.eval_every, config.steps, config.eval_every)) if config.eval_every else 0
    evals = periodic + len(config.final_betas)
    bar.write(f'measured: compiled in {report.compile_seconds:.1f}s, {rate:,.0f} updates/s for {len(config.seeds)} '
              f'seed(s) -> training ETA {fmt_seconds(eta)} for {remaining:,} more updates '
              f'(+ {evals} evaluation(s) of {config.eval_episodes} episodes per seed)')
    if jax.default_backend() == 'cpu' and config.preset == 'paper' and eta > 3600:
        bar.write(f'note: no GPU found (JAX runs on the CPU): the paper preset needs about {fmt_seconds(eta)} here. '
                  '`--preset small` trains a smaller model in minutes. Continuing as asked.')


# ---- chunks of updates ---------------------------------------------------------------------------------
def chunk_keys(seeds: Sequence[int], step: int) -> jax.Array:
    """[S, 2] keys of the chunk starting at `step`: a function of (seed, step) only."""
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(int(s)), int(step)) for s in seeds])


def make_chunk_fn(num_updates: int) -> Callable:
    """jit(vmap over seeds of agent.update_many(dataset, key, num_updates)); dataset is shared."""
    def run(agents, dataset, keys):
        return jax.vmap(lambda agent, key: agent.update_many(dataset, key, num_updates))(agents, keys)
    return jax.jit(run)


def chunk_boundaries(start: int, end: int, chunk: int) -> list[tuple[int, int]]:
    """[(first, count)] covering [start, end) with pieces that end on multiples of `chunk`."""
    pieces, step = [], start
    while step < end:
        stop = min((step // chunk + 1) * chunk, end)
        pieces.append((step, stop - step))
        step = stop
    return pieces


@dataclass
class ChunkReport:
    step: int                 # updates done after this chunk
    infos: list[dict]         # per seed: metric name -> float
    seconds: float            # wall time of the chunk (without compilation)
    compile_seconds: float    # compilation time spent for this chunk size (0 when cached)


class Trainer:
    """Runs chunks of updates for stacked agents; `train` decides when to evaluate and checkpoint."""

    def __init__(self, agents: Any, dataset: dict, seeds: Sequence[int]):
        self.agents = agents
        self.dataset = {k: jnp.asarray(v) for k, v in dataset.items()}
        self.seeds = list(seeds)
        self._compiled: dict[int, Any] = {}

    def _compiled_for(self, num_updates: int, keys) -> tuple[Any, float]:
        if num_updates in self._compiled:
            return self._compiled[num_updates], 0.0
        start = time.perf_counter()
        compiled = make_chunk_fn(num_updates).lower(self.agents, self.dataset, keys).compile()
        self._compiled[num_updates] = compiled
        return compiled, time.perf_counter() - start

    def run_chunk(self, step: int, num_updates: int) -> ChunkReport:
        keys = chunk_keys(self.seeds, step)
        compiled, compile_seconds = self._compiled_for(num_updates, keys)
        start = time.perf_counter()
        agents, info = compiled(self.agents, self.dataset, keys)
        info = jax.device_get(info)
        self.agents = agents
        seconds = time.perf_counter() - start
        infos = [{k: float(np.asarray(v)[i]) for k, v in info.items()} for i in range(len(self.seeds))]
        return ChunkReport(step + num_updates, infos, seconds, compile_seconds)
