"""`python -m tools.compare`: one markdown table of held-out success across tasks, one row per variant.

    python -m tools.compare \\
        'td · noisy=artifacts/sweeps/cube1-td-noisy,artifacts/sweeps/cube3-td-noisy' \\
        'FQL=artifacts/runs/cube1-fql-s11-13,artifacts/runs/cube3-fql-s11-13'

Each argument is `[LABEL=]DIR[,DIR...]`, one folder per task, each written by `python -m harness.run`
(a β sweep of a checkpoint, or a training run). A row gives, per task, the held-out success at the β
its own selection episodes chose, and over all tasks × seeds the IQM of the per-seed success with a
stratified-bootstrap 95 % interval, at β = 0 and at the selected β. Nothing here picks a β: rows whose
folders have no selected β (several βs evaluated without selection episodes) are refused, and so are
tables that would mix reward labellings or success timings, which measure different things.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import OneLineArgumentParser, UsageError, run_main
from harness.report import seed_task_matrix, stratified_iqm
from harness.tables import Column, Row, Table, estimate, text
from harness.view import damaged_file_error, read_json_object


@dataclass(frozen=True)
class TaskResult:
    """What one folder says about one task: held-out per-seed success at β = 0 and at the selected β."""
    env_id: str
    agent: str
    selected_beta: float
    selected: dict
    unguided: dict | None
    protocol: tuple


def load_result(folder: Path) -> TaskResult:
    path = folder / 'summary.json'
    if not path.is_file():
        raise UsageError(f'{folder} has no summary.json; give folders written by python -m harness.run')
    try:
        summary = read_json_object(path)
        by_beta = {r['beta']: r for r in summary['results']}
        agent, env_id = summary['agent'], summary['env_id']
    except ValueError as error:
        raise damaged_file_error(folder, 'summary.json', str(error)) from None
    except (KeyError, TypeError):
        raise damaged_file_error(folder, 'summary.json', 'not the summary harness.run writes: no results, '
                                 'agent or env_id') from None
    beta = summary.get('best_beta')
    if beta is None or beta not in by_beta:
        raise UsageError(f'{folder} has no selected β; sweep it with --selection-episodes so a β is chosen honestly')
    unguided = None if agent == 'fql' else by_beta.get(0.0)
    return TaskResult(env_id, agent, beta, by_beta[beta], unguided,
                      (summary.get('reward', 'dense'), summary.get('success_timing')))


def parse_row(text: str) -> tuple[str | None, list[Path]]:
    label, _, folders = text.rpartition('=')
    paths = [Path(f) for f in folders.split(',') if f]
    if not paths:
        raise UsageError(f"no folder in '{text}'; write [LABEL=]DIR[,DIR...]")
    return label or None, paths


def default_label(folder: Path) -> str:
    """critic · where ∇Q is taken · β scale, read from the folder's config.json (or the agent for FQL)."""
    path = folder / 'config.json'
    if not path.is_file():
        return folder.name
    try:
        config = read_json_object(path)
        agent, critic = config['agent'], config['config'].get('critic', 'td')
    except ValueError as error:
        raise damaged_file_error(folder, 'config.json', str(error)) from None
    except (KeyError, AttributeError):
        raise damaged_file_error(folder, 'config.json', "not the config harness.run writes: no agent or agent "
                                 "'config'") from None
    if agent == 'fql':
        return 'FQL'
    sampler = config.get('sampler', {})
    return ' · '.join([critic, sampler.get('guidance_at', 'noisy'),
                       sampler.get('guidance_scale', 'absolute')])


def score_matrix(results: list[dict], tasks: list[str]) -> np.ndarray:
    """[seeds, tasks] per-seed success (rliable's layout); every task must have the same number of seeds."""
    try:
        return seed_task_matrix([r['per_seed_success'] for r in results])
    except ValueError:
        raise UsageError(f'the tasks {tasks} were run with different numbers of seeds; '
                         'the IQM needs one design') from None


def table(rows: list[tuple[str, list[TaskResult]]]) -> str:
    tasks = sorted({r.env_id for _, results in rows for r in results})
    protocols = {r.protocol for _, results in rows for r in results}
    if len(protocols) > 1:
        raise UsageError(f'the folders mix (reward, success timing) settings {sorted(protocols)}; compare them in separate tables')
    for label, results in rows:
        if sorted(r.env_id for r in results) != tasks:
            raise UsageError(f"row '{label}' covers {sorted(r.env_id for r in results)}, not every task {tasks}")
    short = [t.replace('-singletask', '').replace('-v0', '') for t in tasks]
    columns = (Column('variant', 'variant'),
               *(Column(t, f'{name}: held-out at selected β') for t, name in zip(tasks, short)),
               Column('unguided', 'IQM at β = 0 [95 % CI]'), Column('selected', 'IQM at selected β [95 % CI]'))
    body = []
    for label, results in rows:
        by_task = {r.env_id: r for r in results}
        ordered = [by_task[t] for t in tasks]
        cells = [text(f'{r.selected["success_rate"]:.2f}' + ('' if r.agent == 'fql' else f' (β {r.selected_beta:g})'))
                 for r in ordered]
        unguided = (text('—') if any(r.unguided is None for r in ordered)
                    else estimate(*stratified_iqm(score_matrix([r.unguided for r in ordered], tasks)), digits=2))
        guided = estimate(*stratified_iqm(score_matrix([r.selected for r in ordered], tasks)), digits=2)
        body.append(Row((text(label), *cells, unguided, guided)))
    return Table(columns, tuple(body)).markdown()


def main(argv=None) -> int:
    parser = OneLineArgumentParser(prog='python -m tools.compare', description=__doc__.split('\n\n')[0])
    parser.add_argument('rows', nargs='+', metavar='[LABEL=]DIR[,DIR...]', help='one row: a folder per task')
    args = parser.parse_args(argv)
    rows = []
    for argument in args.rows:
        label, folders = parse_row(argument)
        rows.append((label or default_label(folders[0]), [load_result(f) for f in folders]))
    print(table(rows), end='')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
