"""Forecast target, baselines and features, all as window means over a Grid.

One vectorised code path serves training (thousands of issue times) and live forecasting (one),
so the model always sees inputs built exactly as in training. Everything at issue time k uses
slots <= k only (the leakage test checks this).

Target at issue time k: mean power over the window of W = max(15 min, step) ending 60 minutes
after k, in kW.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from forecast.calendar import DAY_S, WorkCalendar
from forecast.series import Grid

HORIZON_S = 3600
TARGET_WINDOW_S = 900
WEEK_S = 7 * DAY_S
RECENT_LAGS_S = (900, 1800, 2700, 3600, 7200)
WEEKDAY_PROFILE_WEEKS = 4


@dataclass(frozen=True)
class Horizon:
    """The target geometry in grid slots for one sampling interval (and a horizon, 60 min in esus)."""

    step_s: int
    horizon_s: int = HORIZON_S

    @property
    def window(self) -> int:
        return max(1, TARGET_WINDOW_S // self.step_s)

    @property
    def ahead(self) -> int:
        return max(1, round(self.horizon_s / self.step_s))

    def slots(self, seconds: int) -> int:
        return max(1, round(seconds / self.step_s))


class WindowMeans:
    """Means and standard deviations over trailing windows, from prefix sums (NaN-aware)."""

    def __init__(self, values: np.ndarray) -> None:
        present = np.isfinite(values)
        clean = np.where(present, values, 0.0)
        self.n = values.size
        self.sum = np.concatenate(([0.0], np.cumsum(clean)))
        self.sq = np.concatenate(([0.0], np.cumsum(clean * clean)))
        self.count = np.concatenate(([0], np.cumsum(present)))

    def _parts(self, end: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        end = np.asarray(end, dtype=np.int64)
        valid = (end - length + 1 >= 0) & (end < self.n)
        hi = np.clip(end + 1, 0, self.n)
        lo = np.clip(end + 1 - length, 0, self.n)
        count = self.count[hi] - self.count[lo]
        return hi, lo, count, valid & (count * 2 >= length)

    def mean(self, end: np.ndarray, length: int) -> np.ndarray:
        """Mean of slots (end - length, end]; NaN when out of range or over half missing."""
        hi, lo, count, ok = self._parts(end, length)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(ok, (self.sum[hi] - self.sum[lo]) / count, np.nan)

    def std(self, end: np.ndarray, length: int) -> np.ndarray:
        hi, lo, count, ok = self._parts(end, length)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (self.sum[hi] - self.sum[lo]) / count
            var = (self.sq[hi] - self.sq[lo]) / count - mean * mean
            return np.where(ok, np.sqrt(np.maximum(var, 0.0)), np.nan)


def target(grid: Grid, issue: np.ndarray, means: WindowMeans | None = None,
           horizon_s: int = HORIZON_S) -> np.ndarray:
    """What happened: mean kW of the target window for each issue time (NaN when unknown)."""
    h = Horizon(grid.step_s, horizon_s)
    return (means or WindowMeans(grid.values)).mean(np.asarray(issue) + h.ahead, h.window)


def baselines(grid: Grid, issue: np.ndarray, means: WindowMeans | None = None) -> dict[str, np.ndarray]:
    """Persistence (the last window mean) and seasonal naive (same window a day / a week earlier)."""
    h, m = Horizon(grid.step_s), means or WindowMeans(grid.values)
    issue = np.asarray(issue)
    return {
        "persistence": m.mean(issue, h.window),
        "seasonal_naive_day": m.mean(issue + h.ahead - h.slots(DAY_S), h.window),
        "seasonal_naive_week": m.mean(issue + h.ahead - h.slots(WEEK_S), h.window),
    }


#: Appended after the power features when the grid carries a temperature (models keep both sets).
TEMPERATURE_FEATURES = ("outdoor_temperature_c", "outdoor_temperature_day_change_c")


def feature_names(step_s: int, temperature: bool = False) -> list[str]:
    dummy = Grid(0, step_s, np.zeros(3), temperature_c=np.zeros(3) if temperature else None)
    return list(features(dummy, np.array([2])).keys())


_WEEKDAYS = WorkCalendar()


def features(grid: Grid, issue: np.ndarray, means: WindowMeans | None = None,
             horizon_s: int = HORIZON_S, calendar: WorkCalendar = _WEEKDAYS) -> dict[str, np.ndarray]:
    """Named feature columns (kW unless named otherwise) for each issue slot. The calendar decides
    which past days stand for the target's in the weekday profile and "a week ago": the last days of
    its kind (a Monday's Mondays, skipping holidays; a holiday's Sundays and holidays)."""
    h, m = Horizon(grid.step_s, horizon_s), means or WindowMeans(grid.values)
    k = np.asarray(issue, dtype=np.int64)
    w, day = h.window, h.slots(DAY_S)
    target_local = grid.local_times_s(k + h.ahead)
    target_day = target_local // DAY_S
    cols: dict[str, np.ndarray] = {"mean_now_kw": m.mean(k, w)}
    for lag in sorted({h.slots(s) for s in RECENT_LAGS_S}):
        cols[f"mean_{lag * grid.step_s // 60}min_ago_kw"] = m.mean(k - lag, w)
    cols["last_kw"] = m.mean(k, 1)
    cols["mean_5min_kw"] = m.mean(k, h.slots(300))
    cols["mean_1h_kw"] = m.mean(k, h.slots(3600))
    cols["mean_3h_kw"] = m.mean(k, h.slots(3 * 3600))
    cols["std_1h_kw"] = m.std(k, max(2, h.slots(3600)))
    cols["day_ago_target_kw"] = m.mean(k + h.ahead - day, w)
    cols["day_ago_now_kw"] = m.mean(k - day, w)
    cols["day_ago_change_kw"] = cols["day_ago_target_kw"] - cols["day_ago_now_kw"]
    same_kind = calendar.reference_days(target_day, WEEKDAY_PROFILE_WEEKS) * day
    cols["week_ago_target_kw"] = m.mean(k + h.ahead - same_kind[:, 0], w)   # a week ago, but for holidays
    cols["week_ago_now_kw"] = m.mean(k - same_kind[:, 0], w)
    cols["week_ago_change_kw"] = cols["week_ago_target_kw"] - cols["week_ago_now_kw"]
    daily_target, daily_now = past_windows(m, k, h, day * np.arange(1, 8)[None, :])
    weekly_target, weekly_now = past_windows(m, k, h, same_kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows early in the history
        cols["profile_median_kw"] = np.nanmedian(daily_target, axis=1)
        cols["profile_mean_kw"] = np.nanmean(daily_target, axis=1)
        cols["profile_change_kw"] = cols["profile_median_kw"] - np.nanmedian(daily_now, axis=1)
        # the same weekday over the last weeks: buildings run weekly schedules (late starts on some days)
        cols["weekday_profile_kw"] = np.nanmedian(weekly_target, axis=1)
        cols["weekday_profile_change_kw"] = cols["weekday_profile_kw"] - np.nanmedian(weekly_now, axis=1)
    # "now, moved as the building moved before": the level now plus each reference's change to the
    # target window. Trees cannot add two columns; given the sums they split on the analog forecasts.
    for reference in ("profile_change_kw", "weekday_profile_change_kw", "day_ago_change_kw", "week_ago_change_kw"):
        cols[f"now_plus_{reference}"] = cols["mean_now_kw"] + cols[reference]
    cols["target_hour_of_day"] = (target_local % DAY_S) / 3600.0
    kind = calendar.day_kinds(target_day)   # the weekday (Monday = 0); Sunday (6) on a holiday
    cols["target_day_kind"] = kind.astype(np.float64)
    cols["target_is_non_working"] = (kind >= 5).astype(np.float64)
    if grid.temperature_c is not None:   # known at the issue slot, never later (forecast.exogenous)
        now_c, day_ago_c = slot_values(grid.temperature_c, k), slot_values(grid.temperature_c, k - day)
        # and against yesterday's, which the day-ago and profile references ran under
        cols |= dict(zip(TEMPERATURE_FEATURES, (now_c, now_c - day_ago_c), strict=True))
    return cols


def temperature_known(grid: Grid, issue: np.ndarray) -> np.ndarray:
    """Issue slots whose temperature features are all known (the temperature now and a day before)."""
    k = np.asarray(issue, dtype=np.int64)
    if grid.temperature_c is None:
        return np.zeros(k.size, dtype=bool)
    day = Horizon(grid.step_s).slots(DAY_S)
    return np.isfinite(slot_values(grid.temperature_c, k)) & np.isfinite(slot_values(grid.temperature_c, k - day))


def slot_values(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    inside = (index >= 0) & (index < values.size)
    return np.where(inside, values[np.clip(index, 0, values.size - 1)], np.nan)


def past_windows(m: WindowMeans, k: np.ndarray, h: Horizon, back: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Window means `back` slots (one column per reference; per row or for all rows) before the target
    window and before now."""
    back = np.broadcast_to(back, (k.size, back.shape[1]))
    at_target = np.column_stack([m.mean(k + h.ahead - back[:, j], h.window) for j in range(back.shape[1])])
    at_now = np.column_stack([m.mean(k - back[:, j], h.window) for j in range(back.shape[1])])
    return at_target, at_now


def feature_matrix(grid: Grid, issue: np.ndarray, means: WindowMeans | None = None,
                   horizon_s: int = HORIZON_S, calendar: WorkCalendar = _WEEKDAYS) -> np.ndarray:
    return np.column_stack(list(features(grid, issue, means, horizon_s, calendar).values()))
