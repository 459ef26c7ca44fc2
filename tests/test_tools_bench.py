"""The benchmark's bookkeeping. Its GPU figure cannot be measured on a CPU machine, but its code
path can run here (tiny networks, a forced 'gpu' report) so that a session lent a GPU does not
find a broken figure 6; what it reports must be self-consistent."""
import dataclasses

import pytest

from tools.bench import main
from tools.bench_figures import figure_gpu
from tools.bench_measure import QUICK, Report, synthetic_dataset
from tests.cli import run_cli


@pytest.mark.slow
def test_gpu_figure_code_path_reports_consistent_rows():
    report = Report(backend='gpu', device='forced', mode='quick', preset='tiny', task='pointmaze', obs_dim=6, act_dim=3)
    sizes = dataclasses.replace(QUICK, gpu_chunk=4, gpu_full_run=False)
    figure_gpu(report, sizes, synthetic_dataset(256, 6, 3))
    rows = {row.figure: row for row in report.rows}
    assert set(rows) == {'6a', '6b', '6c'}
    ups, million_s = rows['6a'].values['updates/s'], rows['6b'].values['seconds']
    assert ups > 0 and million_s == pytest.approx(1e6 / ups, rel=0.01)
    assert rows['6a'].met == (ups >= 3000) and rows['6b'].met == (million_s <= 360)
    assert 'extrapolated' in rows['6b'].what
    assert rows['6c'].ratio == pytest.approx(rows['6c'].values['updates/s'] / ups, rel=0.01)


def test_cpu_report_says_figure_6_is_not_measured():
    report = Report(backend='cpu', device='cpu', mode='quick', preset='tiny', task='pointmaze', obs_dim=6, act_dim=3)
    figure_gpu(report, QUICK, data=None)
    (row,) = report.rows
    assert row.met is None and 'not measured' in row.note


@pytest.mark.parametrize('argv, needle', [(['--figures', '1,9'], 'unknown figure'),
                                          (['--preset', 'huge'], 'unknown preset'),
                                          (['--json', '/no/such/folder/out.json'], 'does not exist'),
                                          (['--dims', '37'], 'OBS,ACT')])
def test_bad_arguments_are_one_line(argv, needle, capsys):
    status, err = run_cli(main, argv, capsys)
    assert status == 2
    assert err.startswith('error:') and err.count('\n') == 1 and needle in err
