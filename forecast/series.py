"""Meter readings to a clean regular grid: the one input every forecast function takes.

Real meters give gaps, duplicate stamps at DST, sentinel values (-1), zeros that mean "no reading",
spikes and blank rows. They are removed here, once, so that no model trains on them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

SENTINELS = (-1.0, -999.0, -9999.0)
#: Longest gap filled by linear interpolation (longer gaps stay missing).
MAX_FILL_S = 15 * 60


@dataclass(frozen=True)
class Grid:
    """Values (kW, NaN = missing) at t0_s + i * step_s; epoch seconds (UTC, or local wall time for
    naive CSV stamps) and a UTC offset in seconds per slot for calendar features."""

    t0_s: int
    step_s: int
    values: np.ndarray
    utc_offset_s: np.ndarray | None = None  # None: times are local wall-clock already
    #: The outdoor temperature for each slot's target hour as known at the slot, °C (NaN: unknown;
    #: None: the site has none). `forecast.exogenous.known_at_slots` builds it without hindsight.
    temperature_c: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values)

    def times_s(self, index: np.ndarray | None = None) -> np.ndarray:
        i = np.arange(len(self.values)) if index is None else np.asarray(index)
        return self.t0_s + i.astype(np.int64) * self.step_s

    def local_times_s(self, index: np.ndarray) -> np.ndarray:
        """Wall-clock seconds (for time of day and weekday), clipped to the grid for offsets."""
        t = self.times_s(index)
        if self.utc_offset_s is None:
            return t
        return t + self.utc_offset_s[np.clip(index, 0, len(self.values) - 1)]

    def slice(self, start: int, stop: int) -> Grid:
        offsets = None if self.utc_offset_s is None else self.utc_offset_s[start:stop]
        temperature = None if self.temperature_c is None else self.temperature_c[start:stop]
        return Grid(self.t0_s + start * self.step_s, self.step_s, self.values[start:stop], offsets, temperature)

    def with_temperature(self, temperature_c: np.ndarray | None) -> Grid:
        if temperature_c is not None and len(temperature_c) != len(self.values):
            raise ValueError("the temperature has another length than the grid")
        return replace(self, temperature_c=temperature_c)


def infer_step_s(times_s: np.ndarray) -> int:
    """The sampling interval: the most common positive difference, in whole seconds."""
    diffs = np.diff(np.unique(times_s))
    if diffs.size == 0:
        raise ValueError("need at least two distinct timestamps to find the interval")
    values, counts = np.unique(diffs, return_counts=True)
    return int(values[np.argmax(counts)])


def invalid_mask(values: np.ndarray) -> np.ndarray:
    """True where a reading is not a measurement: NaN/inf, sentinels, 'missing' zeros, spikes."""
    bad = ~np.isfinite(values)
    for sentinel in SENTINELS:
        bad |= values == sentinel
    good = values[~bad]
    if good.size == 0:
        return bad
    median = float(np.median(good))
    if (good == 0).mean() < 0.02 and abs(median) > 0.5:  # a building rarely draws exactly 0 kW
        bad |= values == 0
        good = good[good != 0]
    if good.size == 0:
        return bad
    q001, q50, q999 = np.quantile(good, [0.001, 0.5, 0.999])
    floor = max(0.1 * abs(q50), 1e-6)  # a flat meter must not turn every small wiggle into a spike
    spread_high, spread_low = max(q999 - q50, floor), max(q50 - q001, floor)
    bad |= values > q999 + 3 * spread_high
    bad |= values < q001 - 3 * spread_low
    return bad


def to_grid(times_s: np.ndarray, values: np.ndarray, step_s: int | None = None,
            utc_offset_s: np.ndarray | None = None, max_fill_s: int = MAX_FILL_S) -> Grid:
    """Clean readings and put them on a regular grid (slot = floor to step; duplicates averaged)."""
    times_s = np.asarray(times_s, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if times_s.size != values.size:
        raise ValueError("times and values differ in length")
    order = np.argsort(times_s, kind="stable")
    keep = order[~invalid_mask(values)[order]]
    times_s, values = times_s[keep], values[keep]
    offsets = None if utc_offset_s is None else np.asarray(utc_offset_s, dtype=np.int64)[keep]
    if times_s.size < 2:
        raise ValueError("fewer than two valid readings")
    step = step_s or infer_step_s(times_s)
    t0 = int(times_s.min() // step * step)
    slots = (times_s - t0) // step
    n = int(slots.max()) + 1
    sums = np.bincount(slots, weights=values, minlength=n)
    counts = np.bincount(slots, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    grid = fill_short_gaps(grid, max(1, max_fill_s // step))
    grid_offsets = None
    if offsets is not None:  # each slot takes the offset of the latest reading at or before it
        grid_offsets = offsets[np.searchsorted(slots, np.arange(n), side="right") - 1]
    return Grid(t0, step, grid, grid_offsets)


def fill_short_gaps(values: np.ndarray, max_slots: int) -> np.ndarray:
    """Linear interpolation across runs of at most `max_slots` missing values."""
    out = values.copy()
    missing = np.isnan(out)
    if not missing.any() or missing.all():
        return out
    index = np.arange(out.size)
    known = index[~missing]
    filled = np.interp(index, known, out[~missing])
    # length of each missing run, and whether it is bounded on both sides
    run_start = missing & ~np.concatenate(([False], missing[:-1]))
    run_id = np.cumsum(run_start) * missing
    run_len = np.bincount(run_id)[run_id]
    inside = (index > known[0]) & (index < known[-1])
    fill = missing & inside & (run_len <= max_slots)
    out[fill] = filled[fill]
    return out
