"""The 90 % upper bound: split conformal calibration by regime, on out-of-sample residuals.

A BAS sequence sheds load when the bound crosses a demand limit, so the bound must hold at every
hour, not only on average: a single margin (the 90th percentile of one held-out day's errors)
covered 86.7 % of the hourly open-dsm intervals and far less at the morning ramp. Here the margin
depends on the regime of the target interval: its hour of day x working or non-working day (48).

Each regime's residuals (actual - forecast, kW) get a centre (median) and a scale (mean absolute
deviation), and their normalised scores (residual - centre) / scale a conformal quantile q (the
ceil((n + 1) 0.9)-th smallest); the margin is centre + q x scale. Each of the three is pulled toward
its pooled value by SHRINK_ROWS pseudo-rows: an hourly meter gives a regime about ten residuals in
the CALIBRATION_DAYS, too few for its own 90th percentile. This is split conformal prediction,
normalised and conditional on the regime (Mondrian), with shrinkage. A few lines of numpy; the
libraries that do it (crepes' Mondrian regressors, mapie) give an infinite bound to a regime with
fewer than 9 residuals instead of borrowing from the others, and would bring scikit-learn into the
service process, which only looks the margin up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUANTILE = 0.9
SHRINK_ROWS = 30
HOURS = 24
#: Adaptive conformal inference (Gibbs & Candès, 2021): the level the bound is calibrated at moves
#: after each day by GAMMA x (the share of that day's intervals above the bound - 10 %), GAMMA per
#: interval as in the paper, times the day's distinct 15-minute (or longer) target intervals. A run
#: of misses (a heat wave the errors of the last 14 days never saw) widens the next day's bound; a
#: run of over-coverage narrows it. Over any sequence the long-run miss share tends to 10 %.
GAMMA_PER_INTERVAL = 0.005
LEVEL_RANGE = (0.5, 0.995)


@dataclass(frozen=True)
class UpperBound:
    """Margins in kW added to the forecast, by [working (0: no, 1: yes), hour of day of the target]."""

    margins_kw: np.ndarray     # shape (2, 24)
    residuals: int             # how many out-of-sample residuals set it
    level: float = QUANTILE    # the quantile the margins were calibrated at (adapted, see adapt_level)

    def margin_kw(self, working: np.ndarray, hour: np.ndarray) -> np.ndarray:
        return self.margins_kw[np.asarray(working, dtype=np.intp), np.asarray(hour, dtype=np.intp) % HOURS]

    @staticmethod
    def flat(margin_kw: float) -> UpperBound:
        return UpperBound(np.full((2, HOURS), max(0.0, margin_kw)), 0)


def regime_index(working: np.ndarray, hour: np.ndarray) -> np.ndarray:
    return np.asarray(working, dtype=np.intp) * HOURS + np.asarray(hour, dtype=np.intp) % HOURS


def conformal_quantile(scores: np.ndarray, quantile: float = QUANTILE) -> float:
    """The ceil((n + 1) q)-th smallest score: with exchangeable scores, a new one is at or below it
    with probability >= q (the largest score when n is too small for that)."""
    ordered = np.sort(scores)
    rank = int(np.ceil((ordered.size + 1) * quantile))
    return float(ordered[min(rank, ordered.size) - 1])


def calibrate(residual_kw: np.ndarray, working: np.ndarray, hour: np.ndarray,
              quantile: float = QUANTILE) -> UpperBound:
    """Margins from out-of-sample residuals (actual - forecast, kW) and their target regimes."""
    ok = np.isfinite(residual_kw)
    residual_kw = np.asarray(residual_kw, dtype=float)[ok]
    regime = regime_index(np.asarray(working)[ok], np.asarray(hour)[ok])
    if residual_kw.size == 0:
        raise ValueError("no residuals to calibrate the upper bound on")
    pooled_centre = float(np.median(residual_kw))
    pooled_scale = float(np.mean(np.abs(residual_kw - pooled_centre))) or 1e-9
    centre = np.full(2 * HOURS, pooled_centre)
    scale = np.full(2 * HOURS, pooled_scale)
    for r in np.unique(regime):
        mine = residual_kw[regime == r]
        n, weight = mine.size, mine.size / (mine.size + SHRINK_ROWS)
        own_centre = float(np.median(mine))
        centre[r] = weight * own_centre + (1 - weight) * pooled_centre
        own_scale = float(np.mean(np.abs(mine - own_centre))) if n > 1 else pooled_scale
        scale[r] = max(weight * own_scale + (1 - weight) * pooled_scale, 1e-9)
    scores = (residual_kw - centre[regime]) / scale[regime]
    pooled_q = conformal_quantile(scores, quantile)
    q = np.full(2 * HOURS, pooled_q)
    for r in np.unique(regime):   # a regime whose errors have a heavier tail keeps it (the evening switch-off)
        mine = scores[regime == r]
        weight = mine.size / (mine.size + SHRINK_ROWS)
        q[r] = weight * conformal_quantile(mine, quantile) + (1 - weight) * pooled_q
    margins = np.maximum(0.0, centre + q * scale).reshape(2, HOURS)
    return UpperBound(margins, int(residual_kw.size), quantile)


def adapt_level(level: float, missed_share: float, intervals: int) -> float:
    """The level for the next day, after a day on which `missed_share` (0-1) of `intervals`
    distinct target intervals ended above a bound calibrated at `level`."""
    moved = level + GAMMA_PER_INTERVAL * intervals * (missed_share - (1 - QUANTILE))
    return float(np.clip(moved, *LEVEL_RANGE))


def coverage_pct(actual: np.ndarray, upper: np.ndarray) -> float:
    ok = np.isfinite(actual) & np.isfinite(upper)
    return float(np.mean(actual[ok] <= upper[ok]) * 100) if ok.any() else float("nan")


def pinball_kw(actual: np.ndarray, upper: np.ndarray, quantile: float = QUANTILE) -> float:
    """Mean pinball (quantile) loss of the bound as a `quantile` forecast, kW: lower is sharper and
    better calibrated at once."""
    ok = np.isfinite(actual) & np.isfinite(upper)
    diff = actual[ok] - upper[ok]
    return float(np.mean(np.maximum(quantile * diff, (quantile - 1) * diff))) if ok.any() else float("nan")
