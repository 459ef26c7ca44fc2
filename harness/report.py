"""Success-rate summaries with interval estimates over seeds and episodes.

For each β the evaluation yields a 0/1 success matrix [seeds, episodes]. We report
  * success_rate -- the mean over all episodes of all seeds;
  * ci95        -- a two-level (seeds, then episodes within each seed) percentile bootstrap interval,
                   so that both sources of noise are in it; with one seed it is the episode bootstrap;
  * iqm, iqm_ci95 -- the interquartile mean of the per-seed success rates (the 25 % trimmed mean,
                   as rliable's `aggregate_iqm` computes it) with a stratified-bootstrap interval over
                   seeds, the field's practice (Agarwal et al., 2021). With a single seed the IQM
                   interval collapses to a point, which is why ci95 is reported too.
Both are `scipy.stats.trim_mean` and a few lines of numpy, rather than rliable: rliable 1.2 (its
latest release) builds on `arch`, whose 7.x fails to import next to pandas 3 and whose 8.x rejects
the `random_state` argument rliable passes to its bootstrap.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import scipy.stats

from harness.tables import (CSV, EVERY_FORMAT, HTML, MISSING, Cell, Column, Row, Table, count, estimate, interval,
                            number, rate, text)

BOOTSTRAP_REPS = 2000
CONFIDENCE = 0.95
IQM_TRIM = 0.25        # the share cut from each end, as in rliable's aggregate_iqm


def iqm(values: np.ndarray) -> float:
    """Interquartile mean of every value (of a [runs, tasks] matrix: over runs and tasks together)."""
    return float(scipy.stats.trim_mean(np.asarray(values, dtype=np.float64), IQM_TRIM, axis=None))


def _percentile_interval(samples: np.ndarray) -> list[float]:
    low, high = np.quantile(samples, [(1 - CONFIDENCE) / 2, 1 - (1 - CONFIDENCE) / 2])
    return [float(low), float(high)]


def hierarchical_bootstrap_ci(successes: np.ndarray, reps: int = BOOTSTRAP_REPS, seed: int = 0) -> list[float]:
    """95 % interval of the mean success over a [seeds, episodes] matrix, resampling both levels."""
    successes = np.asarray(successes, dtype=np.float64)
    rng = np.random.default_rng(seed)
    num_seeds, num_episodes = successes.shape
    seed_idx = rng.integers(0, num_seeds, size=(reps, num_seeds))
    episode_idx = rng.integers(0, num_episodes, size=(reps, num_seeds, num_episodes))
    resampled = successes[seed_idx[..., None], episode_idx]
    return _percentile_interval(resampled.mean(axis=(1, 2)))


def iqm_bootstrap_ci(per_seed: np.ndarray, reps: int = BOOTSTRAP_REPS, seed: int = 0) -> list[float]:
    """Bootstrap over seeds of the IQM of one task's per-seed rates."""
    return stratified_iqm_ci(np.asarray(per_seed, dtype=np.float64).reshape(-1, 1), reps, seed)


def stratified_iqm_ci(scores: np.ndarray, reps: int = BOOTSTRAP_REPS, seed: int = 0) -> list[float]:
    """95 % stratified-bootstrap interval of the IQM of a [runs, tasks] score matrix (rliable's layout).

    Runs are resampled within each task, never across, so every replicate keeps the task mix
    (Agarwal et al., 2021); each replicate's statistic is `iqm`, vectorised."""
    scores = np.asarray(scores, dtype=np.float64)
    num_runs, num_tasks = scores.shape
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, num_runs, size=(reps, num_runs, num_tasks))
    resampled = scores[idx, np.arange(num_tasks)]
    return _percentile_interval(scipy.stats.trim_mean(resampled.reshape(reps, -1), IQM_TRIM, axis=1))


def seed_task_matrix(per_seed_by_task: Sequence[Sequence[float]]) -> np.ndarray:
    """[seeds, tasks] per-seed success from one per-seed list per task (rliable's layout); ValueError
    when the tasks have different numbers of seeds, which a stratified bootstrap cannot pair up."""
    if len({len(column) for column in per_seed_by_task}) != 1:
        raise ValueError('every task needs the same number of seeds')
    return np.array(per_seed_by_task, dtype=np.float64).T


def stratified_iqm(scores: np.ndarray) -> tuple[float, list[float]]:
    """(IQM, its stratified-bootstrap 95 % interval) of a [seeds, tasks] matrix."""
    return iqm(scores), stratified_iqm_ci(scores)


def success_matrix(episodes: Sequence[dict]) -> tuple[list, np.ndarray]:
    """(sorted seeds, [seed, episode] success matrix) from per-episode records; every seed is cut to
    the smallest episode count so that the bootstrap sees a rectangular design."""
    seeds = sorted({e['seed'] for e in episodes})
    by_seed = [[e for e in episodes if e['seed'] == s] for s in seeds]
    width = min(len(rows) for rows in by_seed)
    return seeds, np.array([[float(e['success']) for e in rows[:width]] for rows in by_seed])


def per_seed_statistics(per_seed: Sequence[float]) -> dict:
    """The per-seed part of a result: the rates, their IQM and its bootstrap interval over seeds."""
    per_seed = np.asarray(per_seed, dtype=np.float64)
    return {'iqm': iqm(per_seed), 'iqm_ci95': iqm_bootstrap_ci(per_seed),
            'per_seed_success': [float(x) for x in per_seed]}


def summarize_beta(beta: float, episodes: Sequence[dict]) -> dict:
    """Summary of one β from its per-episode records (each with seed, success, return, length)."""
    seeds, successes = success_matrix(episodes)
    width = successes.shape[1]
    per_seed = successes.mean(axis=1)
    finite = [e['mean_guidance_norm'] for e in episodes if math.isfinite(e.get('mean_guidance_norm', math.nan))]
    return {
        'beta': float(beta),
        'success_rate': float(successes.mean()),
        'ci95': hierarchical_bootstrap_ci(successes),
        **per_seed_statistics(per_seed),
        'seeds': seeds,
        'episodes_per_seed': int(width),
        'mean_return': float(np.mean([e['return'] for e in episodes])),
        'mean_length': float(np.mean([e['length'] for e in episodes])),
        'mean_guidance_norm': float(np.mean(finite)) if finite else None,
        'fallbacks': int(sum(e.get('fallbacks', 0) for e in episodes)),
    }


def best_beta(results: Sequence[dict]) -> float | None:
    """The β chosen on the selection episodes: the highest `selection_success_rate` (ties: the
    smallest β, i.e. the least guidance). A single β is its own choice; several βs evaluated
    without selection episodes have no honest best, so None."""
    if len(results) == 1:
        return results[0]['beta']
    if any('selection_success_rate' not in r for r in results):
        return None
    return min(results, key=lambda r: (-r['selection_success_rate'], r['beta']))['beta']


def max_over_betas(results: Sequence[dict]) -> dict:
    """The largest held-out success over β, labelled: it is optimistic, because the β that
    reaches it was picked on the very episodes it is reported on."""
    top = min(results, key=lambda r: (-r['success_rate'], r['beta']))
    return {'beta': top['beta'], 'success_rate': top['success_rate'], 'ci95': top['ci95'],
            'note': 'max over β of the held-out success rate: optimistic (chosen on the episodes it reports)'}


def beta_table(results: Sequence[dict], selection_only: Sequence[dict] = ()) -> Table:
    """The per-β table of a run or sweep (sweep.md, sweep.csv, the page's success table), one row per
    β. With selection episodes, the selection column is what chose β (marked 'selected' among several);
    every other column is held-out, except in the rows of `selection_only`: βs the selection episodes
    alone scored (`--held-out selected`), whose held-out cells are empty and whose return, length and
    guidance are the selection episodes'. The CSV always has the selection column (empty without
    selection episodes); the selection interval is the page's only."""
    selected = best_beta(results)
    several = len(results) + len(selection_only) > 1
    with_selection = any('selection_success_rate' in r for r in [*results, *selection_only])
    columns = [Column('beta', 'β', numeric=False), Column('success_rate', 'held-out success'),
               Column('ci95', '95% CI (seeds × episodes)', csv=('ci95_low', 'ci95_high')),
               Column('iqm', 'IQM over seeds [95% CI]', csv=('iqm', 'iqm_ci95_low', 'iqm_ci95_high')),
               Column('selection_success_rate', 'selection success',
                      formats=EVERY_FORMAT if with_selection else (CSV,))]
    columns += [Column('selection_ci95', 'selection 95% CI', formats=(HTML,))] if with_selection else []
    columns += [Column('mean_return', 'return'), Column('mean_length', 'length'),
                Column('mean_guidance_norm', 'mean ‖β∇Q‖'), Column('fallbacks', 'fallbacks')]
    rows = []
    for r in sorted([*results, *selection_only], key=lambda r: r['beta']):
        held_out = 'success_rate' in r
        chosen = several and held_out and r['beta'] == selected
        label = f"{r['beta']:g}" + (' (selected)' if chosen else '' if held_out else ' (selection only)')
        cells = [text(label, f"{r['beta']:g}")]
        cells += ([rate(r['success_rate']), interval(r['ci95']), estimate(r['iqm'], r['iqm_ci95'])] if held_out else
                  [rate(None), interval(None), Cell(MISSING, ('', '', ''))])
        cells += [rate(r.get('selection_success_rate'))]
        cells += [interval(r.get('selection_ci95'))] if with_selection else []
        cells += [number(r['mean_return'], '.1f'), number(r['mean_length'], '.0f'),
                  number(r['mean_guidance_norm'], '.3g'), count(r['fallbacks'])]
        rows.append(Row(tuple(cells), selected=chosen, data={'beta': r['beta']}))
    return Table(tuple(columns), tuple(rows))
