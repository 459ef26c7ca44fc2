"""`python -m tools.table1`: the paper's Table 1 beside what the run folders of `tools/table1.sh` measured.

    python -m tools.table1                          # ~/qfql-runs, the CPU recipe's folders
    python -m tools.table1 RUNS --horizons 1,5      # plain and action-chunked runs side by side
    python -m tools.table1 RUNS --recipe gpu        # the folders of `bash tools/table1.sh gpu`
    python -m tools.table1 --horizons 1,5 --tasks cube-double,scene,puzzle-3x3   # some rows only

Each row reads RUNS/<task>-qfql<suffix> and RUNS/<task>-fql<suffix> (suffix '-h5' for horizon 5,
'-gpu' for the GPU recipe, as tools/table1.sh names them): QFQL's held-out success at β = 0 and at the
β its selection episodes chose, FQL's at its α, each with the 95 % interval of the summary, and what
each QFQL run cost. A row without folders says so, and one still training gives the step it has reached,
so the README's table can be written from the folders alone and every number in it traced to one.
"""
from __future__ import annotations

import sys
from pathlib import Path

from agents import AGENTS
from envs.tasks import resolve_task
from harness.checkpoints import list_checkpoints
from harness.errors import OneLineArgumentParser, UsageError, run_main
from harness.outputs import fmt_seconds, training_seconds
from harness.page import dataset_card
from harness.sweep_report import paper_text
from harness.tables import MISSING, Column, Row, Table, estimate, text
from harness.view import damaged_file_error, read_json_object

# The rows of the paper's Table 1, in its order, as `--task` names them.
TASKS = ('antmaze', 'antsoccer', 'cube-double', 'scene', 'puzzle-3x3', 'antmaze-umaze-diverse',
         'antmaze-medium-diverse', 'antmaze-large-diverse')


def run_folder(runs: Path, task: str, agent: str, horizon: int, recipe: str) -> Path:
    return runs / f"{task}-{agent}{'' if horizon == 1 else f'-h{horizon}'}{'-gpu' if recipe == 'gpu' else ''}"


def read_run(folder: Path) -> dict | None:
    """The folder's summary, or {'step': N} for a run still training (its newest checkpoint), or None."""
    if (folder / 'summary.json').is_file():
        try:
            summary = read_json_object(folder / 'summary.json')
        except ValueError as error:
            raise damaged_file_error(folder, 'summary.json', str(error)) from None
        if not (isinstance(summary.get('results'), list) and summary['results'] and 'best_beta' in summary):
            raise damaged_file_error(folder, 'summary.json', 'not the summary harness.run writes: no results or best_beta')
        return summary
    if (folder / 'config.json').is_file():
        found = list_checkpoints(folder / 'checkpoints')
        return {'step': found[-1][0] if found else 0}
    return None


def success(result: dict) -> str:
    return estimate(result['success_rate'], result['ci95'], digits=2).text


def qfql_cells(summary: dict | None) -> tuple[str, str]:
    """(β = 0, selected β) of a QFQL run."""
    if summary is None:
        return '—', '—'
    if 'results' not in summary:
        return f"training ({summary['step']:,} updates)", '—'
    by_beta = {r['beta']: r for r in summary['results']}
    unguided = success(by_beta[0.0]) if 0.0 in by_beta else '—'
    beta = summary['best_beta']
    if beta == 0.0:
        return unguided, 'β = 0 selected'
    return unguided, f'{success(by_beta[beta])} (β = {beta:g})'


def fql_cell(summary: dict | None) -> str:
    if summary is None:
        return '—'
    if 'results' not in summary:
        return f"training ({summary['step']:,} updates)"
    return success(summary['results'][0])


def budget(summary: dict | None, folder: Path) -> str:
    """Seeds × updates, held-out episodes, the dataset's episodes and the wall time of training and evaluation."""
    if summary is None or 'results' not in summary:
        return '—'
    result = summary['results'][0]
    config = read_json_object(folder / 'config.json')
    card = dataset_card(config['task']['dataset_name'], config['data_dir'])
    timing = summary.get('timing_s', {})
    # metrics.jsonl spans every --resume; the summary's timer only the process that finished the run.
    training = training_seconds(folder) or timing.get('training', 0)
    return (f"{len(summary['seeds'])} × {summary['steps']:,} updates ({summary['preset']}), "
            f"{len(result['seeds'])} × {result['episodes_per_seed']} held-out, {card.get('episodes', '?')} episodes "
            f"of data; training {fmt_seconds(training)}, evaluation {fmt_seconds(timing.get('evaluation', 0))}")


def row_label(env_id: str) -> str:
    """'cube-double-play task2' for cube-double-play-singletask-task2-v0; D4RL ids without their version."""
    parts = env_id.removesuffix('-v0').removesuffix('-v2').split('-')
    if 'singletask' in parts:
        at = parts.index('singletask')
        return '-'.join(parts[:at]) + ' ' + parts[at + 1]
    return '-'.join(parts)


def table(runs: Path, horizons: list[int], recipe: str, tasks=TASKS) -> Table:
    chunked = horizons != [1]
    columns = [Column('row', 'row', numeric=False), Column('paper_qfql', 'paper QFQL (%)'), Column('paper_fql', 'paper FQL (%)')]
    for h in horizons:
        tag = f' (h = {h})' if chunked else ''
        columns += [Column(f'qfql_beta0_h{h}', f'QFQL β = 0{tag}'), Column(f'qfql_selected_h{h}', f'QFQL selected β{tag}'),
                    Column(f'fql_h{h}', f'FQL{tag}')]
    columns += [Column(f'budget_h{h}', f'budget (QFQL, h = {h})', numeric=False) for h in horizons]
    rows = []
    for task in tasks:
        env_id = resolve_task(task).env_id
        cells = [row_label(env_id),
                 *(paper_text(AGENTS[agent].PAPER_TABLE1.get(env_id), MISSING) for agent in ('qfql', 'fql'))]
        qfql_folders = {h: run_folder(runs, task, 'qfql', h, recipe) for h in horizons}
        qfql_summaries = {h: read_run(folder) for h, folder in qfql_folders.items()}
        for h in horizons:
            cells += [*qfql_cells(qfql_summaries[h]), fql_cell(read_run(run_folder(runs, task, 'fql', h, recipe)))]
        cells += [budget(qfql_summaries[h], qfql_folders[h]) for h in horizons]
        rows.append(Row(tuple(text(c) for c in cells)))
    return Table(tuple(columns), tuple(rows))


def horizon_list(value: str) -> list[int]:
    try:
        horizons = [int(h) for h in value.split(',')]
    except ValueError:
        horizons = []
    if not horizons or min(horizons) < 1:
        raise UsageError(f"--horizons takes comma-separated horizons >= 1, e.g. '1,5', got '{value}'")
    return horizons


def main(argv=None) -> int:
    parser = OneLineArgumentParser(prog='python -m tools.table1', description=__doc__.split('\n\n')[0])
    parser.add_argument('runs', nargs='?', default=str(Path.home() / 'qfql-runs'),
                        help='the folder tools/table1.sh ran into (default ~/qfql-runs)')
    parser.add_argument('--horizons', default='1', help="action-chunk horizons to lay side by side (default '1')")
    parser.add_argument('--recipe', choices=('cpu', 'gpu'), default='cpu', help='whose folders to read (default cpu)')
    parser.add_argument('--tasks', default=','.join(TASKS), help='rows to print, as --task names them (default: all eight)')
    args = parser.parse_args(argv)
    tasks = [t for t in args.tasks.split(',') if t]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise UsageError(f"--tasks: {', '.join(unknown) or 'none given'}; Table 1's rows are {', '.join(TASKS)}")
    runs = Path(args.runs).expanduser()
    if not runs.is_dir():
        raise UsageError(f'{runs} is not a folder; give the one tools/table1.sh ran into')
    print(table(runs, horizon_list(args.horizons), args.recipe, tasks).markdown(), end='')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
