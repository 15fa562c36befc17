"""Load state: high/low thresholds from a trailing window, flags with a minimum dwell, and the
robust rate of change of power."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def interval_means(times_s: np.ndarray, values_kw: np.ndarray, interval_s: int = 900) -> np.ndarray:
    """Means of the readings in each whole interval (e.g. 15-minute means), empty intervals skipped."""
    ok = np.isfinite(values_kw)
    times_s, values_kw = np.asarray(times_s)[ok], np.asarray(values_kw)[ok]
    if times_s.size == 0:
        return np.empty(0)
    slots = (times_s - times_s.min()) // interval_s
    sums = np.bincount(slots, weights=values_kw)
    counts = np.bincount(slots)
    return sums[counts > 0] / counts[counts > 0]


@dataclass(frozen=True)
class Thresholds:
    high_kw: float
    low_kw: float
    samples: int


def thresholds(means_kw: np.ndarray, high_percentile: float = 90.0, low_percentile: float = 30.0,
               min_samples: int = 96) -> Thresholds | None:
    """Percentiles of interval means; None until there is a day's worth of them."""
    means_kw = means_kw[np.isfinite(means_kw)]
    if means_kw.size < min_samples:
        return None
    high, low = np.percentile(means_kw, [high_percentile, low_percentile])
    return Thresholds(float(high), float(low), int(means_kw.size))


class DwellFlag:
    """A flag that changes only after its condition has held (or not) for `dwell_s` seconds."""

    def __init__(self, dwell_s: float, state: bool = False) -> None:
        self.dwell_s = dwell_s
        self.state = state
        self._pending_since: float | None = None

    def update(self, condition: bool, now_s: float) -> bool:
        if condition == self.state:
            self._pending_since = None
        elif self._pending_since is None:
            self._pending_since = now_s
        if self._pending_since is not None and now_s - self._pending_since >= self.dwell_s:
            self.state, self._pending_since = condition, None
        return self.state


def rate_of_change_kw_per_min(times_s: np.ndarray, values_kw: np.ndarray) -> float | None:
    """Theil-Sen slope (median of pairwise slopes): one cycling spike does not swing it."""
    ok = np.isfinite(values_kw)
    t, v = np.asarray(times_s, dtype=np.float64)[ok], np.asarray(values_kw)[ok]
    if t.size < 3 or np.ptp(t) <= 0:
        return None
    first, second = np.triu_indices(t.size, k=1)
    dt = (t[second] - t[first]) / 60.0
    apart = dt != 0   # two readings at one time say nothing of a rate
    return float(np.median((v[second] - v[first])[apart] / dt[apart]))
