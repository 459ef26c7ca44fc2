"""The run configuration: `RunConfig`, a frozen record of every resolved setting, and `plan_run`, which
builds it from the command line's arguments. Everything the user can get wrong is checked here,
before anything is written; a mistake raises `UsageError` (one line, exit status 2).

Three modes: 'train' (a new run folder), 'resume' (an interrupted run's folder, from its newest
intact checkpoint) and 'evaluate' (a β sweep of a trained agent into a new sweep folder).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from agents import AGENTS, DEFAULT_AGENT, AgentConfig, resolve_config
from agents.config import sampler_defaults
from agents.flags import flag_fields, flag_name
from agents.sampler import SamplerSettings
from envs.datasets import DEFAULT_DATA_DIR
from envs.tasks import Task, resolve_task
from harness.checkpoints import CARD_FILE, find_checkpoint, is_exported, list_checkpoints, read_meta
from harness.defaults import (DEFAULT_BETA, DEFAULT_OUT_ROOT, DEFAULT_SUCCESS_TIMING, DEFAULT_SWEEP_ROOT,
                              EVAL_SEED_BASE, PRESET_DEFAULTS, SELECTION_SEED_BASE)
from harness.errors import UsageError
from harness.outputs import holds_files, refuse_if_in_use
from harness.tracking import import_wandb


def _setting(default=dataclasses.MISSING, *, json: str | None = '', flag: str = '', evaluation: bool = False):
    """A RunConfig field: its config.json key (`json`; '' the field's name, None not written), the
    flag that sets it (`flag`; '' the field's name), and whether a --resume may change it (`evaluation`)."""
    return dataclasses.field(default=default, metadata={'json': json, 'flag': flag, 'evaluation': evaluation})


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Every resolved setting of a run, in config.json's order. `_build` makes it from the flags and
    `to_json` writes it, both from these fields alone."""
    mode: str                  # 'train' | 'resume' | 'evaluate'
    task: Task
    agent: str                 # a name of agents.AGENTS
    preset: str
    agent_config: AgentConfig = _setting(json='config')
    seeds: list[int]
    steps: int
    beta: float = _setting(evaluation=True)    # the run's β: periodic evaluations (and the guided TD target)
    final_betas: list[float] = _setting(flag='betas', evaluation=True)
    eval_every: int = _setting(evaluation=True)
    eval_episodes: int = _setting(evaluation=True)
    eval_envs: int = _setting(evaluation=True)
    video_episodes: int = _setting(evaluation=True)
    frame_skip: int | None = _setting(None, evaluation=True)
    checkpoint_every: int = _setting(evaluation=True)
    chunk: int = _setting(json='updates_per_call', flag='updates_per_call')   # updates per jitted call
    out: Path
    data_dir: str = DEFAULT_DATA_DIR
    dataset_episodes: int | None
    checkpoint: Path | None    # what to restore (resume / evaluate); None: resume from update 0
    start_step: int = _setting(0, json=None)
    download: bool = False     # fetch a missing dataset from OGBench's server instead of regenerating it
    eval_seed_base: int = dataclasses.field(default=EVAL_SEED_BASE, init=False)
    sampler: SamplerSettings = _setting(SamplerSettings(), evaluation=True)
    selection_episodes: int = _setting(0, evaluation=True)  # per seed and β, on SELECTION_SEED_BASE starts; 0 = none
    selection_seed_base: int = dataclasses.field(default=SELECTION_SEED_BASE, init=False)
    held_out: str = _setting('all', evaluation=True)  # with β selection, the βs scored on held-out starts: 'all' or 'selected'
    success_timing: str = _setting(DEFAULT_SUCCESS_TIMING, evaluation=True)
    reward: str = 'dense'         # dataset reward labels (training only)
    command: str = ''             # the command line, as recorded in config.json
    wandb: str | None = _setting(None, evaluation=True)   # W&B project that mirrors the run (harness/tracking.py); None: off
    dataset_sha256: str | None = None   # of the file training reads: --resume refuses another (set by train)

    def evaluation_settings(self) -> dict:
        """The settings a --resume may change (they shape evaluation, never training)."""
        keys = {_json_key(f) for f in dataclasses.fields(self) if f.metadata.get('evaluation')}
        return {k: v for k, v in self.to_json().items() if k in keys}

    def to_json(self) -> dict:
        """config.json (its keys predate this class: 'config' is the agent's, 'updates_per_call' the chunk)."""
        return {_json_key(f): _json_value(getattr(self, f.name)) for f in dataclasses.fields(self) if _json_key(f)}


def _json_key(field: dataclasses.Field) -> str | None:
    key = field.metadata.get('json', '')
    return field.name if key == '' else key


def _json_value(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return str(value) if isinstance(value, Path) else value


def _build(args, command: str, defaults: dict, **fixed) -> RunConfig:
    """The one place a RunConfig is made. `fixed` holds what the mode decides itself; every other field
    takes its flag when given, else `defaults` (the preset's, or what a resumed run recorded, by
    config.json key), else the field's own default. Then the intervals are rounded up to whole chunks,
    the envs capped at the episodes, and β selection and the sampler settings resolved."""
    values = {}
    for field in dataclasses.fields(RunConfig):
        if not field.init or field.name in fixed:
            continue
        given = getattr(args, field.metadata.get('flag') or field.name, None)
        default = defaults.get(field.name, defaults.get(_json_key(field), field.default))
        if given is not None or default is not dataclasses.MISSING:
            values[field.name] = default if given is None else given
    values.update(fixed)
    chunk = values['chunk']
    values.update(
        eval_every=align(values['eval_every'], chunk), checkpoint_every=align(values['checkpoint_every'], chunk),
        eval_envs=min(values['eval_envs'], values['eval_episodes']), command=command,
        selection_episodes=_selection_episodes(args, values['final_betas'], values['eval_episodes'],
                                               defaults.get('selection_episodes')),
        sampler=_sampler_settings(args, defaults.get('sampler'), values['agent_config']))
    return RunConfig(**values)


def plan_run(args, command: str = '') -> RunConfig:
    """Resolve defaults and check every input of the parsed command line `args`."""
    if args.resume and args.checkpoint:
        raise UsageError('--resume continues training and --checkpoint only evaluates; use one of them')
    if args.checkpoint:
        config = _plan_evaluation(args, command)
    elif args.resume:
        config = _plan_resume(args, command)
    else:
        config = _plan_training(args, command)
    if config.wandb:
        import_wandb()            # installed? (one line if not; a resumed run may have logged to W&B before)
    return config


def _plan_training(args, command: str) -> RunConfig:
    if not args.task:
        raise UsageError('--task is required (e.g. --task pointmaze), unless --checkpoint or --resume is given')
    task = resolve_task(args.task)
    agent = args.agent or DEFAULT_AGENT
    preset = args.preset or 'paper'
    defaults = PRESET_DEFAULTS[preset]
    _refuse_beta_without_use(agent, args)
    beta = _acting_beta(agent, _pick(args.beta, task.beta if task.beta is not None else DEFAULT_BETA))
    agent_config = _agent_config_for(task, agent, preset, beta, args)
    seeds = args.seeds or [_pick(args.seed, 0)]
    steps = _pick(args.steps, defaults['steps'])
    chunk = min(_pick(args.updates_per_call, defaults['chunk']), steps)
    out = Path(args.out) if args.out else DEFAULT_OUT_ROOT / _run_name(task.name, agent, preset, seeds)
    check_writable(out)
    check_data_dir(args.data_dir)
    refuse_if_in_use(out)
    if out.exists() and holds_files(out):
        raise UsageError(f'--out {out} already holds files; continue it with --resume {out} or choose a new folder')
    return _build(args, command, {**defaults, 'final_betas': [beta]}, mode='train', task=task, agent=agent, preset=preset,
                  agent_config=agent_config, seeds=seeds, steps=steps, beta=beta, chunk=chunk, out=out, checkpoint=None)


def _plan_resume(args, command: str) -> RunConfig:
    run_dir = _latest_run(args.task) if args.resume == 'latest' else Path(args.resume)
    if not (run_dir / 'config.json').is_file():
        raise UsageError(f'--resume {run_dir}: not a run folder (no config.json)')
    refuse_if_in_use(run_dir)
    saved = _read_run_config(run_dir)
    if saved.get('mode') == 'evaluate':
        raise UsageError(f"--resume {run_dir}: a β sweep of {saved['checkpoint']}, not a training run; a sweep writes "
                         'its results only when its one rollout ends, so run it again into a new folder: '
                         f"{saved['command'] or 'python -m harness.run --checkpoint ...'} with another --out")
    task = resolve_task(saved['task']['name'])
    if args.task and resolve_task(args.task).env_id != task.env_id:
        raise UsageError(f'--resume {run_dir} trained task {task.env_id}, not {args.task}')
    agent_config = AgentConfig(**saved['config'])
    check_writable(run_dir)
    # Killed before its first checkpoint: the run starts again from update 0 in the same folder.
    found = list_checkpoints(run_dir / 'checkpoints')
    step, checkpoint = found[-1] if found else (0, None)
    steps = _pick(args.steps, saved['steps'])
    # A run stopped after its last checkpoint (during the final evaluation, plots or summary)
    # resumes into its final evaluation; a finished one (it has summary.json) has nothing left to do.
    if step > steps or step == steps and (run_dir / 'summary.json').is_file():
        raise UsageError(f'--resume {run_dir}: already trained {step} of {steps} updates and evaluated; pass a '
                         f'larger --steps, or evaluate it with --checkpoint {run_dir}')
    _refuse_beta_without_use(saved['agent'], args)
    _refuse_training_changes(args, saved, run_dir)
    return _build(args, command, saved, mode='resume', task=task, agent=saved['agent'], preset=saved['preset'],
                  agent_config=agent_config, seeds=saved['seeds'], steps=steps, chunk=saved['updates_per_call'],
                  out=run_dir, checkpoint=checkpoint, start_step=step,
                  reward=_refuse_reward_change(args, saved.get('reward', 'dense')))


def _read_run_config(run_dir: Path) -> dict:
    """A run's config.json, or one line when it cannot be resumed from it. It is written atomically, so
    a damaged one was damaged afterwards, and the settings to continue with are lost with it."""
    path = run_dir / 'config.json'
    try:
        saved = json.loads(path.read_text())
        if not isinstance(saved, dict):
            raise ValueError('not a JSON object')
    except (OSError, ValueError) as error:
        raise UsageError(f'--resume {run_dir}: {path} is damaged ({type(error).__name__}: {str(error)[:80]}), so the run '
                         'cannot be continued; start it again with its original command and a new --out') from None
    if not ({'task', 'config', 'agent', 'seeds', 'steps'} <= set(saved) and isinstance(saved['task'], dict)
            and isinstance(saved['config'], dict)):
        raise UsageError(f'--resume {run_dir}: its config.json is not a training run\'s; start a new run with --task')
    return saved


def _plan_evaluation(args, command: str) -> RunConfig:
    check_data_dir(args.data_dir)
    checkpoint = find_checkpoint(args.checkpoint)
    meta = read_meta(checkpoint)
    saved_task = resolve_task(meta['task']['name'] or meta['task']['env_id'])
    _refuse_task_disagreement(checkpoint, meta, saved_task)
    task = resolve_task(args.task) if args.task else saved_task
    if args.agent and args.agent != meta['agent']:
        raise UsageError(f"--agent {args.agent} does not match the checkpoint's agent {meta['agent']}")
    agent_config = AgentConfig(**meta['config'])
    preset = meta['preset']
    defaults = PRESET_DEFAULTS.get(preset, PRESET_DEFAULTS['paper'])
    _refuse_beta_without_use(meta['agent'], args)
    beta = _acting_beta(meta['agent'], _pick(args.beta, meta.get('beta', DEFAULT_BETA)))
    betas = args.betas or [beta]
    out = Path(args.out) if args.out else DEFAULT_SWEEP_ROOT / (
        f"{Path(checkpoint).parent.parent.name or 'checkpoint'}-step{meta['step']}-betas-"
        f"{'_'.join(f'{b:g}' for b in betas)}-{time.strftime('%Y%m%d-%H%M%S')}")
    check_writable(out)
    refuse_if_in_use(out, sweep=True)
    if out.exists() and holds_files(out):
        raise UsageError(f'--out {out} is not empty; choose a new folder')
    return _build(args, command, defaults, mode='evaluate', task=task, agent=meta['agent'], preset=preset,
                  agent_config=agent_config, seeds=list(meta['seeds']), steps=int(meta['step']), beta=beta,
                  final_betas=betas, eval_every=0, checkpoint_every=0, chunk=1, out=out, dataset_episodes=None,
                  checkpoint=checkpoint, start_step=int(meta['step']),
                  reward=_refuse_reward_change(args, meta.get('reward', 'dense')))


# ---- helpers of the three plans ----------------------------------------------------------------------------
def align(interval: int, chunk: int) -> int:
    """Round an eval/checkpoint interval up to a whole number of chunks (0 stays 0 = never)."""
    return 0 if interval <= 0 else int(math.ceil(interval / chunk) * chunk)


def check_data_dir(data_dir: str | None) -> None:
    """--data-dir must be a folder, or a path where one can be made (datasets are regenerated into it)."""
    if data_dir is None:
        return
    probe = Path(data_dir).expanduser().absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f'--data-dir {data_dir}: {probe} is a file, not a folder; pass the folder that holds the '
                         'datasets (default ~/.ogbench/data)')


def check_writable(path: Path) -> None:
    """Fail early, with one line, if `path` cannot be created or written (nothing is left behind)."""
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


def _agent_config_for(task, agent: str, preset: str, beta: float, args) -> AgentConfig:
    """The preset's config with, on top, the task's defaults (the Task's attributes for the fields marked
    task_default, and the agent's own `task_config`), the run's β, and every training flag given -- the
    sampler flags too: the guided target action trains with the guards the agent acts with."""
    agent_class = AGENTS[agent]
    training = flag_fields(AgentConfig)
    flagged = [f.name for f in training] + list(sampler_defaults(AgentConfig()))
    given = {name: getattr(args, name) for name in flagged if getattr(args, name) is not None}
    owners = {field: name for name, other in AGENTS.items() for field in other.CONFIG_FIELDS}
    foreign = [field for field in given if field in owners and field not in agent_class.CONFIG_FIELDS]
    if foreign:
        owner = owners[foreign[0]]
        raise UsageError(f"{', '.join(flag_name(f) for f in foreign)}: {AGENTS[owner].TITLE} options, "
                         f'which {agent_class.TITLE} does not read; drop them or use --agent {owner}')
    task_defaults = {f.name: getattr(task, f.name) for f in training if f.metadata['task_default']}
    overrides = {**task_defaults, 'beta': beta, **agent_class.task_config(task.env_id, task.source), **given}
    try:
        return resolve_config(preset, **overrides)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _pick(explicit, default):
    return default if explicit is None else explicit


def _sampler_settings(args, saved: dict | None, agent_config: AgentConfig) -> SamplerSettings:
    """Flags win; then what the run recorded (resume); then the agent config's sampler defaults."""
    base = SamplerSettings(**saved) if saved else SamplerSettings.of(agent_config)
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(SamplerSettings)}
    return dataclasses.replace(base, **{k: v for k, v in flags.items() if v is not None})


def _refuse_training_changes(args, saved: dict, run_dir: Path) -> None:
    """--resume continues the same training: a flag that would change it is refused in one line (flags
    that only change evaluation -- β, episodes, videos, sampler settings -- are taken and recorded)."""
    config = saved['config']
    seeds = args.seeds or ([args.seed] if args.seed is not None else None)
    given = {'--agent': (args.agent, saved['agent']), '--preset': (args.preset, saved['preset']),
             '--seed/--seeds': (seeds, saved['seeds']),
             # A field a run's config.json predates was trained with its default.
             **{flag_name(f.name): (getattr(args, f.name), config.get(f.name, f.default))
                for f in flag_fields(AgentConfig)},
             '--updates-per-call': (args.updates_per_call, saved['updates_per_call']),
             '--dataset-episodes': (args.dataset_episodes, saved['dataset_episodes']),
             '--data-dir': (args.data_dir, saved['data_dir'])}
    if config['target_action'] == 'guided':     # the guided TD target trains with the run's β
        given['--beta'] = (args.beta, saved['beta'])
    changed = [f'{flag} {value} (trained with {before})' for flag, (value, before) in given.items()
               if value is not None and value != before]
    if changed:
        raise UsageError(f"--resume {run_dir} would change its training: {'; '.join(changed)}; drop these flags, or "
                         'start a new run')


def _refuse_task_disagreement(checkpoint: Path, meta: dict, saved_task: Task) -> None:
    """The task a checkpoint's metadata names must be the one its env ids (meta's, and a shipped
    card's own) say: a task of the same shape would evaluate without complaint, on the wrong task."""
    named = {meta['task'].get('env_id')}
    if is_exported(checkpoint):
        named.add(json.loads((checkpoint / CARD_FILE).read_text()).get('env_id'))
    others = sorted(named - {None, saved_task.env_id})
    if others:
        where = CARD_FILE if is_exported(checkpoint) else 'meta.json'
        raise UsageError(f"checkpoint {checkpoint}: its {where} names task {meta['task']['name']} "
                         f"({saved_task.env_id}) but env_id {others[0]}; correct it to the task it was trained on "
                         'or export the card again with python -m harness.card')


def _refuse_reward_change(args, trained_with: str) -> str:
    """The reward labels shaped the critic: a trained agent keeps the ones it was trained with."""
    if args.reward is not None and args.reward != trained_with:
        raise UsageError(f'--reward {args.reward}: this agent was trained with {trained_with} rewards; '
                         'the reward labels only matter for training, so drop --reward or train a new run')
    return trained_with


def _acting_beta(agent: str, beta: float) -> float:
    """The run's β: as given for an agent whose acting reads β, else 0 (no guidance)."""
    return 0.0 if AGENTS[agent].BETA is None else beta


def _refuse_beta_without_use(agent: str, args) -> None:
    """An agent whose acting ignores β would only have its results mislabelled by one."""
    agent_class = AGENTS[agent]
    if agent_class.BETA is None and (args.beta is not None or args.betas):
        raise UsageError(f'{agent_class.TITLE} acts with its {agent_class.ACTING} and has no β; drop --beta/--betas '
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
