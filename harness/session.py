"""Carry out a checked `Plan` (harness/run.py): dataset -> training -> evaluations -> run folder.

Run folder (documented in the README, "Run folder"):
    config.json        every resolved setting (task, agent config, seeds, βs, intervals, command line)
    metrics.jsonl      one line per seed and chunk of updates: step, losses, Q statistics, grad norms
    eval.jsonl         one line per evaluation episode: phase (periodic/selection/final/sweep), step, beta, seed, success, ...
    summary.json       final success per β with intervals over seeds and episodes; timing; paths
    checkpoints/       step_<N>/ (orbax state + meta.json)
    eval/              guidance-*.npz: per env step and flow step ‖v‖, ‖∇Q‖, ‖β∇Q‖ (float16) and fallbacks
    videos/            beta<β>-seed<s>-ep<i>.mp4 with the guidance-norm strip under the frames
    plots/             training.png, guidance_norms.png, success_vs_beta.png, success_over_training.png
"""
from __future__ import annotations

import dataclasses
import gc
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

EVAL_KEY_SALT = 0xE7A1   # evaluation keys: fold_in(PRNGKey(seed), salt) -- the same noise for every β
SELECTION_KEY_SALT = 0x5E1E   # β-selection episodes draw other sampler noise too
FRAMES_PER_VIDEO = 100
RENDER_SIZE = 256


class Timer(defaultdict):
    """Seconds per phase: dataset, compile, training, evaluation, rendering, writing."""

    def __init__(self):
        super().__init__(float)

    def add(self, phase: str, seconds: float) -> None:
        self[phase] += seconds


def _append_jsonl(path: Path, rows) -> None:
    """Append whole lines (flushed); a crash can lose the tail but never leaves a partial JSON line mid-file."""
    text = ''.join(json.dumps(row) + '\n' for row in rows)
    with open(path, 'a') as handle:
        handle.write(text)
        handle.flush()


def _fmt_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'
    if seconds >= 60:
        return f'{seconds // 60}m{seconds % 60:02d}s'
    return f'{seconds}s'


def _load_dataset(plan, timer: Timer) -> dict:
    from envs.datasets import check_against_env, ensure_dataset, load_task_dataset
    from envs.vector import make_task_env
    start = time.perf_counter()
    # A missing dataset is downloaded (--download) or regenerated offline (OGBench's procedure,
    # envs/generate.py); a present but broken one fails in the load with its one-line error.
    ensure_dataset(plan.task, plan.data_dir, episodes=plan.dataset_episodes, download=plan.download)
    dataset = load_task_dataset(plan.task, plan.data_dir, reward=plan.reward)
    env = make_task_env(plan.task.env_id)
    check_against_env(dataset, plan.task, env.observation_space.shape[0], env.action_space.shape[0])
    env.close()
    timer.add('dataset', time.perf_counter() - start)
    return dataset


def _agent_class(name: str):
    from agents import AGENTS
    return AGENTS[name]


def _checkpoint_meta(plan) -> dict:
    return {'task': dataclasses.asdict(plan.task), 'agent': plan.agent, 'preset': plan.preset,
            'config': dataclasses.asdict(plan.config), 'seeds': plan.seeds, 'beta': plan.beta, 'reward': plan.reward}


def execute(plan) -> int:
    """Run the plan; returns the exit status. Ctrl-C ends with one line that names what to run next."""
    try:
        if plan.mode == 'evaluate':
            return _evaluate_checkpoint(plan)
        return _train(plan)
    except KeyboardInterrupt:
        follow_up = (f'evaluate again with --checkpoint {plan.checkpoint}' if plan.mode == 'evaluate' else
                     f'continue with --resume {plan.out}')
        print(f'\nerror: interrupted; {follow_up}', file=sys.stderr)
        return 130


# ---- training ---------------------------------------------------------------------------------------
def _train(plan) -> int:
    from tqdm import tqdm

    from harness.checkpoints import restore_checkpoint, save_checkpoint, write_json_atomic
    from harness.run import command_line
    from harness.train import DivergenceWatch, Trainer, chunk_boundaries, create_agents, q_bounds

    timer = Timer()
    started = time.perf_counter()
    dataset = _load_dataset(plan, timer)
    agent_cls = _agent_class(plan.agent)
    obs_dim, act_dim = dataset['observations'].shape[1], dataset['actions'].shape[1]
    start = time.perf_counter()
    agents = create_agents(agent_cls, plan.seeds, dataset['observations'][:1], dataset['actions'][:1], plan.config)
    if plan.mode == 'resume' and plan.checkpoint is not None:
        agents, plan = _restore_newest_intact(plan, agents, f'{plan.task.env_id} (obs {obs_dim}, action {act_dim}, '
                                                            f'preset {plan.preset})')
    timer.add('setup', time.perf_counter() - start)
    out = plan.out
    # Everything is checked: from here on the run folder is written.
    for sub in ('checkpoints', 'eval', 'videos', 'plots'):
        (out / sub).mkdir(parents=True, exist_ok=True)
    if plan.mode == 'train':
        write_json_atomic(out / 'config.json', plan.to_json())
    else:
        _truncate_logs_after(out, plan.start_step)
        config = json.loads((out / 'config.json').read_text())
        config['steps'] = plan.steps
        changed = {k: v for k, v in plan.evaluation_settings().items() if config.get(k) != v}
        config.update(changed)
        config.setdefault('resumed', []).append({'from_step': plan.start_step, 'command': command_line(),
                                                 'changed': sorted(changed)})
        write_json_atomic(out / 'config.json', config)
        print(f'resuming {out} from update {plan.start_step} of {plan.steps}', flush=True)

    watch = DivergenceWatch(plan.seeds, q_bounds(dataset['rewards'], plan.config.discount))
    warnings = {'q_out_of_range': 0, 'critic_grad_growth': 0}
    for step, infos in _rows_by_step(out / 'metrics.jsonl'):   # a resumed run's watch continues where it stopped
        for kind, _ in watch.check(step, infos):
            warnings[kind] += 1
    trainer = Trainer(agents, dataset, plan.seeds)
    # The trainer holds the dataset on the device; free the host copy now rather than at the next
    # garbage collection, or a 1M-transition run holds the dataset twice (harness.bench, figure 7).
    del dataset
    gc.collect()
    pieces = chunk_boundaries(plan.start_step, plan.steps, plan.chunk)
    envs = None
    last_eval = '—'
    periodic = _periodic_points(out)
    bar = tqdm(total=plan.steps, initial=plan.start_step, unit='upd', dynamic_ncols=True,
               desc=f'{plan.task.name} {plan.agent}', file=sys.stdout, mininterval=1.0)
    try:
        # Killed during the periodic evaluation that follows a checkpoint: run it again before going on.
        if (plan.mode == 'resume' and plan.eval_every and 0 < plan.start_step < plan.steps
                and plan.start_step % plan.eval_every == 0 and plan.start_step not in [p[0] for p in periodic]):
            envs = _make_envs(plan, timer)
            last_eval = _periodic_evaluation(plan, trainer.agents, envs, plan.start_step, out, timer, bar, periodic)
        for n, (first, count) in enumerate(pieces):
            report = trainer.run_chunk(first, count)
            timer.add('compile', report.compile_seconds)
            timer.add('training', report.seconds)
            rate = count / max(report.seconds, 1e-9)
            _append_jsonl(out / 'metrics.jsonl', [
                {'step': report.step, 'seed': seed, 'updates_per_s': rate, **info}
                for seed, info in zip(plan.seeds, report.infos)])
            for kind, message in watch.check(report.step, report.infos):
                warnings[kind] += 1
                if sum(warnings.values()) <= 10:
                    bar.write(f'warning: {message} (Appendix A of the paper saw this before guidance failed)')
            if n == 0:
                _announce_eta(plan, bar, report, rate)
            bar.set_postfix_str(f'{rate:,.0f} upd/s, last eval: {last_eval}', refresh=False)
            bar.update(count)
            at_end = report.step == plan.steps
            if plan.checkpoint_every and report.step % plan.checkpoint_every == 0 or at_end:
                start = time.perf_counter()
                save_checkpoint(out / 'checkpoints', report.step, trainer.agents, _checkpoint_meta(plan))
                timer.add('checkpointing', time.perf_counter() - start)
            if plan.eval_every and report.step % plan.eval_every == 0 and not at_end:
                envs = envs or _make_envs(plan, timer)
                last_eval = _periodic_evaluation(plan, trainer.agents, envs, report.step, out, timer, bar, periodic)
                bar.set_postfix_str(f'{rate:,.0f} upd/s, last eval: {last_eval}')
        bar.close()
        envs = envs or _make_envs(plan, timer)
        final = _evaluate_all(plan, trainer.agents, envs, plan.final_betas, plan.steps, 'final', out, timer,
                              videos=True, bar=None)
    finally:
        bar.close()
        if envs is not None:
            envs.close()
    if periodic:
        periodic.append((plan.steps, *next(([r['success_rate'], *r['ci95']] for r in final if r['beta'] == plan.beta),
                                            [final[0]['success_rate'], *final[0]['ci95']])))
    start = time.perf_counter()
    _finish_plots(plan, out, final, periodic)
    timer.add('writing', time.perf_counter() - start)
    timer.add('total', time.perf_counter() - started)
    _write_summary(plan, out, final, timer, extra={'divergence_warnings': {**warnings, **_fallback_warning(final)}})
    _print_result(out, final, timer)
    return 0


def _periodic_evaluation(plan, agents, envs, step: int, out: Path, timer: Timer, bar, periodic: list) -> str:
    """Evaluate at the run's β during training; appends (step, success, ci) to `periodic`."""
    r = _evaluate_all(plan, agents, envs, [plan.beta], step, 'periodic', out, timer, videos=False, bar=bar)[0]
    periodic.append((step, r['success_rate'], *r['ci95']))
    return f"{r['success_rate']:.2f} @ {step}"


def _restore_newest_intact(plan, template, expected_what: str):
    """Restore the newest checkpoint that reads back; a damaged one (truncated file, broken metadata)
    is skipped with one warning line naming it, and the run continues from the one before."""
    from harness.checkpoints import list_checkpoints, restore_checkpoint
    from harness.errors import UsageError
    candidates = [(step, path) for step, path in list_checkpoints(plan.checkpoint.parent) if step <= plan.start_step]
    for step, path in reversed(candidates):
        try:
            agents = restore_checkpoint(path, template, expected_what)
        except UsageError:
            raise                                   # intact but of another task / preset: the user must know
        except Exception as error:                  # noqa: BLE001 -- any read failure means a damaged checkpoint
            print(f'warning: checkpoint {path} is damaged ({type(error).__name__}); skipping it', file=sys.stderr)
            continue
        return agents, dataclasses.replace(plan, checkpoint=path, start_step=step)
    raise UsageError(f'--resume {plan.out}: no intact checkpoint left in {plan.checkpoint.parent}; delete the '
                     'run folder and train again')


def _rows_by_step(path: Path, phase: str | None = None) -> list[tuple[int, list[dict]]]:
    """The rows of a JSONL log (of one eval `phase`, if given) grouped by step, in step order."""
    by_step = defaultdict(list)
    for row in read_jsonl(path):
        if phase is None or row['phase'] == phase:
            by_step[row['step']].append(row)
    return sorted(by_step.items())


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSONL log; a last line cut short by a kill mid-write is dropped (it is the
    interrupted chunk's, which --resume runs again)."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for index, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if index < len(lines) - 1:
                raise
    return rows


def _fallback_warning(results: list[dict]) -> dict:
    """Count (and say) the flow steps whose ∇Q was non-finite at evaluation, the third Appendix-A sign."""
    count = sum(r['fallbacks'] for r in results)
    if count:
        betas = ', '.join(f"{r['beta']:g}" for r in results if r['fallbacks'])
        print(f'warning: {count} flow steps had a non-finite ∇Q at evaluation (β = {betas}) and fell back to the '
              'unguided step (Appendix A of the paper saw NaN actions before guidance failed)')
    return {'nonfinite_fallbacks': count}


def _truncate_logs_after(out: Path, step: int) -> None:
    """On resume, drop log lines written after the checkpoint (and the interrupted run's final
    evaluation, if it got that far), so that the logs read like one uninterrupted run."""
    from harness.checkpoints import write_text_atomic
    keep = {'metrics.jsonl': lambda row: row['step'] <= step,
            'eval.jsonl': lambda row: row['step'] <= step and row['phase'] == 'periodic'}
    for name, wanted in keep.items():
        path = out / name
        if not path.exists():
            continue
        kept = [row for row in read_jsonl(path) if wanted(row)]
        write_text_atomic(path, ''.join(json.dumps(row) + '\n' for row in kept))


def _periodic_points(out: Path) -> list:
    """(step, success, ci_low, ci_high) of periodic evaluations already in summary-less logs (resume)."""
    from harness.report import hierarchical_bootstrap_ci, success_matrix
    points = []
    for step, rows in _rows_by_step(out / 'eval.jsonl', 'periodic'):
        _, matrix = success_matrix(rows)
        points.append((step, float(matrix.mean()), *hierarchical_bootstrap_ci(matrix)))
    return points


def _announce_eta(plan, bar, report, rate: float) -> None:
    """Print the measured speed and the ETA before the long part of the run; on a CPU with the paper
    preset say that it takes hours and name --preset small (but go on: the user asked for it)."""
    import jax
    remaining = plan.steps - report.step
    eta = remaining / max(rate, 1e-9)
    periodic = len(range(plan.eval_every, plan.steps, plan.eval_every)) if plan.eval_every else 0
    evals = periodic + len(plan.final_betas)
    bar.write(f'measured: compiled in {report.compile_seconds:.1f}s, {rate:,.0f} updates/s for {len(plan.seeds)} '
              f'seed(s) -> training ETA {_fmt_seconds(eta)} for {remaining:,} more updates '
              f'(+ {evals} evaluation(s) of {plan.eval_episodes} episodes per seed)')
    if jax.default_backend() == 'cpu' and plan.preset == 'paper' and eta > 3600:
        bar.write(f'note: no GPU found (JAX runs on the CPU): the paper preset needs about {_fmt_seconds(eta)} here. '
                  '`--preset small` trains a smaller model in minutes. Continuing as asked.')


def _make_envs(plan, timer: Timer):
    from envs.vector import make_eval_envs
    start = time.perf_counter()
    envs = make_eval_envs(plan.task, plan.eval_envs, render_size=RENDER_SIZE, success_timing=plan.success_timing)
    timer.add('evaluation', time.perf_counter() - start)
    return envs


# ---- evaluation ---------------------------------------------------------------------------------------
def _evaluate_all(plan, agents, envs, betas, step: int, phase: str, out: Path, timer: Timer, videos: bool, bar):
    """Evaluate every seed's agent at every β; write eval.jsonl rows, traces and videos; return summaries.

    With several final βs and selection episodes, every β is first scored on the selection start
    states (phase 'selection'), whose success picks the best β (`report.best_beta`), and then on the
    held-out start states that every reported rate comes from; each summary carries both."""
    from harness.run import EVAL_SEED_BASE, SELECTION_SEED_BASE
    selection = {}
    if phase != 'periodic' and plan.selection_episodes and len(betas) > 1:
        for r in _score_betas(plan, agents, envs, betas, step, 'selection', out, timer, False, bar,
                              plan.selection_episodes, SELECTION_SEED_BASE, SELECTION_KEY_SALT):
            selection[r['beta']] = r
    results = _score_betas(plan, agents, envs, betas, step, phase, out, timer, videos, bar,
                           plan.eval_episodes, EVAL_SEED_BASE, EVAL_KEY_SALT)
    for r in results:
        if r['beta'] in selection:
            r['selection_success_rate'] = selection[r['beta']]['success_rate']
            r['selection_ci95'] = selection[r['beta']]['ci95']
    return results


def _score_betas(plan, agents, envs, betas, step: int, phase: str, out: Path, timer: Timer, videos: bool, bar,
                 episodes: int, env_seed_base: int, key_salt: int):
    """`episodes` per seed and β from env seeds env_seed_base + i; traces, videos and the guidance
    plot only for the reported (final / sweep) phase."""
    import jax
    from tqdm import tqdm

    from harness.evaluate import evaluate, make_sample_fn, per_step_profile
    from harness.report import summarize_beta
    from harness.train import select_seed
    from harness.video import write_video

    reported = phase not in ('periodic', 'selection')
    results, profiles = [], {}
    frame_skip = plan.frame_skip or max(1, round(envs.max_episode_steps / FRAMES_PER_VIDEO))
    total = len(betas) * len(plan.seeds) * episodes
    label = 'select' if phase == 'selection' else 'eval'
    ebar = tqdm(total=total, unit='ep', desc=f'{label} @ {step}', leave=bar is None, dynamic_ncols=True,
                file=sys.stdout, mininterval=1.0)
    try:
        for beta in betas:
            rows = []
            traces = []
            for index, seed in enumerate(plan.seeds):
                agent = select_seed(agents, index)
                key = jax.random.fold_in(jax.random.PRNGKey(seed), key_salt)
                result = evaluate(make_sample_fn(agent, plan.sampler), envs, beta=beta, num_episodes=episodes, key=key,
                                  env_seed_base=env_seed_base, frame_skip=frame_skip,
                                  video_episodes=plan.video_episodes if (videos and index == 0) else 0,
                                  progress=ebar.update)
                timer.add('evaluation', result.timing['sampling_s'] + result.timing['env_step_s'])
                timer.add('rendering', result.timing['rendering_s'])
                for episode in result.episodes:
                    rows.append({'phase': phase, 'step': step, 'beta': beta, 'seed': seed, **episode})
                arrays = result.trace.arrays()
                if reported:
                    traces.append(arrays)
                    np.savez_compressed(out / 'eval' / f'guidance-step{step}-beta{beta:g}-seed{seed}.npz', **arrays)
                start = time.perf_counter()
                for episode, frames in result.videos.items():
                    if not frames:
                        continue
                    prof = _episode_profile(arrays, episode)
                    write_video(out / 'videos' / f'beta{beta:g}-seed{seed}-ep{episode}.mp4', frames,
                                result.video_steps[episode], prof, beta)
                timer.add('rendering', time.perf_counter() - start)
            _append_jsonl(out / 'eval.jsonl', rows)
            summary = summarize_beta(beta, rows)
            summary['step'] = step
            results.append(summary)
            if traces:
                profiles[beta] = per_step_profile(_concat_traces(traces))
    finally:
        ebar.close()
    if reported:
        from harness.plots import plot_guidance_norms
        start = time.perf_counter()
        plot_guidance_norms(profiles, out / 'plots' / 'guidance_norms.png',
                            f'{plan.task.env_id}, {plan.agent}, update {step}: guided sampler norms')
        timer.add('writing', time.perf_counter() - start)
    return results


def _concat_traces(traces: list[dict]) -> dict:
    return {k: np.concatenate([t[k] for t in traces], axis=0) for k in traces[0]}


def _episode_profile(arrays: dict, episode: int) -> dict[str, np.ndarray]:
    """Per env step of one episode: mean over flow steps of ‖β∇Q‖ and ‖v‖ (the video strip)."""
    rows = arrays['episode'] == episode
    order = np.argsort(arrays['step'][rows])
    guidance = arrays['guidance_norm'][rows][order].astype(np.float32)
    velocity = arrays['velocity_norm'][rows][order].astype(np.float32)
    return {'‖β∇Q‖': np.nanmean(guidance, axis=1), '‖v‖': np.nanmean(velocity, axis=1)}


# ---- outputs ------------------------------------------------------------------------------------------
def _finish_plots(plan, out: Path, final: list[dict], periodic: list) -> None:
    from harness.plots import plot_success_over_training, plot_success_vs_beta, plot_training
    metrics_path = out / 'metrics.jsonl'
    if metrics_path.exists():
        metrics = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
        if metrics:
            plot_training(metrics, out / 'plots' / 'training.png', f'{plan.task.env_id}, {plan.agent}, {plan.preset}')
    if len(final) > 1:
        plot_success_vs_beta(final, out / 'plots' / 'success_vs_beta.png', f'{plan.task.env_id}, update {plan.steps}')
    if len(periodic) > 1:
        plot_success_over_training(periodic, out / 'plots' / 'success_over_training.png',
                                   f'{plan.task.env_id}, β={plan.beta:g}')


def _write_summary(plan, out: Path, results: list[dict], timer: Timer, extra: dict | None = None) -> None:
    from harness.checkpoints import write_json_atomic
    from harness.report import best_beta, max_over_betas
    from harness.run import EVAL_SEED_BASE, SELECTION_SEED_BASE
    chosen = best_beta(results)
    summary = {
        'task': plan.task.name, 'env_id': plan.task.env_id, 'agent': plan.agent, 'preset': plan.preset,
        'mode': plan.mode, 'steps': plan.steps, 'seeds': plan.seeds, 'eval_episodes_per_seed': plan.eval_episodes,
        'beta': plan.beta, 'sampler': plan.sampler.to_json(), 'success_timing': plan.success_timing,
        'reward': plan.reward,
        'acting': ('one-step policy μ_ω(s, ε): β and the sampler settings do not apply' if plan.agent == 'fql' else
                   'guided flow sampler (eq. 5 unless the sampler settings depart from it)'),
        'best_beta': chosen,
        'best_beta_selection': (
            'the only β evaluated' if len(results) == 1 else
            f'highest success on {plan.selection_episodes} selection episodes per seed (env seeds '
            f'{SELECTION_SEED_BASE}+i), reported on {plan.eval_episodes} held-out ones (env seeds {EVAL_SEED_BASE}+i)'
            if chosen is not None else 'none: several βs but no selection episodes (--selection-episodes 0)'),
        'max_over_betas': max_over_betas(results),
        'results': sorted(results, key=lambda r: r['beta']),
        'interval_method': '95% percentile bootstrap over seeds then episodes (ci95); IQM of per-seed success '
                           'with a stratified bootstrap over seeds (iqm_ci95)',
        'timing_s': {k: round(v, 2) for k, v in timer.items()},
        'checkpoint': None if plan.checkpoint is None else str(plan.checkpoint),
        'videos': sorted(str(p.relative_to(out)) for p in (out / 'videos').glob('*.mp4')),
        'plots': sorted(str(p.relative_to(out)) for p in (out / 'plots').glob('*.png')),
        **(extra or {}),
    }
    write_json_atomic(out / 'summary.json', summary)


def _print_result(out: Path, results: list[dict], timer: Timer) -> None:
    from harness.report import sweep_table
    print(sweep_table(results), end='')
    t = timer
    print(f"time: total {_fmt_seconds(t['total'])} = dataset {_fmt_seconds(t['dataset'])}, "
          f"setup {_fmt_seconds(t['setup'])}, compile {_fmt_seconds(t['compile'])}, "
          f"training {_fmt_seconds(t['training'])}, "
          f"evaluation {_fmt_seconds(t['evaluation'])}, rendering {_fmt_seconds(t['rendering'])}, "
          f"checkpoints+plots {_fmt_seconds(t['checkpointing'] + t['writing'])}")
    from harness.report import best_beta
    chosen = best_beta(results) if len(results) > 1 else None
    for r in results:
        lo, hi = r['ci95']
        mark = ' <- best β, chosen on the selection episodes' if r['beta'] == chosen else ''
        print(f"success rate at β={r['beta']:g}: {r['success_rate']:.3f} (95% CI {lo:.3f}-{hi:.3f}, "
              f"{len(r['seeds'])} seed(s) x {r['episodes_per_seed']} held-out episodes){mark}")
    print(f'run folder: {out}  (summary.json, videos/, plots/guidance_norms.png)')


# ---- evaluation of a checkpoint (β sweep) ---------------------------------------------------------------
def _evaluate_checkpoint(plan) -> int:
    from harness.checkpoints import read_meta, restore_checkpoint, write_json_atomic, write_text_atomic
    from harness.plots import plot_success_vs_beta
    from harness.report import sweep_csv, sweep_table
    from harness.train import create_agents

    timer = Timer()
    started = time.perf_counter()
    envs = _make_envs(plan, timer)
    try:
        start = time.perf_counter()
        agent_cls = _agent_class(plan.agent)
        template = create_agents(agent_cls, plan.seeds, np.zeros((1, envs.observation_dim), np.float32),
                                 np.zeros((1, envs.action_dim), np.float32), plan.config)
        agents = restore_checkpoint(plan.checkpoint, template,
                                    f'task {plan.task.env_id} (obs {envs.observation_dim}, action {envs.action_dim})')
        timer.add('setup', time.perf_counter() - start)
        trained_on = read_meta(plan.checkpoint)['task']['env_id']
        if trained_on != plan.task.env_id:
            print(f'note: the checkpoint was trained on {trained_on}; evaluating it on {plan.task.env_id}')
        out = plan.out
        for sub in ('eval', 'videos', 'plots'):
            (out / sub).mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / 'config.json', plan.to_json())
        results = _evaluate_all(plan, agents, envs, plan.final_betas, plan.steps, 'sweep', out, timer,
                                videos=plan.video_episodes > 0, bar=None)
    finally:
        envs.close()
    write_text_atomic(out / 'sweep.md', sweep_table(results))
    write_text_atomic(out / 'sweep.csv', sweep_csv(results))
    if len(results) > 1:
        plot_success_vs_beta(results, out / 'plots' / 'success_vs_beta.png',
                             f'{plan.task.env_id}, {plan.agent}, checkpoint step {plan.steps}')
    timer.add('total', time.perf_counter() - started)
    _write_summary(plan, out, results, timer, extra={'divergence_warnings': _fallback_warning(results)})
    _print_result(out, results, timer)
    print(f'table: {out}/sweep.md, plot: {out}/plots/success_vs_beta.png')
    return 0
