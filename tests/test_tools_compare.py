"""The cross-task comparison table (tools/compare.py) reports what the folders selected, and refuses
tables that would compare unlike things."""
import json

import numpy as np
import pytest

from harness.errors import UsageError
from harness.report import iqm
from tests.cli import run_cli
from tools.compare import load_result, main, table


def _folder(tmp_path, name, env_id, per_beta, best_beta, agent='qfql', reward='dense'):
    folder = tmp_path / name
    folder.mkdir()
    results = [{'beta': b, 'success_rate': float(np.mean(s)), 'per_seed_success': s} for b, s in per_beta.items()]
    (folder / 'summary.json').write_text(json.dumps({
        'env_id': env_id, 'agent': agent, 'best_beta': best_beta, 'results': results,
        'reward': reward, 'success_timing': 'post'}))
    return folder


def test_row_reports_held_out_success_at_each_folders_selected_beta(tmp_path, capsys):
    a = _folder(tmp_path, 'a', 'task-a', {0.0: [0.0, 0.1, 0.2], 0.1: [0.5, 0.6, 0.7], 0.3: [0.9, 0.9, 0.9]}, 0.1)
    b = _folder(tmp_path, 'b', 'task-b', {0.0: [0.2, 0.2, 0.2], 0.03: [0.4, 0.4, 0.4]}, 0.03)
    assert main([f'guided={a},{b}']) == 0
    row = capsys.readouterr().out.splitlines()[-1].split(' | ')
    # β = 0.3 scored higher held-out, but the selection episodes chose 0.1: the table must not re-pick.
    assert row[1] == '0.60 (β 0.1)' and row[2] == '0.40 (β 0.03)'
    selected = np.array([[0.5, 0.4], [0.6, 0.4], [0.7, 0.4]])
    assert row[4].startswith(f'{iqm(selected):.2f} [')
    assert row[3].startswith(f'{iqm(np.array([[0.0, 0.2], [0.1, 0.2], [0.2, 0.2]])):.2f} [')


def test_fql_rows_have_no_unguided_column_and_no_beta(tmp_path):
    fql = _folder(tmp_path, 'f', 'task-a', {0.0: [0.1, 0.2, 0.3]}, 0.0, agent='fql')
    line = table([('FQL', [load_result(fql)])]).splitlines()[-1]
    assert line.startswith('| FQL | 0.20 | — |')


def test_refuses_unlike_tables(tmp_path):
    dense = _folder(tmp_path, 'd', 'task-a', {0.0: [0.1], 0.1: [0.2]}, 0.1)
    sparse = _folder(tmp_path, 's', 'task-a', {0.0: [0.1], 0.1: [0.2]}, 0.1, reward='sparse')
    other = _folder(tmp_path, 'o', 'task-b', {0.0: [0.1], 0.1: [0.2]}, 0.1)
    unselected = _folder(tmp_path, 'u', 'task-a', {0.0: [0.1], 0.1: [0.2]}, None)
    with pytest.raises(UsageError, match='mix'):
        table([('dense', [load_result(dense)]), ('sparse', [load_result(sparse)])])
    with pytest.raises(UsageError, match='not every task'):
        table([('a', [load_result(dense)]), ('b', [load_result(other)])])
    with pytest.raises(UsageError, match='no selected β'):
        load_result(unselected)


def test_a_damaged_summary_or_config_is_one_line(tmp_path, capsys):
    cut = _folder(tmp_path, 'cut', 'task-a', {0.0: [0.1], 0.1: [0.2]}, 0.1)
    (cut / 'summary.json').write_text((cut / 'summary.json').read_text()[:30])
    status, err = run_cli(main, [f'cut={cut}'], capsys)
    assert status == 2 and err.count('\n') == 1 and f'{cut}/summary.json is damaged' in err, err
    other = _folder(tmp_path, 'other', 'task-a', {0.0: [0.1], 0.1: [0.2]}, 0.1)
    (other / 'config.json').write_text('{"agent": "qf')
    status, err = run_cli(main, [str(other)], capsys)
    assert status == 2 and err.count('\n') == 1 and f'{other}/config.json is damaged' in err, err
