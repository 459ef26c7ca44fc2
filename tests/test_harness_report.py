"""Interval estimates and summaries of success rates, and the tables that show them."""
import csv
import io

import numpy as np
from hypothesis import given, settings, strategies as st

from harness.report import (best_beta, beta_table, hierarchical_bootstrap_ci, iqm, max_over_betas,
                            stratified_iqm_ci, summarize_beta)
from harness.tables import Column, Row, Table, text


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


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=3, max_size=3), st.lists(st.floats(0, 1), min_size=4, max_size=4))
def test_stratified_iqm_interval_keeps_every_task_in_every_replicate(task_levels, noise):
    # Seeds agree within each task, so a replicate that resampled runs within tasks always sees the
    # same multiset of scores: the interval collapses to the IQM. Resampling across tasks would not.
    scores = np.tile(np.array(task_levels), (4, 1))
    low, high = stratified_iqm_ci(scores, reps=200)
    assert np.isclose(low, iqm(scores)) and np.isclose(high, iqm(scores))
    # With seeds that disagree, the interval stays within the range of the scores.
    noisy = np.clip(scores + 0.3 * (np.array(noise)[:, None] - 0.5), 0, 1)
    low, high = stratified_iqm_ci(noisy, reps=200)
    assert noisy.min() - 1e-12 <= low <= high <= noisy.max() + 1e-12


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


def _with_selection(beta, held_out, selection):
    summary = summarize_beta(beta, _episodes([[held_out] * 4]))
    summary['selection_success_rate'] = float(selection)
    return summary


def test_best_beta_is_chosen_on_selection_episodes_and_prefers_less_guidance_on_ties():
    # β = 3 is best on held-out episodes, but the selection episodes chose β = 1 (tied with 10).
    results = [_with_selection(b, h, s) for b, h, s in ((0.0, 0, 0.2), (1.0, 0, 0.6), (3.0, 1, 0.4), (10.0, 0, 0.6))]
    assert best_beta(results) == 1.0
    assert max_over_betas(results)['beta'] == 3.0 and 'optimistic' in max_over_betas(results)['note']
    table = beta_table(results).markdown()
    assert table.count('\n') == 2 + 4 and '| 1 (selected) |' in table and 'selection success' in table
    assert beta_table(results).csv().splitlines()[0].startswith('beta,success_rate')
    assert beta_table(results).csv().splitlines()[2].split(',')[7] == '0.600000'


def test_no_best_beta_without_selection_unless_only_one_beta():
    results = [summarize_beta(b, _episodes([[x] * 4])) for b, x in ((0.0, 1), (1.0, 0))]
    assert best_beta(results) is None
    assert best_beta(results[1:]) == 1.0
    assert '(selected)' not in beta_table(results).markdown() and beta_table(results).markdown().count('\n') == 2 + 2


def test_betas_the_selection_alone_scored_keep_their_rows_with_empty_held_out_cells():
    """--held-out selected with β = 0 chosen: one held-out β, but the table shows what it was chosen against."""
    held = [_with_selection(0.0, 0, 0.5)]
    selection_only = [{'beta': b, 'selection_success_rate': s, 'selection_ci95': [0.0, s], 'mean_return': -10.0,
                       'mean_length': 4.0, 'mean_guidance_norm': g, 'fallbacks': 0} for b, s, g in ((0.1, 0.25, 0.2),
                                                                                                  (1.0, 0.0, 2.0))]
    table = beta_table(held, selection_only)
    lines = [line[2:-2].split(' | ') for line in table.markdown().splitlines()[2:]]
    assert [line[0] for line in lines] == ['0 (selected)', '0.1 (selection only)', '1 (selection only)']
    assert lines[1][1:4] == ['—', '—', '—'] and lines[1][4] == '0.250' and lines[2][-2] == '2'
    rows = list(csv.DictReader(io.StringIO(table.csv())))
    assert [r['beta'] for r in rows] == ['0', '0.1', '1'] and rows[1]['success_rate'] == rows[1]['iqm_ci95_high'] == ''
    assert table.html('success').count('<tr class="selected"') == 1


def test_one_table_gives_the_same_numbers_in_markdown_csv_and_html():
    results = [_with_selection(b, h, s) for b, h, s in ((0.0, 0, 0.25), (0.5, 1, 0.75))]
    table = beta_table(results)
    rows = list(csv.DictReader(io.StringIO(table.csv())))
    markdown = [line.split(' | ') for line in table.markdown().splitlines()[2:]]
    for row, line, result in zip(rows, markdown, results):
        assert float(row['success_rate']) == result['success_rate'] and line[1] == f"{result['success_rate']:.3f}"
        assert float(row['selection_success_rate']) == result['selection_success_rate']
    assert markdown[1][0] == '| 0.5 (selected)' and [r['beta'] for r in rows] == ['0', '0.5']
    page = table.html('success')
    assert page.count('<tr class="selected" data-beta="0.5">') == 1 and 'data-value="0.75"' in page


def test_csv_fields_are_quoted_and_html_is_escaped():
    table = Table((Column('name', 'a <name>'),), (Row((text('x, "y" <z>'),)),))
    assert table.csv() == 'name\n"x, ""y"" <z>"\n'
    page = table.html('t')
    assert '<th>a &lt;name&gt;</th>' in page and '<td class="num">x, &quot;y&quot; &lt;z&gt;</td>' in page
    assert table.markdown() == '| a <name> |\n|---|\n| x, "y" <z> |\n'
