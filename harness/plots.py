"""Matplotlib (Agg) figures of a run: training curves, guidance norms, success against β.

Every function writes one PNG atomically and returns its path; none shows a window.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from harness.files import atomic_target  # noqa: E402


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches='tight')
    plt.close(fig)
    return path


def _smooth(series: np.ndarray) -> np.ndarray:
    """Moving average over 1 % of the episode: per-step norms are noisy, the trend is what one reads."""
    width = max(1, len(series) // 100)
    if width == 1:
        return series
    return np.convolve(series, np.ones(width) / width, mode='valid')


def plot_guidance_norms(profiles: dict[float, dict[str, np.ndarray]], path: Path, title: str = '',
                        horizon: int = 1) -> Path:
    """Left: per env step, mean over envs and flow steps; right: per flow step k. One colour per β.
    With chunks of `horizon` env steps the axis says so: a chunk's norms are those of its one sample."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout='constrained')
    styles = {'velocity_norm': (':', '‖v‖'), 'grad_q_norm': ('--', '‖∇Q‖'), 'guidance_norm': ('-', '‖β∇Q‖ applied')}
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for n, (beta, prof) in enumerate(sorted(profiles.items())):
        colour = colours[n % len(colours)]
        for key, (style, label) in styles.items():
            if f'{key}/by_env_step' not in prof:
                continue
            lab = f'{label}, β={beta:g}'
            axes[0].plot(_smooth(prof[f'{key}/by_env_step']), style, color=colour, lw=1, label=lab)
            k = np.arange(len(prof[f'{key}/by_flow_step']))
            axes[1].plot(k, prof[f'{key}/by_flow_step'], style, marker='o', ms=3, color=colour, label=lab)
    chunks = f' (chunks of {horizon}: one sample, whose norms hold for its {horizon} steps)' if horizon > 1 else ''
    axes[0].set(xlabel=f'env step{chunks}', ylabel='mean over envs and flow steps\n(moving average, 1% of the episode)')
    axes[1].set(xlabel='flow step k', ylabel='mean over env steps and envs')
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(title or 'guided sampler norms (‖∇Q‖ is 0 where β = 0: the gradient is not taken)', fontsize=9)
    return _save(fig, path)


def plot_success_vs_beta(results: Sequence[dict], path: Path, title: str = '') -> Path:
    """Success rate with its 95 % interval (seeds × episodes) for each β; β = 0 drawn at the left."""
    rows = sorted(results, key=lambda r: r['beta'])
    betas = np.array([r['beta'] for r in rows])
    rates = np.array([r['success_rate'] for r in rows])
    low = rates - np.array([r['ci95'][0] for r in rows])
    high = np.array([r['ci95'][1] for r in rows]) - rates
    positions = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.errorbar(positions, rates, yerr=[low, high], marker='o', capsize=4)
    ax.set_xticks(positions, [f'{b:g}' for b in betas])
    ax.set(xlabel='β (test-time guidance; one checkpoint)', ylabel='success rate', ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_sweep_success(panels: dict[str, list[dict]], path: Path, title: str = '') -> Path:
    """One panel per task. Each arm is a dict with agent, results (beta, iqm, iqm_ci95 per β),
    selected_beta and paper (Table 1's mean success in %, or None). An arm with several βs is drawn
    as IQM against β with its interval and the selected β ringed; an arm with one (FQL acts without
    β) as a band across the panel; the paper's numbers as dotted lines in the arm's colour."""
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (task, arms) in zip(axes[0], sorted(panels.items())):
        betas = sorted({r['beta'] for arm in arms if len(arm['results']) > 1 for r in arm['results']}) or [0.0]
        positions = {b: i for i, b in enumerate(betas)}
        for n, arm in enumerate(arms):
            colour = colours[n % len(colours)]
            rows = sorted(arm['results'], key=lambda r: r['beta'])
            iqms = np.array([r['iqm'] for r in rows])
            low, high = (np.array([r['iqm_ci95'][i] for r in rows]) for i in (0, 1))
            if len(rows) > 1:
                x = [positions[r['beta']] for r in rows]
                ax.errorbar(x, iqms, yerr=[iqms - low, high - iqms], marker='o', capsize=4, color=colour,
                            label=arm['agent'])
                if arm['selected_beta'] is not None:
                    chosen = next(r for r in rows if r['beta'] == arm['selected_beta'])
                    ax.plot(positions[chosen['beta']], chosen['iqm'], 'o', ms=13, mfc='none', color=colour,
                            label=f"{arm['agent']}: selected β")
            else:
                ax.axhline(iqms[0], color=colour, lw=1.5, label=arm['agent'])
                ax.axhspan(low[0], high[0], color=colour, alpha=0.15)
            if arm['paper'] is not None:
                ax.axhline(arm['paper'] / 100, color=colour, ls=':', label=f"{arm['agent']}: paper, Table 1")
        ax.set_xticks(range(len(betas)), [f'{b:g}' for b in betas])
        ax.set(xlabel='β (test-time guidance)', ylabel='held-out success, IQM over seeds', ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        ax.set_title(task, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_training(metrics: Sequence[dict], path: Path, title: str = '') -> Path:
    """Losses, Q statistics and gradient norms over training (mean over seeds at each step)."""
    steps = sorted({m['step'] for m in metrics})

    def series(key):
        return np.array([np.mean([m[key] for m in metrics if m['step'] == s and key in m] or [np.nan]) for s in steps])

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for key in ('actor/loss', 'critic/loss'):
        axes[0].plot(steps, series(key), label=key)
    axes[0].set(yscale='log', xlabel='update')
    for key in ('critic/q_min', 'critic/q_mean', 'critic/q_max'):
        axes[1].plot(steps, series(key), label=key)
    axes[1].set(xlabel='update')
    for key in sorted({k for m in metrics for k in m if k.endswith(('grad_norm', 'grad_norm_max'))}):
        axes[2].plot(steps, series(key), label=key)
    axes[2].set(yscale='log', xlabel='update')
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_success_over_training(points: Sequence[tuple[int, float, float, float]], path: Path, title: str = '') -> Path:
    """(step, success, ci_low, ci_high) of the periodic evaluations."""
    steps, rate, low, high = (np.array(x) for x in zip(*points))
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(steps, rate, marker='o')
    ax.fill_between(steps, low, high, alpha=0.25)
    ax.set(xlabel='update', ylabel='success rate', ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def render_strip(values: dict[str, np.ndarray], width: int, height: int, beta: float,
                 chunk: int = 1) -> tuple[np.ndarray, callable]:
    """An RGB strip (height × width) plotting per-env-step norms, and a map env step -> pixel column.

    Drawn once per video; video.py then only moves a cursor across it, so the cost does not grow
    with the number of frames.
    """
    dpi = 100
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ax = fig.add_axes([0.13, 0.22, 0.85, 0.62])
    horizon = 1
    for label, series in values.items():
        ax.plot(series, lw=0.8, label=label)
        horizon = max(horizon, len(series))
    ax.set_xlim(0, horizon)
    ax.tick_params(labelsize=5, length=2, pad=1)
    chunks = f'; chunks of {chunk} env steps, one sample each' if chunk > 1 else ''
    ax.set_title(f'β={beta:g}: per env step, mean over flow steps{chunks}', fontsize=5, pad=2)
    ax.legend(fontsize=4, loc='upper right', frameon=False, ncol=len(values))
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    to_pixels = ax.transData.transform
    y_top, y_bottom = (height - ax.bbox.y1, height - ax.bbox.y0)
    plt.close(fig)

    def column(step: float) -> tuple[int, int, int]:
        x = int(round(to_pixels((step, 0.0))[0]))
        return min(max(x, 0), width - 1), int(y_top), int(y_bottom)

    return image, column
