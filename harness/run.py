"""python -m harness.run: train QFQL (or FQL) on a task, evaluate it, and write one run folder.

    python -m harness.run --task antsoccer --beta 1                  # paper preset, task defaults
    python -m harness.run --task pointmaze --preset small            # minutes on a CPU
    python -m harness.run --checkpoint RUN_DIR --betas 0,0.3,1,3,10  # β sweep of a trained agent
    python -m harness.run --resume [RUN_DIR]                         # continue an interrupted run

Everything the user can get wrong is checked before anything is written (see `plan_run`); a
mistake ends with one `error: ...` line and exit status 2. The folder layout is documented in
the README ("Run folder") and in `harness/session.py`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from agents.config import BETA_SCHEDULES, GUIDANCE_POINTS, GUIDANCE_SCALES
from harness.errors import OneLineArgumentParser, UsageError, run_main
from harness.evaluate import SamplerSettings
from harness.train import align

# Defaults that depend on the preset; an explicit flag always wins. Why these numbers:
#   paper -- the paper's protocol (1M updates, 50 evaluation episodes; evaluation every 100k).
#   small -- the README main command on a 2-core CPU in about ten minutes: 3-layer 256-wide MLPs
#            (agents' 'small' preset, ~35-70 updates/s on 2 cores), 15k updates, 20 evaluation
#            episodes at 5k/10k/15k, one video, and a
#            pointmaze dataset regenerated with 100 episodes (100k transitions) when missing.
#   tiny  -- tests and CI smoke runs: 2x64 MLPs, seconds per thousand updates.
PRESET_DEFAULTS = {
    'paper': dict(steps=1_000_000, eval_every=100_000, checkpoint_every=100_000, eval_episodes=50, eval_envs=25,
                  video_episodes=2, chunk=1000, dataset_episodes=None),
    'small': dict(steps=15_000, eval_every=5_000, checkpoint_every=5_000, eval_episodes=20, eval_envs=10,
                  video_episodes=1, chunk=500, dataset_episodes=100),
    'tiny': dict(steps=2_000, eval_every=0, checkpoint_every=1_000, eval_episodes=10, eval_envs=5,
                 video_episodes=0, chunk=250, dataset_episodes=20),
}
# β for tasks where the paper gives none (pointmaze, cube-single, puzzle-3x3, ids outside the table):
# 0.3, the value the paper chose for five of its eight tasks.
DEFAULT_BETA = 0.3
# FQL's distillation weight α by OGBench task family, from its official README (cube-* and scene 300,
# puzzle-* 1000, humanoidmaze 30, antmaze and antsoccer 10); the D4RL antmaze tasks take theirs from
# the FQL paper's table. A family not listed (pointmaze) gets 10.
FQL_ALPHA_BY_FAMILY = {'cube': 300.0, 'scene': 300.0, 'puzzle': 1000.0, 'humanoidmaze': 30.0, 'antmaze': 10.0,
                       'antsoccer': 10.0}
FQL_ALPHA_D4RL = {'antmaze-umaze-diverse-v2': 10.0, 'antmaze-medium-diverse-v2': 10.0, 'antmaze-large-diverse-v2': 3.0}


def fql_alpha(task) -> float:
    if task.source == 'd4rl':
        return FQL_ALPHA_D4RL.get(task.env_id, 10.0)
    return FQL_ALPHA_BY_FAMILY.get(task.env_id.removeprefix('visual-').split('-')[0], 10.0)
DEFAULT_OUT_ROOT = Path('artifacts/runs')
DEFAULT_SWEEP_ROOT = Path('artifacts/sweeps')
EVAL_SEED_BASE = 1_000_000      # held-out evaluation episode i starts from env seed EVAL_SEED_BASE + i
SELECTION_SEED_BASE = 2_000_000  # β-selection episode i starts from env seed SELECTION_SEED_BASE + i (disjoint)
LONG_RUN_SECONDS = 3600.0
# Success from s' (OGBench 1.1, as the FQL and QFQL papers evaluated); OGBench >= 1.2 defaults to s.
DEFAULT_SUCCESS_TIMING = 'post'


# ---- argument types ------------------------------------------------------------------------------
def beta_value(text: str) -> float:
    """A guidance strength: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"β must be a number >= 0, got '{text}'") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"β must be a finite number >= 0, got '{text}'")
    return value


def beta_list(text: str) -> list[float]:
    """Comma-separated βs, e.g. '0,0.3,1,3,10' (duplicates dropped, order kept)."""
    values = [beta_value(part.strip()) for part in text.split(',') if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"--betas needs at least one number, got '{text}'")
    return list(dict.fromkeys(values))


def seed_list(text: str) -> list[int]:
    """Comma-separated seeds or a range 'A-B' (inclusive), e.g. '0,1,2' or '0-4'."""
    try:
        if '-' in text.strip('-') and ',' not in text:
            low, high = (int(x) for x in text.split('-'))
            if low > high:
                raise argparse.ArgumentTypeError(f"seed range '{text}' is empty; write it low-high, e.g. '{high}-{low}'")
            values = list(range(low, high + 1))
        else:
            values = [int(x) for x in text.split(',') if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers like '0,1,2' or '0-4', got '{text}'") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"seeds must be non-negative integers, got '{text}'")
    return list(dict.fromkeys(values))


def _bounded_number(what: str, integer: bool, allow_zero: bool):
    """An argparse type for counts ('20000', '1e6') or knobs: finite, > 0 (or >= 0), whole if `integer`."""
    def parse(text: str):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
        in_range = value >= 0 if allow_zero else value > 0
        if not (math.isfinite(value) and in_range and (value.is_integer() or not integer)):
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'")
        return int(value) if integer else value
    return parse


positive_int = _bounded_number('a positive integer', integer=True, allow_zero=False)
nonnegative_int = _bounded_number('an integer >= 0', integer=True, allow_zero=True)
positive_float = _bounded_number('a finite number > 0', integer=False, allow_zero=False)
nonnegative_float = _bounded_number('a finite number >= 0', integer=False, allow_zero=True)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(prog='python -m harness.run',
                              description='Train and evaluate QFQL / FQL on an OGBench task; β sweeps of checkpoints.')
    p.add_argument('--task', help='short name (antmaze, antsoccer, cube-double, scene, puzzle-3x3, pointmaze, ...) '
                                  'or a full OGBench single-task id')
    p.add_argument('--agent', choices=['qfql', 'fql'], default=None, help='default qfql')
    p.add_argument('--preset', choices=sorted(PRESET_DEFAULTS), default=None,
                   help="network sizes and run lengths: 'paper' (default), 'small' for a CPU, 'tiny' for tests")
    p.add_argument('--beta', type=beta_value, help='guidance strength β for evaluation (default: the task\'s)')
    p.add_argument('--betas', type=beta_list, help='evaluate the final agent at each of these βs, e.g. 0,0.3,1,3,10')
    p.add_argument('--steps', type=positive_int, help='gradient updates (paper 1000000)')
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument('--seed', type=nonnegative_int, help='one seed (default 0)')
    seeds.add_argument('--seeds', type=seed_list, help="several seeds trained together, e.g. '0,1,2' or '0-4'")
    p.add_argument('--eval-every', type=nonnegative_int, help='updates between evaluations (0: only at the end)')
    p.add_argument('--eval-episodes', type=positive_int, help='episodes per seed and β (paper 50)')
    p.add_argument('--eval-envs', type=positive_int, help='environments stepped in parallel')
    p.add_argument('--video-episodes', type=nonnegative_int, help='episodes recorded as mp4 (first seed, each β)')
    p.add_argument('--frame-skip', type=positive_int, default=None, help='render every Nth env step (default: about 100 frames per episode)')
    p.add_argument('--checkpoint-every', type=nonnegative_int, help='updates between checkpoints (one is always written at the end)')
    p.add_argument('--updates-per-call', type=positive_int, help='updates per jitted call')
    p.add_argument('--discount', type=float, help="override the task's discount")
    p.add_argument('--q-agg', choices=['mean', 'min'], help="override the task's target-Q aggregation")
    p.add_argument('--target-action', choices=['flow', 'onestep', 'guided'],
                   help="QFQL's target action ã' for the TD target (default flow; guided uses the run's β)")
    p.add_argument('--target-flow-steps', type=positive_int,
                   help="Euler steps of the flow/guided target action only (default: the preset's flow steps, 10)")
    p.add_argument('--critic', choices=['td', 'expectile'],
                   help="QFQL's critic: td (default, eq. 4) or expectile (in-sample, IQL-style; no actor samples)")
    p.add_argument('--expectile', type=float, help='τ of the expectile critic (default 0.9)')
    p.add_argument('--alpha', type=float, help='FQL distillation weight (default: the task\'s from the FQL paper)')
    sampler = p.add_argument_group('guided sampler (test time only: may differ between --checkpoint sweeps and on --resume)')
    sampler.add_argument('--guidance-at', choices=list(GUIDANCE_POINTS),
                         help='where ∇Q is taken: noisy (default, eq. 5), denoised (at the one-step clean estimate), '
                              'denoised-jacobian (also through v)')
    sampler.add_argument('--guidance-scale', choices=list(GUIDANCE_SCALES),
                         help='absolute (default): β∇Q as eq. 5; relative: β‖v‖∇Q/‖∇Q‖, the same β on every task')
    sampler.add_argument('--beta-schedule', choices=list(BETA_SCHEDULES), help='β over the flow steps (default constant)')
    sampler.add_argument('--grad-clip', type=positive_float, help='clip ‖∇Q‖ per sample to this (default: none)')
    sampler.add_argument('--trust-ratio', type=nonnegative_float, help='cap ‖guidance‖ at this times ‖v‖ (default: none)')
    sampler.add_argument('--flow-steps', type=positive_int, help='Euler steps when acting (default: the trained K, 10)')
    sampler.add_argument('--guidance-q-agg', choices=['mean', 'min'], help='ensemble Q whose gradient guides (default mean)')
    p.add_argument('--success-timing', choices=['pre', 'post'],
                   help="when OGBench's single-task envs compute success: post (default: from s', as OGBench 1.1 "
                        'that the FQL and QFQL papers used) or pre (from s, the default of OGBench >= 1.2)')
    p.add_argument('--reward', choices=['dense', 'sparse'],
                   help="reward the data is labelled with: dense (default, OGBench's single-task reward) or sparse "
                        '(0 when solved, else -1; changes training)')
    p.add_argument('--selection-episodes', type=nonnegative_int,
                   help='with several βs: episodes per seed on separate start states that choose the best β, which '
                        'is then reported on the held-out --eval-episodes (default: as many as --eval-episodes; '
                        '0: no selection, only the labelled max over β)')
    p.add_argument('--out', help='run folder (default artifacts/runs/<task>-<agent>-<preset>-<seeds>-<time>)')
    p.add_argument('--data-dir', help='dataset folder (default ~/.ogbench/data)')
    p.add_argument('--download', action='store_true',
                   help="fetch a missing dataset from OGBench's server (needs a network) instead of regenerating it offline")
    p.add_argument('--dataset-episodes', type=positive_int,
                   help='episodes to regenerate when the dataset is missing (small preset: 100; else 1000)')
    p.add_argument('--resume', nargs='?', const='latest', metavar='RUN_DIR',
                   help='continue an interrupted run from its last checkpoint (default: the newest run of this task)')
    p.add_argument('--checkpoint', metavar='PATH', help='evaluate a trained agent (run folder or checkpoint) without training')
    return p


# ---- the plan: every decision and check before anything is written --------------------------------
@dataclass
class Plan:
    mode: str                  # 'train' | 'resume' | 'evaluate'
    task: object               # envs.tasks.Task
    agent: str
    preset: str
    config: object             # agents.AgentConfig
    seeds: list[int]
    steps: int
    beta: float
    final_betas: list[float]
    eval_every: int
    eval_episodes: int
    eval_envs: int
    video_episodes: int
    frame_skip: int | None
    checkpoint_every: int
    chunk: int
    out: Path
    data_dir: str
    dataset_episodes: int | None
    checkpoint: Path | None    # what to restore (resume / evaluate); None: resume from update 0
    start_step: int = 0
    download: bool = False     # fetch a missing dataset from OGBench's server instead of regenerating it
    sampler: SamplerSettings = SamplerSettings()
    selection_episodes: int = 0   # per seed and β, on SELECTION_SEED_BASE starts; 0 = no β selection
    success_timing: str = DEFAULT_SUCCESS_TIMING
    reward: str = 'dense'         # dataset reward labels (training only)

    def evaluation_settings(self) -> dict:
        """The settings a --resume may change (they shape evaluation, never training)."""
        keys = ('beta', 'final_betas', 'eval_every', 'eval_episodes', 'eval_envs', 'video_episodes', 'frame_skip',
                'checkpoint_every', 'sampler', 'selection_episodes', 'success_timing')
        return {k: v for k, v in self.to_json().items() if k in keys}

    def to_json(self) -> dict:
        return {
            'mode': self.mode, 'task': dataclasses.asdict(self.task), 'agent': self.agent, 'preset': self.preset,
            'config': dataclasses.asdict(self.config), 'seeds': self.seeds, 'steps': self.steps, 'beta': self.beta,
            'final_betas': self.final_betas, 'eval_every': self.eval_every, 'eval_episodes': self.eval_episodes,
            'eval_envs': self.eval_envs, 'video_episodes': self.video_episodes, 'frame_skip': self.frame_skip,
            'checkpoint_every': self.checkpoint_every, 'updates_per_call': self.chunk, 'out': str(self.out),
            'data_dir': self.data_dir, 'dataset_episodes': self.dataset_episodes,
            'checkpoint': None if self.checkpoint is None else str(self.checkpoint), 'download': self.download,
            'eval_seed_base': EVAL_SEED_BASE, 'sampler': self.sampler.to_json(),
            'selection_episodes': self.selection_episodes, 'selection_seed_base': SELECTION_SEED_BASE,
            'success_timing': self.success_timing, 'reward': self.reward,
            'command': command_line(),
        }


def command_line() -> str:
    """The command as the user typed it (`python -m harness.run ...`, not the module's file path)."""
    return ' '.join(['python -m harness.run', *sys.argv[1:]])


def check_writable(path: Path) -> None:
    """Fail early, with one line, if `path` cannot be created or written (nothing is left behind)."""
    import tempfile
    probe = Path(path).absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f'--out {path} is not writable: {probe} is a file, not a folder')
    try:
        fd, name = tempfile.mkstemp(dir=probe, prefix='.qfql-write-probe-')
        os.close(fd)
        os.unlink(name)
    except OSError as error:
        raise UsageError(f'--out {path} is not writable ({error.strerror} in {probe}); choose another folder with --out')
    if Path(path).exists() and not Path(path).is_dir():
        raise UsageError(f'--out {path} exists and is not a folder')


def _run_name(task_name: str, agent: str, preset: str, seeds: list[int]) -> str:
    seed_part = f's{seeds[0]}' if len(seeds) == 1 else f's{seeds[0]}-{seeds[-1]}x{len(seeds)}'
    return f"{task_name.replace('/', '_')}-{agent}-{preset}-{seed_part}-{time.strftime('%Y%m%d-%H%M%S')}"


def _config_for(task, agent: str, preset: str, beta: float, args) -> object:
    from agents import resolve_config
    overrides = {'discount': task.discount if args.discount is None else args.discount,
                 'q_agg': task.q_agg if args.q_agg is None else args.q_agg,
                 'beta': beta}
    qfql_only = {'--target-action': args.target_action, '--target-flow-steps': args.target_flow_steps,
                 '--critic': args.critic, '--expectile': args.expectile}
    if agent == 'fql' and any(v is not None for v in qfql_only.values()):
        raise UsageError(f"{', '.join(k for k, v in qfql_only.items() if v is not None)}: QFQL options (FQL trains its "
                         'own TD critic with its one-step policy); drop them or use --agent qfql')
    if args.critic is not None:
        overrides['critic'] = args.critic
    if args.expectile is not None:
        overrides['expectile'] = args.expectile
    # The guided TD target (--target-action guided) runs the sampler too, with these guards.
    for field, value in (('grad_clip', args.grad_clip), ('trust_ratio', args.trust_ratio),
                         ('guidance_q_agg', args.guidance_q_agg)):
        if value is not None:
            overrides[field] = value
    if args.target_action is not None:
        overrides['target_action'] = args.target_action
    if args.target_flow_steps is not None:
        overrides['target_flow_steps'] = args.target_flow_steps
    if agent == 'fql':
        overrides['alpha'] = args.alpha if args.alpha is not None else fql_alpha(task)
    try:
        return resolve_config(preset, **overrides)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _pick(explicit, default):
    return default if explicit is None else explicit


def _sampler_settings(args, saved: dict | None, config) -> SamplerSettings:
    """Flags win; then what the run recorded (resume); then the agent config's sampler defaults."""
    base = SamplerSettings(grad_clip=config.grad_clip, trust_ratio=config.trust_ratio,
                           guidance_q_agg=config.guidance_q_agg)
    if saved:
        base = SamplerSettings(**saved)
    flags = {'beta_schedule': args.beta_schedule, 'grad_clip': args.grad_clip, 'trust_ratio': args.trust_ratio,
             'flow_steps': args.flow_steps, 'guidance_q_agg': args.guidance_q_agg, 'guidance_at': args.guidance_at,
             'guidance_scale': args.guidance_scale}
    return dataclasses.replace(base, **{k: v for k, v in flags.items() if v is not None})


def _refuse_training_changes(args, saved: dict, run_dir: Path) -> None:
    """--resume continues the same training: a flag that would change it is refused in one line (flags
    that only change evaluation -- β, episodes, videos, sampler settings -- are taken and recorded)."""
    config = saved['config']
    seeds = args.seeds or ([args.seed] if args.seed is not None else None)
    given = {'--agent': (args.agent, saved['agent']), '--preset': (args.preset, saved['preset']),
             '--seed/--seeds': (seeds, saved['seeds']), '--discount': (args.discount, config['discount']),
             '--q-agg': (args.q_agg, config['q_agg']), '--target-action': (args.target_action, config['target_action']),
             '--target-flow-steps': (args.target_flow_steps, config['target_flow_steps']),
             '--critic': (args.critic, config.get('critic', 'td')), '--expectile': (args.expectile, config.get('expectile')),
             '--alpha': (args.alpha, config['alpha']), '--updates-per-call': (args.updates_per_call, saved['updates_per_call']),
             '--dataset-episodes': (args.dataset_episodes, saved['dataset_episodes']),
             '--data-dir': (args.data_dir, saved['data_dir'])}
    if config['target_action'] == 'guided':     # the guided TD target trains with the run's β
        given['--beta'] = (args.beta, saved['beta'])
    changed = [f'{flag} {value} (trained with {before})' for flag, (value, before) in given.items()
               if value is not None and value != before]
    if changed:
        raise UsageError(f"--resume {run_dir} would change its training: {'; '.join(changed)}; drop these flags, or "
                         'start a new run')


def _refuse_reward_change(args, trained_with: str) -> str:
    """The reward labels shaped the critic: a trained agent keeps the ones it was trained with."""
    if args.reward is not None and args.reward != trained_with:
        raise UsageError(f'--reward {args.reward}: this agent was trained with {trained_with} rewards; '
                         'the reward labels only matter for training, so drop --reward or train a new run')
    return trained_with


def _refuse_beta_for_fql(agent: str, args) -> None:
    """FQL acts with its distilled one-step policy, so a β would only mislabel its results."""
    if agent == 'fql' and (args.beta is not None or args.betas):
        raise UsageError('FQL acts with its one-step policy and has no β; drop --beta/--betas '
                         '(its runs are reported at β = 0, i.e. no guidance)')


def _selection_episodes(args, betas: list[float], eval_episodes: int, saved: int | None = None) -> int:
    """β selection needs more than one β; by default it gets as many episodes as the held-out set."""
    if len(betas) < 2:
        return 0
    return _pick(args.selection_episodes, _pick(saved, eval_episodes))


def _latest_run(task_name: str | None) -> Path:
    """The newest unfinished run (no summary.json), preferring one with a checkpoint to continue from."""
    root = DEFAULT_OUT_ROOT
    candidates = [d for d in root.glob('*') if (d / 'config.json').is_file() and not (d / 'summary.json').is_file()]
    if task_name:
        candidates = [d for d in candidates if d.name.startswith(task_name.replace('/', '_') + '-')]
    if not candidates:
        raise UsageError(f'--resume: no unfinished run under {root}/' + (f' for task {task_name}' if task_name else '')
                         + '; pass the run folder: --resume RUN_DIR')
    return max(candidates, key=lambda d: (bool(list_checkpoints(d / 'checkpoints')), d.stat().st_mtime))


def plan_run(args) -> Plan:
    """Resolve defaults and check every input; raises UsageError (one line) before writing anything."""
    from envs.tasks import resolve_task
    from harness.checkpoints import find_checkpoint, list_checkpoints, read_meta

    if args.resume and args.checkpoint:
        raise UsageError('--resume continues training and --checkpoint only evaluates; use one of them')
    if args.checkpoint:
        checkpoint = find_checkpoint(args.checkpoint)
        meta = read_meta(checkpoint)
        saved_task = resolve_task(meta['task']['name']) if meta['task']['name'] else resolve_task(meta['task']['env_id'])
        task = resolve_task(args.task) if args.task else saved_task
        if args.agent and args.agent != meta['agent']:
            raise UsageError(f"--agent {args.agent} does not match the checkpoint's agent {meta['agent']}")
        from agents import AgentConfig
        config = AgentConfig(**meta['config'])
        preset = meta['preset']
        defaults = PRESET_DEFAULTS.get(preset, PRESET_DEFAULTS['paper'])
        _refuse_beta_for_fql(meta['agent'], args)
        beta = 0.0 if meta['agent'] == 'fql' else _pick(args.beta, meta.get('beta', DEFAULT_BETA))
        betas = args.betas or [beta]
        out = Path(args.out) if args.out else DEFAULT_SWEEP_ROOT / (
            f"{Path(checkpoint).parent.parent.name or 'checkpoint'}-step{meta['step']}-betas-"
            f"{'_'.join(f'{b:g}' for b in betas)}-{time.strftime('%Y%m%d-%H%M%S')}")
        check_writable(out)
        if out.exists() and any(out.iterdir()):
            raise UsageError(f'--out {out} is not empty; choose a new folder')
        eval_episodes = _pick(args.eval_episodes, defaults['eval_episodes'])
        return Plan('evaluate', task, meta['agent'], preset, config, list(meta['seeds']), int(meta['step']), beta,
                    betas, 0, eval_episodes, min(_pick(args.eval_envs, defaults['eval_envs']), eval_episodes),
                    _pick(args.video_episodes, defaults['video_episodes']), args.frame_skip, 0, 1, out,
                    args.data_dir or _default_data_dir(), None, checkpoint, int(meta['step']), download=args.download,
                    sampler=_sampler_settings(args, None, config),
                    selection_episodes=_selection_episodes(args, betas, eval_episodes),
                    success_timing=_pick(args.success_timing, DEFAULT_SUCCESS_TIMING),
                    reward=_refuse_reward_change(args, meta.get('reward', 'dense')))

    if args.resume:
        run_dir = _latest_run(args.task) if args.resume == 'latest' else Path(args.resume)
        if not (run_dir / 'config.json').is_file():
            raise UsageError(f'--resume {run_dir}: not a run folder (no config.json)')
        found = list_checkpoints(run_dir / 'checkpoints')
        saved = json.loads((run_dir / 'config.json').read_text())
        if not {'task', 'config', 'agent', 'seeds', 'steps'} <= set(saved):
            raise UsageError(f'--resume {run_dir}: its config.json is not a training run\'s; start a new run with --task')
        task = resolve_task(saved['task']['name'])
        if args.task and resolve_task(args.task).env_id != task.env_id:
            raise UsageError(f'--resume {run_dir} trained task {task.env_id}, not {args.task}')
        from agents import AgentConfig
        config = AgentConfig(**saved['config'])
        check_writable(run_dir)
        # Killed before its first checkpoint: the run starts again from update 0 in the same folder.
        step, checkpoint = found[-1] if found else (0, None)
        steps = _pick(args.steps, saved['steps'])
        # A run stopped after its last checkpoint (during the final evaluation, plots or summary)
        # resumes into its final evaluation; a finished one (it has summary.json) has nothing left to do.
        if step > steps or step == steps and (run_dir / 'summary.json').is_file():
            raise UsageError(f'--resume {run_dir}: already trained {step} of {steps} updates and evaluated; pass a '
                             f'larger --steps, or evaluate it with --checkpoint {run_dir}')
        _refuse_beta_for_fql(saved['agent'], args)
        _refuse_training_changes(args, saved, run_dir)
        betas = args.betas or saved['final_betas']
        chunk = saved['updates_per_call']
        eval_episodes = _pick(args.eval_episodes, saved['eval_episodes'])
        return Plan('resume', task, saved['agent'], saved['preset'], config, saved['seeds'], steps,
                    _pick(args.beta, saved['beta']), betas, align(_pick(args.eval_every, saved['eval_every']), chunk),
                    eval_episodes, min(_pick(args.eval_envs, saved['eval_envs']), eval_episodes),
                    _pick(args.video_episodes, saved['video_episodes']), _pick(args.frame_skip, saved['frame_skip']),
                    align(_pick(args.checkpoint_every, saved['checkpoint_every']), chunk), chunk,
                    run_dir, saved['data_dir'], saved['dataset_episodes'], checkpoint, step, download=args.download,
                    sampler=_sampler_settings(args, saved.get('sampler'), config),
                    selection_episodes=_selection_episodes(args, betas, eval_episodes, saved.get('selection_episodes')),
                    success_timing=_pick(args.success_timing, saved.get('success_timing', DEFAULT_SUCCESS_TIMING)),
                    reward=_refuse_reward_change(args, saved.get('reward', 'dense')))

    if not args.task:
        raise UsageError('--task is required (e.g. --task pointmaze), unless --checkpoint or --resume is given')
    task = resolve_task(args.task)
    agent = args.agent or 'qfql'
    preset = args.preset or 'paper'
    defaults = PRESET_DEFAULTS[preset]
    _refuse_beta_for_fql(agent, args)
    beta = 0.0 if agent == 'fql' else _pick(args.beta, task.beta if task.beta is not None else DEFAULT_BETA)
    config = _config_for(task, agent, preset, beta, args)
    seeds = args.seeds or [_pick(args.seed, 0)]
    chunk = _pick(args.updates_per_call, defaults['chunk'])
    steps = _pick(args.steps, defaults['steps'])
    chunk = min(chunk, steps)
    eval_every = align(_pick(args.eval_every, defaults['eval_every']), chunk)
    eval_episodes = _pick(args.eval_episodes, defaults['eval_episodes'])
    out = Path(args.out) if args.out else DEFAULT_OUT_ROOT / _run_name(task.name, agent, preset, seeds)
    check_writable(out)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f'--out {out} already holds files; continue it with --resume {out} or choose a new folder')
    betas = args.betas or [beta]
    return Plan('train', task, agent, preset, config, seeds, steps, beta, betas, eval_every,
                eval_episodes, min(_pick(args.eval_envs, defaults['eval_envs']), eval_episodes),
                _pick(args.video_episodes, defaults['video_episodes']), args.frame_skip,
                align(_pick(args.checkpoint_every, defaults['checkpoint_every']), chunk), chunk, out,
                args.data_dir or _default_data_dir(), _pick(args.dataset_episodes, defaults['dataset_episodes']), None,
                download=args.download, sampler=_sampler_settings(args, None, config),
                selection_episodes=_selection_episodes(args, betas, eval_episodes),
                success_timing=_pick(args.success_timing, DEFAULT_SUCCESS_TIMING), reward=args.reward or 'dense')


def _default_data_dir() -> str:
    from envs.datasets import DEFAULT_DATA_DIR
    return DEFAULT_DATA_DIR


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    plan = plan_run(args)
    from harness.session import execute
    return execute(plan)


if __name__ == '__main__':
    sys.exit(run_main(main))
