"""Walk-forward backtest: retrain each midnight on what was known, forecast every interval of the
next day, and score esus against persistence and the seasonal naive baselines on the same rows."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.calendar import WorkCalendar
from forecast.calibration import QUANTILE, coverage_pct, pinball_kw
from forecast.exogenous import known_at_slots
from forecast.features import DAY_S, Horizon, WindowMeans, baselines, target
from forecast.series import Grid, to_grid
from forecast.training import MIN_TRAINING_DAYS, TooLittleData, metrics, next_level, train_validated

TARGET_TEXT = "mean kW of the 15-minute interval ending 60 minutes after the forecast (the interval itself if longer)"


class MeterFileError(ValueError):
    """The CSV cannot be used; the message says which column or value is wrong. `argument` when
    what was asked for is not there (the file, a named column): a bad argument, not bad data."""

    def __init__(self, message: str, argument: bool = False) -> None:
        super().__init__(message)
        self.argument = argument


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, skip_blank_lines=True)
    except FileNotFoundError:
        raise MeterFileError(f"{path}: no such file", argument=True) from None
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise MeterFileError(f"{path}: not a readable CSV ({exc})") from None


def _time_column(columns: list) -> str:
    """The first column whose name has 'time' or 'date', else the first."""
    return next((c for c in columns if any(w in str(c).lower() for w in ("time", "date"))), columns[0])


def _named(path: Path, columns: list, name: str) -> str:
    if name not in columns:
        raise MeterFileError(f"{path}: no column '{name}' (columns: {', '.join(map(str, columns))})", argument=True)
    return name


def load_meter_csv(path: Path, time_col: str | None = None, value_col: str | None = None,
                   temperature_col: str | None = None) -> tuple[Grid, str]:
    """Read a meter CSV (any regular interval, 1 min to 1 h); returns the clean grid and value column.
    A `temperature_col` (outdoor, °C or °F) goes into the grid as known at each row's time."""
    frame = _read_csv(path)
    columns = list(frame.columns)
    time_col = _named(path, columns, time_col or _time_column(columns))
    if value_col is None:
        numeric = [c for c in columns if c != time_col and pd.api.types.is_numeric_dtype(frame[c])]
        if not numeric:
            raise MeterFileError(f"{path}: no numeric column; name it with --value-col")
        value_col = numeric[0]
    for name in (value_col, temperature_col):
        if name is not None:
            _named(path, columns, name)
    frame = frame[[time_col, value_col] + ([temperature_col] if temperature_col else [])].dropna(subset=[time_col])
    try:
        stamps = pd.to_datetime(frame[time_col])  # one format inferred from the first rows: fast
    except (ValueError, TypeError):
        try:
            stamps = pd.to_datetime(frame[time_col], format="mixed")
        except (ValueError, TypeError) as exc:
            raise MeterFileError(f"{path}: column '{time_col}' has values that are not times ({exc})") from None
    if stamps.dt.tz is not None:  # an offset is given: calendar features use it
        offsets = np.array([s.utcoffset().total_seconds() for s in stamps], dtype=np.int64)
        utc = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
        seconds = utc.astype("datetime64[s]").astype("int64").to_numpy() + offsets
    else:  # naive stamps are the meter's wall clock
        seconds = stamps.astype("datetime64[s]").astype("int64").to_numpy()
    values = pd.to_numeric(frame[value_col], errors="coerce").to_numpy(dtype=np.float64)
    if np.isfinite(values).sum() < 2:
        raise MeterFileError(f"{path}: column '{value_col}' has no numeric values")
    grid = to_grid(seconds, values)
    if not 60 <= grid.step_s <= 3600:
        raise MeterFileError(f"{path}: interval is {grid.step_s} s; esus forecasts from 1-minute to hourly data")
    if temperature_col:
        temperature = pd.to_numeric(frame[temperature_col], errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(temperature).any():
            raise MeterFileError(f"{path}: column '{temperature_col}' has no numeric values")
        grid = grid.with_temperature(known_at_slots(grid, seconds, temperature))
    return grid, str(value_col)


def with_temperature_file(grid: Grid, path: Path, column: str | None = None, zone: str | None = None,
                          meter_zone: str | None = None) -> Grid:
    """The grid with an outdoor temperature CSV's readings as known at each slot. Times without an
    offset are on `zone`'s clock, moved onto the meter's (`meter_zone`) when both are named: a
    weather station keeps local standard time all year, a meter the wall clock."""
    frame = _read_csv(path)
    columns = list(frame.columns)
    time_col = _time_column(columns)
    if column is None:   # the first mostly numeric column (a station's CSV flags some readings: "33s")
        numeric = [c for c in columns if c != time_col
                   and pd.to_numeric(frame[c], errors="coerce").notna().mean() > 0.5]
        if not numeric:
            raise MeterFileError(f"{path}: no numeric column; name it with --temperature-col")
        column = numeric[0]
    _named(path, columns, column)
    stamps = pd.to_datetime(frame[time_col], format="mixed", errors="coerce")
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert(meter_zone or "UTC").dt.tz_localize(None)
    elif zone and meter_zone and zone != meter_zone:
        stamps = stamps.dt.tz_localize(zone).dt.tz_convert(meter_zone).dt.tz_localize(None)
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    ok = stamps.notna().to_numpy() & np.isfinite(values)
    if not ok.any():
        raise MeterFileError(f"{path}: column '{column}' has no numeric values")
    seconds = stamps[ok].astype("datetime64[s]").astype("int64").to_numpy()
    return grid.with_temperature(known_at_slots(grid, seconds, values[ok]))


@dataclass
class BacktestResult:
    interval_s: int
    issue: np.ndarray
    actual: np.ndarray
    predictions: dict[str, np.ndarray]
    upper: np.ndarray
    train_seconds: list[float] = field(default_factory=list)
    grid: Grid | None = None
    kept_previous: int = 0      # nights whose data could not train a model: the previous one went on
    without_model: int = 0      # days before any night could train one: not forecast
    bound_levels: list[float] = field(default_factory=list)   # each day's calibration level (adapted)

    def rows(self) -> np.ndarray:
        """Rows where the actual and every model's forecast exist (all models scored on these)."""
        ok = np.isfinite(self.actual)
        for values in self.predictions.values():
            ok &= np.isfinite(values)
        return ok

    def target_hours(self) -> np.ndarray:
        """Local hour of day of each forecast's target interval."""
        if self.grid is None:
            raise ValueError("the backtest result carries no grid")
        return (self.grid.local_times_s(self.issue + Horizon(self.interval_s).ahead) % DAY_S) // 3600

    def bound_figures(self, ok: np.ndarray) -> dict[str, float]:
        """How the 90 % bound did: coverage (%), overall and in its worst hour of day, pinball loss
        and mean width above the forecast (kW)."""
        actual, upper = self.actual[ok], self.upper[ok]
        hours = self.target_hours()[ok]
        by_hour = {int(hour): coverage_pct(actual[hours == hour], upper[hours == hour]) for hour in np.unique(hours)}
        worst = min(by_hour, key=by_hour.__getitem__) if by_hour else -1
        return {"p90_coverage": coverage_pct(actual, upper), "pinball_p90": pinball_kw(actual, upper),
                "p90_width_kw": float(np.mean(upper - self.predictions["esus"][ok])) if ok.any() else float("nan"),
                "p90_worst_hour": worst, "p90_worst_hour_coverage": by_hour.get(worst, float("nan")),
                # the quantile the bound was calibrated at, as adapted from day to day
                "p90_level_min": min(self.bound_levels, default=float("nan")),
                "p90_level_max": max(self.bound_levels, default=float("nan"))}

    def summary(self, target_name: str) -> dict:
        ok = self.rows()
        models = {name: metrics(values[ok], self.actual[ok]) for name, values in self.predictions.items()}
        models["esus"] |= self.bound_figures(ok)
        known = self.grid.temperature_c if self.grid is not None else None
        return {
            "rows": int(ok.sum()), "interval_s": self.interval_s,
            "target": f"{target_name}: {TARGET_TEXT}",
            "models": models,
            "train_seconds_median": statistics.median(self.train_seconds) if self.train_seconds else None,
            "train_seconds_max": max(self.train_seconds) if self.train_seconds else None,
            "test_days": len(self.train_seconds) + self.kept_previous,
            "days_previous_model_kept": self.kept_previous,
            "days_without_a_model": self.without_model,
            # share of the scored forecasts made with the outdoor temperature known (None: no column)
            "temperature_known_pct": None if known is None else 100 * float(np.isfinite(known[self.issue[ok]]).mean()),
        }


def local_midnights(grid: Grid) -> np.ndarray:
    """Slots that start a local day."""
    local = grid.local_times_s(np.arange(len(grid)))
    return np.flatnonzero(local % DAY_S == 0)


def walk_forward(grid: Grid, min_history_days: int = MIN_TRAINING_DAYS, progress=None,
                 calendar: WorkCalendar | None = None, window_days: int | None = None) -> BacktestResult:
    """Each local midnight, train on what was known before it (the last `window_days`, the service
    uses TRAINING_DAYS; None: all of it), and forecast the next day; `progress(done, total,
    day_start_slot)` after each day."""
    h = Horizon(grid.step_s)
    day = h.slots(DAY_S)
    means = WindowMeans(grid.values)
    starts = [s for s in local_midnights(grid) if s >= (min_history_days + 1) * day and s + h.ahead < len(grid)]
    if not starts:
        raise ValueError(f"need more than {min_history_days + 1} days of data to backtest")
    issue_parts: list[np.ndarray] = []
    model_parts: list[np.ndarray] = []
    upper_parts: list[np.ndarray] = []
    seconds: list[float] = []
    levels: list[float] = []
    model, kept, without, level = None, 0, 0, QUANTILE
    for n, start in enumerate(starts):
        if issue_parts:   # as in production: yesterday's bounds, as far as their outcomes are known by now
            known = issue_parts[-1] + h.ahead < start
            level = next_level(level, grid, issue_parts[-1][known], upper_parts[-1][known], means)
        try:   # as in production: a night whose data cannot train a model keeps the previous one
            first = 0 if window_days is None else max(0, start - window_days * day)
            model = train_validated(grid.slice(first, start), calendar=calendar, level=level).model
            seconds.append(model.info.train_seconds)
        except TooLittleData:
            if model is None:
                without += 1
            else:
                kept += 1
        if model is not None:
            issue = np.arange(start, min(start + day, len(grid) - h.ahead))
            predicted = model.predict(grid, issue, means)
            issue_parts.append(issue)
            model_parts.append(predicted)
            upper_parts.append(model.upper(grid, issue, predicted))
            levels.append(model.bound.level)
        if progress:
            progress(n + 1, len(starts), start)
    if not issue_parts:
        raise TooLittleData(f"no night of the {len(starts)} could train a model: the data has too many gaps")
    issue = np.concatenate(issue_parts)
    predictions = {"esus": np.concatenate(model_parts), **baselines(grid, issue, means)}
    return BacktestResult(grid.step_s, issue, target(grid, issue, means), predictions,
                          np.concatenate(upper_parts), seconds, grid, kept, without, levels)


def plot(result: BacktestResult, out: Path, title: str, days_shown: int = 7) -> None:
    """Actual vs forecast with the 90 % bound over the last days, and RMSE by hour of day."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = result.grid
    if grid is None:
        raise ValueError("the backtest result carries no grid to plot")
    h = Horizon(result.interval_s)
    ok = result.rows()
    target_time = pd.to_datetime(grid.local_times_s(result.issue + h.ahead), unit="s")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 8), gridspec_kw={"height_ratios": [3, 2]})
    shown = result.issue >= result.issue[-1] - days_shown * h.slots(DAY_S)
    top.plot(target_time[shown], result.actual[shown], color="black", lw=0.9, label="actual (15-min mean)")
    top.plot(target_time[shown], result.predictions["esus"][shown], color="tab:blue", lw=1.1,
             label="esus forecast (issued 60 min before)")
    top.fill_between(target_time[shown], result.predictions["esus"][shown], result.upper[shown],
                     color="tab:blue", alpha=0.18, label="90 % upper bound")
    top.plot(target_time[shown], result.predictions["persistence"][shown], color="tab:gray", lw=0.7,
             alpha=0.7, label="persistence")
    top.set_ylabel("kW")
    top.set_title(title)
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    hours = (grid.local_times_s(result.issue + h.ahead) % DAY_S) // 3600
    for name, colour in (("esus", "tab:blue"), ("persistence", "tab:gray"),
                         ("seasonal_naive_day", "tab:orange"), ("seasonal_naive_week", "tab:green")):
        by_hour = [np.sqrt(np.mean((result.predictions[name][ok & (hours == hr)] -
                                    result.actual[ok & (hours == hr)]) ** 2)) if (ok & (hours == hr)).any()
                   else np.nan for hr in range(24)]
        bottom.plot(range(24), by_hour, marker="o", ms=3, color=colour, label=name.replace("_", " "))
    bottom.set_xlabel("hour of day of the forecast interval")
    bottom.set_ylabel("RMSE, kW")
    bottom.set_xticks(range(0, 24, 2))
    bottom.legend(fontsize=8)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
