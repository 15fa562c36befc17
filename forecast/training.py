"""Training with a held-out day, metrics, and the fallback chain used when there is no model.

`train_validated` trains on everything before the last whole day and scores that day against
persistence; the service swaps a model in only when `is_sane` says so. A second model, trained on
everything before the last CALIBRATION_DAYS, forecasts those days out of sample: its errors
calibrate the upper bound, and decide whether the temperature blend is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecast.calendar import WorkCalendar
from forecast.calibration import QUANTILE, UpperBound, adapt_level, calibrate
from forecast.features import DAY_S, Horizon, WindowMeans, baselines, target
from forecast.model import TRAIN_STRIDE_S, PowerModel
from forecast.series import Grid

#: Below this much history esus does not train: it forecasts with the seasonal naive baseline.
MIN_TRAINING_DAYS = 14
#: Each night trains on this many days before it (the service, and the backtest as the service does).
TRAINING_DAYS = 90
#: A model whose held-out RMSE is worse than this multiple of persistence's is not swapped in.
SANITY_FACTOR = 1.25
#: ... persistence's RMSE on the held-out day, or on the typical day of this many days before it
#: when the held-out day was quiet (a closed Sunday: persistence is nearly perfect there, and
#: comparing with it alone rejected every model trained on a Sunday night).
SANITY_REFERENCE_DAYS = 7
#: The upper bound is calibrated on out-of-sample errors over at most this many last days of the
#: history, forecast by a model trained on the days before them (at least CALIBRATION_TRAIN_DAYS).
CALIBRATION_DAYS = 14
CALIBRATION_TRAIN_DAYS = 7


def metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """RMSE and MAE in kW; CV(RMSE) and NMBE in percent of the mean (ASHRAE Guideline 14 signs:
    NMBE > 0 means the forecast is low on average)."""
    ok = np.isfinite(predicted) & np.isfinite(actual)
    p, a = predicted[ok], actual[ok]
    if a.size == 0:
        return {"rmse": float("nan"), "mae": float("nan"), "cv_rmse": float("nan"), "nmbe": float("nan")}
    error = p - a
    rmse = float(np.sqrt(np.mean(error ** 2)))
    mean = float(np.mean(a))
    scale = abs(mean) if mean else float("nan")
    return {"rmse": rmse, "mae": float(np.mean(np.abs(error))), "cv_rmse": 100 * rmse / scale,
            "nmbe": 100 * float(np.sum(a - p)) / (a.size * scale)}


@dataclass(frozen=True)
class TrainingResult:
    model: PowerModel
    rmse_kw: float
    persistence_rmse_kw: float
    held_out_rows: int
    typical_persistence_rmse_kw: float = float("nan")  # median daily RMSE over the days before


class TooLittleData(ValueError):
    """The history cannot train or validate a model (too short, or its held-out day too gappy):
    production keeps the model it has, the backtest too."""


def day_slots(grid: Grid) -> int:
    return Horizon(grid.step_s).slots(DAY_S)


def history_days(grid: Grid) -> float:
    return float(np.isfinite(grid.values).sum()) * grid.step_s / DAY_S


def train_validated(grid: Grid, end: int | None = None, calendar: WorkCalendar | None = None,
                    level: float = QUANTILE) -> TrainingResult:
    """Train on slots before the last day that ends at `end` (default: the grid's end); score it;
    calibrate its upper bound at quantile `level` (0.9, or as `adapt_level` moved it)."""
    end = len(grid) if end is None else end
    history = grid.slice(0, end)
    if history_days(history) < MIN_TRAINING_DAYS:
        raise TooLittleData(f"{history_days(history):.1f} days of history; training needs {MIN_TRAINING_DAYS}")
    h = Horizon(grid.step_s)
    held_start = end - day_slots(grid)
    # issue slots whose target window ends before the held-out day starts
    train_issue = np.arange(0, held_start - h.ahead)
    model = PowerModel(grid.step_s, calendar=calendar).fit(grid, train_issue)
    means = WindowMeans(history.values)
    sample = out_of_sample(history, means, model)
    judge_temperature(model, sample)
    held_issue = np.arange(held_start, end - h.ahead)
    actual = target(history, held_issue, means)
    predicted = model.predict(history, held_issue, means)
    persistence = baselines(history, held_issue, means)["persistence"]
    ok = np.isfinite(actual) & np.isfinite(predicted) & np.isfinite(persistence)
    if ok.sum() < 10:
        raise TooLittleData("the held-out day has too few complete values to validate the model")
    rmse = metrics(predicted[ok], actual[ok])["rmse"]
    persistence_rmse = metrics(persistence[ok], actual[ok])["rmse"]
    typical = typical_persistence_rmse(history, means, held_start)
    model.info.rmse_kw = rmse
    model.info.persistence_rmse_kw = persistence_rmse
    model.bound = calibrated_bound(history, model, sample, level) or calibrate(
        actual[ok] - predicted[ok], *model.regimes(history, held_issue[ok]), level)
    model.info.calibration_residuals = model.bound.residuals
    return TrainingResult(model, rmse, persistence_rmse, int(ok.sum()), typical)


@dataclass(frozen=True)
class OutOfSample:
    """A stand-in model's forecasts of the last days of the history, trained on the days before."""
    issue: np.ndarray
    actual: np.ndarray
    predicted: np.ndarray        # as the model forecasts (with the temperature where known)
    power_only: np.ndarray       # the same without the temperature blend


def out_of_sample(history: Grid, means: WindowMeans, model: PowerModel) -> OutOfSample | None:
    """Forecasts of the last CALIBRATION_DAYS by a stand-in (None when the history is too short)."""
    day, h = day_slots(history), Horizon(history.step_s)
    days = min(CALIBRATION_DAYS, len(history) // day - CALIBRATION_TRAIN_DAYS)
    if days < 1:
        return None
    start = len(history) - days * day
    stand_in = PowerModel(history.step_s, calendar=model.calendar)
    try:
        stand_in.fit(history, np.arange(0, start - h.ahead))
    except ValueError:   # too few usable rows before the calibration days
        return None
    issue = np.arange(start, len(history) - h.ahead, max(1, TRAIN_STRIDE_S // history.step_s))
    return OutOfSample(issue, target(history, issue, means), stand_in.predict(history, issue, means),
                       stand_in.predict(history, issue, means, temperature=False))


def judge_temperature(model: PowerModel, sample: OutOfSample | None) -> None:
    """Keep the temperature blend only if it did no worse than power alone out of sample."""
    if model.with_temperature is None or sample is None:
        return
    ok = np.isfinite(sample.actual) & np.isfinite(sample.predicted) & np.isfinite(sample.power_only)
    differs = ok & (sample.predicted != sample.power_only)
    if differs.sum() < 10:   # the stand-in had too little temperature to compare: nothing to judge by
        return
    with_t = metrics(sample.predicted[ok], sample.actual[ok])["rmse"]
    without = metrics(sample.power_only[ok], sample.actual[ok])["rmse"]
    model.info.temperature_gain_pct = 100 * (with_t / without - 1)
    if with_t > without:
        model.drop_temperature()


def calibrated_bound(history: Grid, model: PowerModel, sample: OutOfSample | None,
                     level: float = QUANTILE) -> UpperBound | None:
    """The bound from the stand-in's errors, forecast as `model` forecasts (None if too few)."""
    if sample is None:
        return None
    predicted = sample.predicted if model.with_temperature is not None else sample.power_only
    residual = sample.actual - predicted
    ok = np.isfinite(residual)
    if ok.sum() < 10:
        return None
    return calibrate(residual[ok], *model.regimes(history, sample.issue[ok]), level)


def typical_persistence_rmse(history: Grid, means: WindowMeans, before: int) -> float:
    """Median daily RMSE of persistence over the SANITY_REFERENCE_DAYS days before slot `before`."""
    day = day_slots(history)
    issue = np.arange(max(0, before - SANITY_REFERENCE_DAYS * day), before)
    actual, persistence = target(history, issue, means), baselines(history, issue, means)["persistence"]
    daily = []
    for hi in range(issue.size, 0, -day):  # whole days back from `before`
        a, p = actual[max(0, hi - day):hi], persistence[max(0, hi - day):hi]
        if (np.isfinite(a) & np.isfinite(p)).sum() >= 10:
            daily.append(metrics(p, a)["rmse"])
    return float(np.median(daily)) if daily else float("nan")


def missed_share(grid: Grid, issue: np.ndarray, upper: np.ndarray, means: WindowMeans | None = None) -> \
        tuple[float, int] | None:
    """How the bounds `upper` issued at slots `issue` did: the share of their target intervals that
    ended above them (0-1), and how many distinct target intervals that was (None: none known)."""
    actual = target(grid, issue, means)
    ok = np.isfinite(actual) & np.isfinite(upper)
    if not ok.any():
        return None
    window = Horizon(grid.step_s).window
    return float(np.mean(actual[ok] > upper[ok])), max(1, int(ok.sum()) // window)


def next_level(level: float, grid: Grid, issue: np.ndarray, upper: np.ndarray,
               means: WindowMeans | None = None) -> float:
    """The level for the next calibration after bounds at `level` did as they did (unchanged when
    none of their outcomes is known)."""
    outcome = missed_share(grid, issue, upper, means)
    return level if outcome is None else adapt_level(level, *outcome)


def is_sane(result: TrainingResult) -> tuple[bool, str]:
    if not np.isfinite(result.rmse_kw) or result.rmse_kw < 0:
        return False, f"held-out RMSE is {result.rmse_kw}"
    reference = max(result.persistence_rmse_kw, np.nan_to_num(result.typical_persistence_rmse_kw))
    if result.rmse_kw > SANITY_FACTOR * reference:
        return False, (f"held-out RMSE {result.rmse_kw:.2f} kW is worse than {SANITY_FACTOR:g} x "
                       f"persistence's {result.persistence_rmse_kw:.2f} kW (typical day: "
                       f"{result.typical_persistence_rmse_kw:.2f} kW)")
    return True, "ok"


@dataclass(frozen=True)
class Forecast:
    kw: float
    upper_kw: float
    method: str  # "model" (with the outdoor temperature), "seasonal naive (last week)", "persistence"


def forecast_now(grid: Grid, model: PowerModel | None) -> Forecast | None:
    """Forecast at the grid's last slot with the best method the data allows; None if none can."""
    issue = np.array([len(grid) - 1])
    means = WindowMeans(grid.values)
    base = baselines(grid, issue, means)
    recent = grid.values[-day_slots(grid):]
    recent = recent[np.isfinite(recent)]
    spread = float(np.std(recent)) if recent.size > 1 else 0.0
    fallback_margin = 1.2816 * spread  # one-sided 90 % (normal)
    if model is not None and model.step_s == grid.step_s:
        value = float(model.predict(grid, issue, means)[0])
        if np.isfinite(value):
            method = "model with the outdoor temperature" if model.uses_temperature(grid, issue)[0] else "model"
            return Forecast(value, float(model.upper(grid, issue, np.array([value]))[0]), method)
    # the week-ago window beats yesterday's on working weeks (open-dsm: 32 % vs 91 % CV(RMSE))
    for method, key in (("seasonal naive (last week)", "seasonal_naive_week"), ("persistence", "persistence")):
        value = float(base[key][0])
        if np.isfinite(value):
            return Forecast(value, value + fallback_margin, method)
    return None
