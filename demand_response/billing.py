"""The tariff's clock: billing periods, demand intervals, and the building's power as 1-minute
means (what the limiter and its oracle read). Times are epoch seconds; periods and intervals
follow the site's wall clock, as the utility's meter does."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np


def period_start(now: datetime, billing_day: int, tz: ZoneInfo) -> datetime:
    """The local midnight the billing period holding `now` began: `billing_day` of this month, or
    of the month before."""
    local = now.astimezone(tz)
    start = local.replace(day=billing_day, hour=0, minute=0, second=0, microsecond=0)
    if start > local:
        start = (start.replace(day=1) - timedelta(days=1)).replace(day=billing_day)
    return start


def interval_start_s(now: datetime, interval_min: int) -> float:
    """The start of the demand interval under way: on the wall clock's quarter or half hours."""
    offset_s = (now.utcoffset() or timedelta(0)).total_seconds()
    size = interval_min * 60
    return (now.timestamp() + offset_s) // size * size - offset_s


def minute_means(times_s: np.ndarray, kw: np.ndarray, start_s: float, end_s: float,
                 max_gap_min: int = 15) -> np.ndarray:
    """The power's mean in each minute of [start_s, end_s) from samples at any rate; a gap of up to
    `max_gap_min` minutes is bridged by a straight line, a longer one stays NaN."""
    minutes = int((end_s - start_s) // 60)
    keep = (times_s >= start_s) & (times_s < start_s + minutes * 60)
    index = ((times_s[keep] - start_s) // 60).astype(np.int64)
    sums = np.bincount(index, weights=kw[keep], minlength=minutes)
    counts = np.bincount(index, minlength=minutes)
    means = np.full(minutes, np.nan)
    seen = counts > 0
    means[seen] = sums[seen] / counts[seen]
    if seen.sum() < 2:
        return means
    known = np.flatnonzero(seen)
    filled = np.interp(np.arange(minutes), known, means[known])
    after = np.searchsorted(known, np.arange(minutes))
    gap = known[np.minimum(after, len(known) - 1)] - known[np.maximum(after - 1, 0)]
    bridge = ~seen & (after > 0) & (after < len(known)) & (gap <= max_gap_min + 1)
    means[bridge] = filled[bridge]
    return means


def local_days(start: datetime, minutes: int) -> np.ndarray:
    """The local day (counted from `start`'s) of each minute from `start`."""
    stamps = [start + timedelta(minutes=m) for m in range(0, minutes, 60)]
    first = start.astimezone(start.tzinfo).date()
    hourly = np.array([(s.astimezone(start.tzinfo).date() - first).days for s in stamps], dtype=np.int64)
    return np.repeat(hourly, 60)[:minutes]
