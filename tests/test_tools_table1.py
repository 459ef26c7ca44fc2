"""tools/table1.py: the README's Table 1 read from run folders laid out as tools/table1.sh names them."""
import json

from harness.errors import run_main
from tests.cli import run_cli
from tools.table1 import main


def write_run(folder, agent, results, best_beta, dataset_name='cube-double-play-v0'):
    folder.mkdir(parents=True)
    (folder / 'config.json').write_text(json.dumps({'mode': 'train', 'task': {'dataset_name': dataset_name},
                                                    'data_dir': str(folder / 'no-data')}))
    (folder / 'summary.json').write_text(json.dumps({
        'agent': agent, 'preset': 'small', 'steps': 40000, 'seeds': [11, 12, 13], 'best_beta': best_beta,
        'timing_s': {'training': 3600.0, 'evaluation': 600.0},
        'results': [{'beta': beta, 'success_rate': rate, 'ci95': ci, 'seeds': [11, 12, 13], 'episodes_per_seed': 50}
                    for beta, rate, ci in results]}))


def rows_of(printed):
    """Markdown rows by their first cell, each the list of its cells."""
    rows = [line[2:-2].split(' | ') for line in printed.splitlines()[2:]]
    return {cells[0]: cells for cells in rows}


def test_each_row_reads_its_folders_and_says_what_is_missing_or_still_training(tmp_path, capsys):
    write_run(tmp_path / 'cube-double-qfql', 'qfql', [(0.0, 0.1, [0.05, 0.15]), (0.3, 0.4, [0.3, 0.5])], 0.3)
    write_run(tmp_path / 'cube-double-fql', 'fql', [(0.0, 0.36, [0.3, 0.42])], 0.0)
    chunked = tmp_path / 'cube-double-qfql-h5'
    write_run(chunked, 'qfql', [(0.0, 0.2, [0.1, 0.3]), (0.3, 0.25, [0.1, 0.4])], 0.0)
    # Trained over two processes (the summary's timer saw only the second), one of them paused for a
    # chunk: 4 chunks of 500 updates at the 10 updates/s the run trains at are 200 s of compute.
    (chunked / 'metrics.jsonl').write_text(''.join(
        json.dumps({'step': step, 'seed': seed, 'updates_per_s': rate}) + '\n'
        for step, rate in ((500, 10.0), (1000, 0.01), (1500, 10.0), (2000, 10.0)) for seed in (11, 12, 13)))
    training = tmp_path / 'scene-qfql'
    (training / 'checkpoints' / 'step_000015000' / 'state').mkdir(parents=True)
    (training / 'checkpoints' / 'step_000015000' / 'meta.json').write_text('{}')
    (training / 'config.json').write_text('{}')

    assert run_main(main, [str(tmp_path), '--horizons', '1,5', '--tasks', 'cube-double,scene,puzzle-3x3']) == 0
    rows = rows_of(capsys.readouterr().out)
    assert list(rows) == ['cube-double-play task2', 'scene-play task2', 'puzzle-3x3-play task4']
    cube = rows['cube-double-play task2']
    # paper QFQL, paper FQL; h = 1: β = 0, selected β, FQL; h = 5: the same; the budgets of the QFQL runs.
    assert cube[1:9] == ['8', '36 ± 6', '0.10 [0.05, 0.15]', '0.40 [0.30, 0.50] (β = 0.3)', '0.36 [0.30, 0.42]',
                         '0.20 [0.10, 0.30]', 'β = 0 selected', '—']
    assert cube[9].startswith('3 × 40,000 updates (small), 3 × 50 held-out, ? episodes of data; training 1h00m')
    assert 'training 3m20s' in cube[10]
    assert rows['scene-play task2'][3] == 'training (15,000 updates)'
    assert set(rows['puzzle-3x3-play task4'][3:]) == {'—'}


def test_a_damaged_summary_and_an_unknown_row_are_one_line(tmp_path, capsys):
    folder = tmp_path / 'scene-fql'
    folder.mkdir()
    (folder / 'config.json').write_text(json.dumps({'mode': 'train'}))
    (folder / 'summary.json').write_text('{"results": []}')
    status, err = run_cli(main, [str(tmp_path), '--tasks', 'scene'], capsys)
    assert status == 2 and 'summary.json' in err and '--resume' in err and err.count('\n') == 1
    status, err = run_cli(main, [str(tmp_path), '--tasks', 'cube-single'], capsys)
    assert status == 2 and "Table 1's rows are antmaze" in err
