"""Ship a trained agent: export one seed's parameters with a card that states what it scores.

    python -m harness.card artifacts/runs/<run> --seed 12 --name cube-single-small \
        --betas 0,0.01,0.03,0.1,0.3 --eval-episodes 50
    python -m harness.card artifacts/checkpoints/cube-single-small --refresh   # measure it again

writes artifacts/checkpoints/<name>/params.msgpack (the networks acting needs, no optimiser state)
and card.json, after evaluating the exported parameters exactly as a user would
(`python -m harness.run --checkpoint artifacts/checkpoints/<name> --betas ...`, into
artifacts/sweeps/card-<name>-<time>, beside --root, where its page stays): the best β is
chosen on selection episodes and β = 0 and the best β are reported on held-out episodes. The card
holds the task and dataset, the training command, seeds, updates and wall time, the sampler
settings, `best_beta`, and `success` = {β: rate with its interval} for β = 0 and the best β.
tests/test_shipped.py re-evaluates the held-out episodes and compares them with the card.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import jax

from envs.datasets import DEFAULT_DATA_DIR
from envs.tasks import resolve_task
from envs.vector import make_task_env
from harness.checkpoints import CARD_FILE, export_params, find_checkpoint, read_meta, restore_as_trained
from harness.config import check_writable
from harness.errors import OneLineArgumentParser, UsageError, run_main
from harness.files import write_json_atomic
from harness.page import dataset_card
from harness.run import beta_list, main as run_harness, nonnegative_int, positive_int
from harness.outputs import training_seconds

SHIPPED_ROOT = Path('artifacts/checkpoints')


def folder_name(text: str) -> str:
    """One folder name: anything with a path in it ('../../x', 'a/b') would put the card outside --root."""
    if text in ('', '.', '..') or '/' in text or '\\' in text:
        raise argparse.ArgumentTypeError(f"--name is a folder name under --root, without '/' or '..', got '{text}'")
    return text


def parse_args(argv):
    p = OneLineArgumentParser(prog='python -m harness.card', description=__doc__.splitlines()[0])
    p.add_argument('run', help='run folder (or checkpoint) to export from; with --refresh, a shipped checkpoint')
    p.add_argument('--refresh', action='store_true',
                   help="measure a shipped card again with its own βs, episodes and sampler flags (after a change "
                        'to evaluation), rewriting its measured fields')
    p.add_argument('--seed', type=nonnegative_int, help='which of the run\'s seeds to ship')
    p.add_argument('--name', type=folder_name, help='folder name under artifacts/checkpoints/')
    p.add_argument('--betas', type=beta_list, help='βs to select from, e.g. 0,0.01,0.03,0.1,0.3')
    p.add_argument('--eval-episodes', type=positive_int, default=50, help='held-out episodes per β (default 50)')
    p.add_argument('--selection-episodes', type=positive_int, default=None,
                   help='β-selection episodes per β (default: as many as --eval-episodes)')
    p.add_argument('--sampler-args', default='', help='extra harness.run sampler flags, e.g. "--guidance-at denoised"')
    p.add_argument('--root', default=str(SHIPPED_ROOT),
                   help='where shipped checkpoints live; the evaluation sweep goes to its sibling sweeps/')
    return p.parse_args(argv)


def export(args) -> int:
    checkpoint = find_checkpoint(args.run)
    meta = read_meta(checkpoint)
    if args.seed not in meta['seeds']:
        raise UsageError(f"--seed {args.seed} was not trained in {args.run} (its seeds: {meta['seeds']})")
    run_dir = Path(checkpoint).parent.parent
    config_path, summary_path = run_dir / 'config.json', run_dir / 'summary.json'
    if not config_path.is_file():
        raise UsageError(f'{run_dir} has no config.json: pass a training run folder')
    run_config = json.loads(config_path.read_text())
    run_summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    task = resolve_task(meta['task']['name'])
    env = make_task_env(task.env_id)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    agents, _ = restore_as_trained(checkpoint, obs_dim, act_dim, f'task {task.env_id}')
    index = meta['seeds'].index(args.seed)
    one_seed = jax.tree.map(lambda x: x[index:index + 1], agents)
    out = Path(args.root) / args.name
    # The evaluation is a sweep like any other; it is kept (its page is printed) beside the shipped root.
    sweep = Path(args.root).parent / 'sweeps' / f"card-{args.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_writable(sweep)
    shipped_meta = {**{k: meta[k] for k in ('task', 'agent', 'preset', 'config', 'beta', 'step')}, 'seeds': [args.seed],
                    'reward': meta.get('reward', 'dense')}
    card = {
        'name': args.name, 'task': task.name, 'env_id': task.env_id,
        'dataset': dataset_card(task.dataset_name, run_config.get('data_dir', DEFAULT_DATA_DIR)),
        'training_command': run_config['command'], 'trained_seeds': meta['seeds'], 'seeds': [args.seed],
        'updates': meta['step'], 'agent': meta['agent'], 'preset': meta['preset'], 'critic': meta['config'].get('critic', 'td'),
        'horizon': meta['config'].get('horizon', 1),
        'reward': meta.get('reward', 'dense'),
        'wall_time_s': run_summary.get('timing_s', {}).get('total'),
        'training_time_s': training_seconds(run_dir),
    }
    export_params(out, one_seed, shipped_meta, {**card, 'status': 'exported, not yet evaluated'})
    return measure(out, card, args.betas, args.eval_episodes, args.selection_episodes, args.sampler_args.split(), sweep)


def refresh(args) -> int:
    """Measure a shipped card again, with its own βs, episodes and sampler flags: after a change to how
    evaluation draws its episodes, the card states what the current code scores."""
    out = Path(args.run)
    if not (out / CARD_FILE).is_file():
        raise UsageError(f'--refresh needs a shipped checkpoint folder (with {CARD_FILE}), got {out}')
    card = json.loads((out / CARD_FILE).read_text())
    argv = card['evaluation']['argv']
    extra = argv[argv.index('--success-timing'):]
    sweep = out.parent.parent / 'sweeps' / f"card-{out.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_writable(sweep)
    return measure(out, {k: v for k, v in card.items() if k != 'meta'}, [float(b) for b in card['sweep']],
                   card['evaluation']['held_out_episodes'], card['evaluation']['selection_episodes'], extra, sweep)


def measure(out: Path, card: dict, betas, eval_episodes: int, selection_episodes: int | None, sampler_argv: list,
            sweep: Path) -> int:
    """Evaluate the exported parameters as a user would, choose β on the selection episodes, and
    write the measured fields of the card."""
    argv = ['--checkpoint', str(out), '--betas', ','.join(f'{b:g}' for b in betas),
            '--eval-episodes', str(eval_episodes), '--video-episodes', '0', '--out', str(sweep), *sampler_argv]
    if selection_episodes is not None:
        argv += ['--selection-episodes', str(selection_episodes)]
    status = run_harness(argv)
    if status:
        return status
    summary = json.loads((sweep / 'summary.json').read_text())
    evaluated = json.loads((sweep / 'config.json').read_text())
    best = summary['best_beta']
    reported = sorted({0.0, best})  # one β when the selection episodes preferred no guidance
    by_beta = {r['beta']: r for r in summary['results']}
    sampler_flags = [a for a in sampler_argv if a not in ('--success-timing', summary['success_timing'])]
    card.update({
        'sampler': summary['sampler'],
        'success_timing': summary['success_timing'],
        'best_beta': best,
        'best_beta_selection': summary['best_beta_selection'],
        'success': {f'{b:g}': {'rate': by_beta[b]['success_rate'], 'ci95': by_beta[b]['ci95'],
                               'selection_rate': by_beta[b].get('selection_success_rate')}
                    for b in reported},
        'sweep': {f"{r['beta']:g}": {'held_out': r['success_rate'], 'selection': r.get('selection_success_rate')}
                  for r in summary['results']},
        'max_over_betas': summary['max_over_betas'],
        'evaluation': {'held_out_episodes': eval_episodes, 'env_seed_base': evaluated['eval_seed_base'],
                       'selection_episodes': evaluated['selection_episodes'],
                       'selection_seed_base': evaluated['selection_seed_base'],
                       'argv': ['--checkpoint', str(out), '--betas', ','.join(f'{b:g}' for b in reported),
                                '--eval-episodes', str(eval_episodes), '--selection-episodes', '0', '--success-timing',
                                summary['success_timing'], *sampler_flags],
                       'evaluation_time_s': summary['timing_s'].get('total')},
    })
    write_json_atomic(out / CARD_FILE, {**card, 'meta': read_meta(out)})
    print(f"shipped {out}: β=0 {card['success']['0']['rate']:.2f}, best β={best:g} "
          f"{card['success'][f'{best:g}']['rate']:.2f} on {eval_episodes} held-out episodes")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.refresh:
        return refresh(args)
    if args.seed is None or args.name is None or args.betas is None:
        raise UsageError('exporting a run needs --seed, --name and --betas (or --refresh to measure a shipped card '
                         'again)')
    return export(args)


if __name__ == '__main__':
    sys.exit(run_main(main))
