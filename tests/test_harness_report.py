"""Interval estimates and summaries of success rates."""
import numpy as np
from hypothesis import given, settings, strategies as st

from harness.report import best_beta, hierarchical_bootstrap_ci, iqm, summarize_beta, sweep_csv, sweep_table


def _episodes(successes_by_seed):
    return [{'seed': s, 'success': bool(x), 'return': float(x), 'length': 10, 'mean_guidance_norm': 0.5, 'fallbacks': 0}
            for s, row in enumerate(successes_by_seed) for x in row]


def test_iqm_trims_the_outer_quartiles():
    assert iqm(np.array([0.0, 0.5, 0.5, 1.0])) == 0.5
    assert iqm(np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 100.0])) == 0.0


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=6, max_size=6), min_size=1, max_size=4))
def test_interval_contains_the_mean_and_stays_in_unit_range(matrix):
    matrix = np.array(matrix, float)
    low, high = hierarchical_bootstrap_ci(matrix, reps=300)
    assert 0.0 <= low <= matrix.mean() + 1e-12 and matrix.mean() - 1e-12 <= high <= 1.0


def test_constant_outcomes_give_a_point_interval_and_summary_fields():
    summary = summarize_beta(1.0, _episodes([[1] * 5, [1] * 5]))
    assert summary['success_rate'] == 1.0 and summary['ci95'] == [1.0, 1.0] and summary['iqm_ci95'] == [1.0, 1.0]
    assert summary['per_seed_success'] == [1.0, 1.0] and summary['episodes_per_seed'] == 5


def test_interval_widens_with_disagreeing_seeds():
    agree = summarize_beta(0.0, _episodes([[1, 0] * 5, [1, 0] * 5]))
    disagree = summarize_beta(0.0, _episodes([[1] * 10, [0] * 10]))
    assert agree['success_rate'] == disagree['success_rate'] == 0.5
    width = lambda s: s['ci95'][1] - s['ci95'][0]  # noqa: E731
    assert width(disagree) > width(agree)


def test_best_beta_prefers_less_guidance_on_ties_and_tables_have_a_row_per_beta():
    results = [summarize_beta(b, _episodes([[x] * 4])) for b, x in ((0.0, 1), (1.0, 1), (3.0, 0))]
    assert best_beta(results) == 0.0
    assert sweep_table(results).count('\n') == 2 + 3
    assert sweep_csv(results).splitlines()[0].startswith('beta,success_rate')
