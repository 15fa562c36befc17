"""Inputs beyond power, as the forecast may see them: for each slot, only what was known at it.

An hour-ahead power forecast may use the outdoor temperature of its target hour only as it was
known when the forecast was made: a weather forecast issued before then, or the temperature
measured then (over one hour it is a fair forecast of itself). A measurement stamped after the
issue time is hindsight; training on it would score well in the backtest and fail live. So an
input is a series of (time it became known, value), and every slot takes the latest value known
at or before it, no older than `max_age_s`.
"""

from __future__ import annotations

import numpy as np

from forecast.series import Grid

#: A value older than this is not known any more (a sensor or a forecast that stopped).
MAX_AGE_S = 3 * 3600


def known_at_slots(grid: Grid, known_at_s: np.ndarray, values: np.ndarray, max_age_s: int = MAX_AGE_S) -> np.ndarray:
    """For each slot of `grid`, the latest finite value known at or before the slot's time (on the
    grid's clock), NaN where none is younger than `max_age_s`."""
    times = np.asarray(known_at_s, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if times.shape != values.shape:
        raise ValueError(f"{times.size} times for {values.size} values")
    keep = np.isfinite(values)
    times, values = times[keep], values[keep]
    order = np.argsort(times, kind="stable")
    times, values = times[order], values[order]
    slots = grid.times_s()
    out = np.full(slots.size, np.nan)
    if times.size == 0:
        return out
    latest = np.searchsorted(times, slots, side="right") - 1
    found = latest >= 0
    fresh = found & (slots - times[np.maximum(latest, 0)] <= max_age_s)
    out[fresh] = values[latest[fresh]]
    return out

