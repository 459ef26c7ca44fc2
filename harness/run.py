"""python -m harness.run: train QFQL (or FQL) on a task, evaluate it, and write one run folder.

    python -m harness.run --task antsoccer --beta 1                  # paper preset, task defaults
    python -m harness.run --task pointmaze --preset small            # minutes on a CPU
    python -m harness.run --checkpoint RUN_DIR --betas 0,0.3,1,3,10  # β sweep of a trained agent
    python -m harness.run --resume [RUN_DIR]                         # continue an interrupted run

One training update, from here: `main` -> `harness/train.py` `train` -> `Trainer.run_chunk` ->
`agents/base.py` `update_many` -> `agents/training.py` `scan_updates` -> `agents/base.py` `_update`.
Every input is checked by `harness/config.py` before anything is written; a mistake ends with one
`error: ...` line and exit status 2. The run folder is described in `harness/outputs.py`.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
from typing import Sequence

import jax

from agents import AGENTS, DEFAULT_AGENT, AgentConfig
from agents.flags import flag_fields, flag_name
from agents.sampler import SamplerSettings
from envs.dataset_spec import dataset_paths
from harness.beta_sweep import evaluate_checkpoint
from harness.config import RunConfig, plan_run
from harness.costs import describe_costs
from harness.defaults import PRESET_DEFAULTS, RECIPES
from harness.errors import OneLineArgumentParser, UsageError, run_main
from harness.train import train


def main(argv: Sequence[str] | None = None) -> int:
    # A shell starts a background job (`... &`) with Ctrl-C ignored; a run must still stop on it, with
    # its one line naming the folder to resume.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.recipe:
        apply_recipe(args)
    config = plan_run(args, command=' '.join(['python -m harness.run', *argv]))
    if config.mode == 'train':
        missing = not all(os.path.exists(p) for p in dataset_paths(config.task.dataset_name, config.data_dir))
        for line in describe_costs(config, dataset_missing=missing and not config.download,
                                   backend=jax.default_backend()):
            print(line, flush=True)
    return execute(config)


def apply_recipe(args) -> None:
    """--recipe cpu|gpu: every flag left unset takes the recipe's value (harness/defaults.py)."""
    if args.checkpoint or args.resume:
        raise UsageError('--recipe shapes a new training run; --checkpoint and --resume keep their own settings')
    settings, betas = RECIPES[args.recipe]
    for key, value in settings.items():
        if getattr(args, key) is None and not (key == 'seeds' and args.seed is not None):
            setattr(args, key, value)
    if args.betas is None and args.beta is None and AGENTS[args.agent or DEFAULT_AGENT].BETA is not None:
        args.betas = list(betas)


def execute(config: RunConfig) -> int:
    """Run the checked configuration; returns the exit status. Ctrl-C ends with one line that names
    what to run next."""
    try:
        return evaluate_checkpoint(config) if config.mode == 'evaluate' else train(config)
    except KeyboardInterrupt:
        follow_up = (f'evaluate again with --checkpoint {config.checkpoint}' if config.mode == 'evaluate' else
                     f'continue with --resume {config.out}')
        print(f'\nerror: interrupted; {follow_up}', file=sys.stderr)
        return 130


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


def comma_parts(text: str, example: str) -> list[str]:
    """The entries of a comma-separated list; an empty one ('0,,1', '0,1,') is refused rather than
    skipped, since it is more likely a lost number than a stray comma."""
    parts = [part.strip() for part in text.split(',')]
    if '' in parts:
        raise argparse.ArgumentTypeError(f"'{text}' has an empty entry; write numbers between single commas, e.g. "
                                         f"'{example}'")
    return parts


def beta_list(text: str) -> list[float]:
    """Comma-separated βs, e.g. '0,0.3,1,3,10' (duplicates dropped, order kept)."""
    return list(dict.fromkeys(beta_value(part) for part in comma_parts(text, '0,0.3,1')))


def seed_list(text: str) -> list[int]:
    """Comma-separated seeds or a range 'A-B' (inclusive), e.g. '0,1,2' or '0-4'."""
    try:
        if '-' in text.strip('-') and ',' not in text:
            low, high = (int(x) for x in text.split('-'))
            if low > high:
                raise argparse.ArgumentTypeError(f"seed range '{text}' is empty; write it low-high, e.g. '{high}-{low}'")
            values = list(range(low, high + 1))
        else:
            values = [int(x) for x in comma_parts(text, '0,1,2')]
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


def add_settings_flags(group, settings_class) -> None:
    """One flag per field of a settings dataclass that has flag metadata (agents/flags.py: help,
    choices, parse, the default it states); a flag left out is None, so the plan can tell it from a
    value given."""
    for field in flag_fields(settings_class):
        meta = field.metadata
        group.add_argument(flag_name(field.name), dest=field.name, choices=meta['choices'],
                           type=_flag_type(meta['parse']), help=meta['help'] + _shown_default(field))


def _shown_default(field) -> str:
    """How a flag's help ends: the default it takes when left out."""
    meta = field.metadata
    if meta['shown_default'] is not None:
        return f" (default: {meta['shown_default']})"
    if meta['task_default']:
        return " (default: the task's)"
    return f' (default {field.default})' if field.default is not None else ''


def _flag_type(parse):
    """An argparse type from a settings parser, whose ValueError becomes the flag's one-line error; a
    type (float) is argparse's own, with its own message for text it cannot read."""
    if parse is None or isinstance(parse, type):
        return parse

    def checked(text: str):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return checked


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(prog='python -m harness.run',
                              description='Train and evaluate QFQL / FQL on an OGBench task; β sweeps of checkpoints.')
    p.add_argument('--task', help='short name (antmaze, antsoccer, cube-double, scene, puzzle-3x3, pointmaze, ...) '
                                  'or a full OGBench single-task id')
    p.add_argument('--agent', choices=list(AGENTS), default=None, help=f'default {DEFAULT_AGENT}')
    p.add_argument('--recipe', choices=sorted(RECIPES),
                   help="cpu: the small preset, 3 seeds, 40k updates and a β sweep with selection episodes, as the "
                        "README's Table 1 on a CPU ran; gpu: the paper's budget (paper preset, 8 seeds, 1M updates, "
                        "1000 episodes) with the same protocol (flags given explicitly win)")
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
    add_settings_flags(p.add_argument_group('training settings of the agent (--resume refuses a change)'),
                       AgentConfig)
    add_settings_flags(p.add_argument_group(
        'guided sampler (test time only: may differ between --checkpoint sweeps and on --resume)'), SamplerSettings)
    p.add_argument('--held-out', choices=['all', 'selected'],
                   help='with β selection, the βs scored on the held-out episodes: all (default: the per-β held-out '
                        'curve and the max over β stay) or selected (β = 0 and the selected β only: fewer episodes)')
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
    p.add_argument('--wandb', metavar='PROJECT',
                   help="also log metrics, evaluations and videos to this W&B project (pip install -e '.[wandb]'; "
                        'offline unless W&B credentials and a network are there, or WANDB_MODE says otherwise)')
    return p


if __name__ == '__main__':
    sys.exit(run_main(main))
