"""What a shed delivered: the event's baseline, frozen at its start, against the power measured.

A baseline is what the building would have drawn in each 15-minute interval of the event had it
not shed. Two are kept side by side, both computed once at the event's start, so that the shed
cannot pull them down:

- the **forecast baseline**: the level of esus's hour-ahead forecast issued before the event,
  carried through the event by the building's typical profile on days of the same kind (working
  or not): baseline(i) = forecast + profile(i) - profile(the forecast's interval);
- the **standard baseline** utilities settle with: each interval's mean on the 5 highest of the
  last 10 working days (ranked by their use over the event's hours; "high 5 of 10").

What the shed delivered against them is `demand_response.delivered`. All times are epoch
seconds; days are the site's local days.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

INTERVAL_S = 900
#: reads the building's power samples between two instants: (epoch s, kW), in time order
History = Callable[[float, float], tuple[np.ndarray, np.ndarray]]
HIGH_DAYS, OF_DAYS = 5, 10
#: days with the event day's kind whose median profile shapes the forecast baseline
PROFILE_DAYS = 10
#: how far back the days are looked for (holidays and gaps are skipped)
LOOK_BACK_DAYS = 30


@dataclass(frozen=True)
class Baseline:
    """An event's baselines, kW per 15-minute interval from `start_s` (None where unknown)."""

    event_id: str
    start_s: float
    forecast_kw: tuple[float | None, ...]
    standard_kw: tuple[float | None, ...]
    method: str   # how the forecast baseline was made, for the one who asks

    def index(self, t_s: float) -> int | None:
        i = int((t_s - self.start_s) // INTERVAL_S)
        return i if 0 <= i < len(self.forecast_kw) else None

    def interval_start_s(self, i: int) -> float:
        return self.start_s + i * INTERVAL_S


def interval_starts(start_s: float, end_s: float) -> np.ndarray:
    """The 15-minute intervals (on the quarter hour) that overlap [start_s, end_s)."""
    first = np.floor(start_s / INTERVAL_S) * INTERVAL_S
    return np.arange(first, end_s, INTERVAL_S, dtype=np.float64)


def samples_needed(times_s: np.ndarray, span_s: float, min_share: float) -> int:
    """How many samples a span of `span_s` needs to count as covered: `min_share` of the meter's
    steps in it (its median step; a 1-minute meter's minutes), at least one."""
    step = float(np.median(np.diff(times_s))) if times_s.size > 1 else 60.0
    return max(1, int(min_share * span_s / max(step, 1.0)))


def interval_means(times_s: np.ndarray, kw: np.ndarray, starts_s: np.ndarray, min_share: float = 0.5) -> np.ndarray:
    """Mean kW of the samples in each [start, start + 15 min); NaN where fewer than `min_share` of
    the interval's minutes have a sample (a 1-minute meter; any sample counts for a slower one)."""
    times_s, kw = np.asarray(times_s, dtype=np.float64), np.asarray(kw, dtype=np.float64)
    lo = np.searchsorted(times_s, starts_s, side="left")
    hi = np.searchsorted(times_s, starts_s + INTERVAL_S, side="left")
    sums = np.concatenate(([0.0], np.cumsum(kw)))
    count = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= samples_needed(times_s, INTERVAL_S, min_share),
                        (sums[hi] - sums[lo]) / np.maximum(count, 1), np.nan)


def period_mean(times_s: np.ndarray, kw: np.ndarray, start_s: float, end_s: float,
                min_share: float = 0.5) -> float | None:
    """Mean kW of the samples in [start_s, end_s) of any length; None where the period is not
    covered (as `interval_means` counts it)."""
    times_s, kw = np.asarray(times_s, dtype=np.float64), np.asarray(kw, dtype=np.float64)
    keep = (times_s >= start_s) & (times_s < end_s)
    covered = int(keep.sum()) >= samples_needed(times_s, end_s - start_s, min_share)
    return float(kw[keep].mean()) if covered else None


def days_before(starts_s: np.ndarray, day: date, tz: ZoneInfo) -> np.ndarray:
    """The same local times of day as `starts_s` (on the event's day), on another `day`."""
    out = []
    for start in starts_s:
        local = datetime.fromtimestamp(float(start), tz)
        out.append(datetime.combine(day, local.time(), tzinfo=tz).timestamp())
    return np.array(out, dtype=np.float64)


def earlier_days(event_day: date, kind: Callable[[date], bool], count: int) -> list[date]:
    """The last `count` days before `event_day` for which `kind` holds, within LOOK_BACK_DAYS."""
    found = []
    for back in range(1, LOOK_BACK_DAYS + 1):
        day = event_day - timedelta(days=back)
        if kind(day):
            found.append(day)
            if len(found) == count:
                break
    return found


def day_rows(times_s: np.ndarray, kw: np.ndarray, starts_s: np.ndarray, days: list[date],
             tz: ZoneInfo) -> np.ndarray:
    """Interval means (days x intervals) at the event's times of day on each of `days`."""
    return np.array([interval_means(times_s, kw, days_before(starts_s, day, tz)) for day in days]).reshape(
        len(days), starts_s.size)


def high_5_of_10(times_s: np.ndarray, kw: np.ndarray, starts_s: np.ndarray, tz: ZoneInfo,
                 working: Callable[[date], bool]) -> np.ndarray:
    """Each interval's mean on the 5 of the last 10 working days whose use over the event's hours
    was highest (days without a complete record are not counted); NaN with fewer than 5."""
    event_day = datetime.fromtimestamp(float(starts_s[0]), tz).date()
    rows = day_rows(times_s, kw, starts_s, earlier_days(event_day, working, OF_DAYS), tz)
    complete = rows[np.isfinite(rows).all(axis=1)] if rows.size else rows
    if len(complete) < HIGH_DAYS:
        return np.full(starts_s.size, np.nan)
    highest = complete[np.argsort(complete.mean(axis=1))[::-1][:HIGH_DAYS]]
    return highest.mean(axis=0)


def typical_profile(times_s: np.ndarray, kw: np.ndarray, starts_s: np.ndarray, tz: ZoneInfo,
                    same_kind: Callable[[date], bool]) -> np.ndarray:
    """Each interval's median over the last PROFILE_DAYS days of the event day's kind."""
    event_day = datetime.fromtimestamp(float(starts_s[0]), tz).date()
    rows = day_rows(times_s, kw, starts_s, earlier_days(event_day, same_kind, PROFILE_DAYS), tz)
    if not rows.size or not np.isfinite(rows).any():
        return np.full(starts_s.size, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # an interval no day has: NaN
        return np.nanmedian(rows, axis=0)


def forecast_baseline(forecast_kw: float | None, forecast_start_s: float, starts_s: np.ndarray,
                      times_s: np.ndarray, kw: np.ndarray, tz: ZoneInfo,
                      same_kind: Callable[[date], bool]) -> tuple[np.ndarray, str]:
    """The forecast's level, carried through the event's intervals by the typical profile; the
    method says what it could use."""
    with_forecast = np.concatenate((starts_s, [forecast_start_s]))
    profile = typical_profile(times_s, kw, with_forecast, tz, same_kind)
    shape, at_forecast = profile[:-1], profile[-1]
    if forecast_kw is None or not np.isfinite(forecast_kw):
        return shape, "typical profile (no forecast before the event)"
    if not np.isfinite(at_forecast) or not np.isfinite(shape).any():
        return np.full(starts_s.size, float(forecast_kw)), "forecast held flat (no profile yet)"
    carried = float(forecast_kw) + shape - at_forecast
    return np.where(np.isfinite(carried), carried, float(forecast_kw)), "forecast carried by the typical profile"


def number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def as_tuple(values: np.ndarray) -> tuple[float | None, ...]:
    return tuple(number(v) for v in values)
