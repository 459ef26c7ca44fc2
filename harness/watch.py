"""Warnings for what preceded QFQL's puzzle-3x3 failure (Appendix A of the paper), read from the
training metrics chunk by chunk."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Q_RANGE_MARGIN = 0.1         # Q may leave the range the rewards allow by 10 % of its width
GROWTH_WINDOW = 5            # chunks in a row ...
GROWTH_FACTOR = 4.0          # ... whose scale-free critic gradient norm is 4x its lowest so far


def q_bounds(rewards, discount: float) -> tuple[float, float]:
    """The range the rewards allow Q to take: every Q is a discounted sum r_0 + γ r_1 + ... that may stop
    at any step (mask 0), so it lies between min(r_min, r_min / (1 - γ)) and max(r_max, r_max / (1 - γ))."""
    r_min, r_max = float(np.min(rewards)), float(np.max(rewards))
    horizon = 1.0 / (1.0 - discount) if discount < 1 else math.inf
    return min(r_min, r_min * horizon), max(r_max, r_max * horizon)


class DivergenceWatch:
    """Warnings for what preceded QFQL's puzzle-3x3 failure (Appendix A), per seed and chunk:

    * 'q_out_of_range': the critic's Q leaves the range the rewards allow (`q_bounds`) by more than
      Q_RANGE_MARGIN of its width -- TD values that no return could have;
    * 'critic_grad_growth': the chunk-mean critic gradient norm, divided by (1 + |mean Q|), stays above
      GROWTH_FACTOR x its lowest value so far for GROWTH_WINDOW chunks in a row. The raw norm is no
      signal on its own: it grows with |Q| in healthy runs (a cube-single run where guidance worked:
      from 2 to 23 while mean Q went from -5 to -55, and single-update maxima above 100 in most chunks,
      which is why a "norm above 100" warning fires on runs that work). The ratio drifted from its
      lowest, 0.18, to 0.3-0.5 there, so growth counts only beyond 4x (Appendix A: ~400 against < 10).
    Non-finite guidance at evaluation is the third sign; the harness counts it from the sampler.
    """

    def __init__(self, seeds: Sequence[int], bounds: tuple[float, float]):
        self.seeds = list(seeds)
        low, high = bounds
        margin = Q_RANGE_MARGIN * max(high - low, 1.0)
        self.low, self.high = low - margin, high + margin
        self.ratios: dict[int, list[float]] = {seed: [] for seed in self.seeds}

    def check(self, step: int, infos: Sequence[dict]) -> list[tuple[str, str]]:
        """(kind, message) for every sign seen in this chunk's per-seed infos."""
        found = []
        for seed, info in zip(self.seeds, infos):
            q_min, q_max = info.get('critic/q_min', 0.0), info.get('critic/q_max', 0.0)
            if not (self.low <= q_min and q_max <= self.high):
                found.append(('q_out_of_range', f'seed {seed}: Q in [{q_min:.3g}, {q_max:.3g}] at update {step}, '
                                                f'outside [{self.low:.3g}, {self.high:.3g}] that the rewards allow'))
            ratio = info.get('critic/grad_norm', 0.0) / (1.0 + abs(info.get('critic/q_mean', 0.0)))
            history = self.ratios[seed]
            history.append(ratio if math.isfinite(ratio) else math.inf)
            earlier = history[:-GROWTH_WINDOW]
            if earlier and all(r > GROWTH_FACTOR * min(earlier) for r in history[-GROWTH_WINDOW:]):
                found.append(('critic_grad_growth',
                              f'seed {seed}: critic grad norm / (1 + |Q|) = {ratio:.3g} at update {step}, above '
                              f'{GROWTH_FACTOR:g}x its lowest ({min(earlier):.3g}) for {GROWTH_WINDOW} chunks'))
        return found
