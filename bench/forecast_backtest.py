"""Forecast figures: the walk-forward backtest on the shipped open-dsm data (1-minute and hourly),
with the nearby weather station's outdoor temperature and without it, training time and memory on
90 days of 1-minute data on one core, and the live forecast latency.

    .venv/bin/python bench/forecast_backtest.py [--quick] [--no-holidays] [--no-temperature]
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from forecast.backtest import (  # noqa: E402
    BacktestResult,
    load_meter_csv,
    local_midnights,
    walk_forward,
    with_temperature_file,
)
from forecast.calendar import WorkCalendar  # noqa: E402
from forecast.features import DAY_S, Horizon, WindowMeans, target  # noqa: E402
from forecast.model import TRAIN_STRIDE_S  # noqa: E402
from forecast.series import Grid  # noqa: E402
from forecast.training import metrics  # noqa: E402

DATA = ROOT / "esus" / "data" / "open-dsm"
FILES = {"1-minute (Jul-Aug 2022)": DATA / "egauge_1min_2022-07_08.csv",
         "hourly (Mar 2022-Mar 2023)": DATA / "hourly_electric_2022-23.csv"}
HOLIDAYS = dict.fromkeys(FILES, "US-WI")   # the open-dsm meters are in Wisconsin
WEATHER = DATA / "weather_hourly_2022-23.csv"   # NOAA station, local standard time (UTC-6), °F


def with_outdoor_temperature(grid: Grid) -> Grid:
    """The grid with the station's temperature as known at each slot (on the meter's wall clock):
    what `esus forecast backtest --temperature ... --temperature-tz Etc/GMT+6 --tz America/Chicago` reads."""
    return with_temperature_file(grid, WEATHER, "HourlyDryBulbTemperature", "Etc/GMT+6", "America/Chicago")


def backtest_table(holidays: dict[str, str | None], temperature: bool) -> None:
    print("walk-forward backtest (retrain each midnight, forecast every interval of the next day)"
          + (", with the outdoor temperature" if temperature else ""))
    print(f"{'data':<28}{'model':<22}{'RMSE kW':>9}{'CV(RMSE) %':>12}{'NMBE %':>9}")
    for label, path in FILES.items():
        grid, column = load_meter_csv(path)
        if temperature:
            grid = with_outdoor_temperature(grid)
        started = time.monotonic()
        result = walk_forward(grid, calendar=WorkCalendar(holidays.get(label)))
        elapsed = time.monotonic() - started
        plain = plain_hgb(grid, result)
        both = result.rows() & np.isfinite(plain)
        summary = result.summary(column)
        for name, m in summary["models"].items():
            print(f"{label:<28}{name:<22}{m['rmse']:>9.3f}{m['cv_rmse']:>12.1f}{m['nmbe']:>9.2f}")
        m = metrics(plain[both], result.actual[both])
        print(f"{label:<28}{'plain HGB':<22}{m['rmse']:>9.3f}{m['cv_rmse']:>12.1f}{m['nmbe']:>9.2f}")
        esus = summary["models"]["esus"]
        to_plain = metrics(result.predictions["esus"][both], result.actual[both])["cv_rmse"] / m["cv_rmse"]
        to_persistence = esus["cv_rmse"] / summary["models"]["persistence"]["cv_rmse"]
        print(f"{'':<28}CV(RMSE) esus / persistence = {to_persistence:.2f}, "
              f"esus / plain HGB = {to_plain:.2f}; {summary['test_days']} days in {elapsed:.0f} s; "
              f"training median {summary['train_seconds_median']:.2f} s")
        if holidays.get(label):
            holiday_gain(grid, result, WorkCalendar(holidays[label]))
        if temperature:
            temperature_gain(grid, result, WorkCalendar(holidays.get(label)))
        print(f"{'':<28}90 % bound: covers {esus['p90_coverage']:.1f} % (worst hour {esus['p90_worst_hour']:02d}h: "
              f"{esus['p90_worst_hour_coverage']:.1f} %), pinball {esus['pinball_p90']:.3f} kW, "
              f"mean width {esus['p90_width_kw']:.2f} kW; levels {esus['p90_level_min']:.3f}-"
              f"{esus['p90_level_max']:.3f} (adaptive)")


def holiday_gain(grid: Grid, aware: BacktestResult, calendar: WorkCalendar) -> None:
    """esus with the holidays against esus with weekends only (the same inputs otherwise): overall, on the
    holidays, on the days after."""
    plain = walk_forward(grid)
    both = aware.rows() & plain.rows()
    target_day = grid.local_times_s(aware.issue + Horizon(grid.step_s).ahead) // DAY_S
    holiday = np.isin(target_day, [(d - date(1970, 1, 1)).days for d in calendar.holidays_between(
        date(1970, 1, 1) + timedelta(int(target_day.min())), date(1970, 1, 1) + timedelta(int(target_day.max())))])
    after = np.isin(target_day, np.unique(target_day[holiday]) + 1) & ~holiday
    for name, rows in (("all days", both), ("holidays", both & holiday), ("days after a holiday", both & after)):
        cv = [metrics(r.predictions["esus"][rows], r.actual[rows])["cv_rmse"] for r in (plain, aware)]
        print(f"{'':<28}{calendar.country} holidays, {name} ({int(rows.sum())} rows): CV(RMSE) "
              f"{cv[0]:.1f} % without, {cv[1]:.1f} % with")


def temperature_gain(grid: Grid, warm: BacktestResult, calendar: WorkCalendar) -> None:
    """esus with the outdoor temperature against esus from power alone: overall and by season."""
    cold = walk_forward(grid.with_temperature(None), calendar=calendar)
    both = warm.rows() & cold.rows()
    month = pd.to_datetime(grid.local_times_s(warm.issue), unit="s").month.to_numpy()
    print(f"{'':<28}outdoor temperature known for {warm.summary('')['temperature_known_pct']:.1f} % of the "
          "forecasts")
    for name, rows in (("all days", both), ("Jun-Aug", both & np.isin(month, (6, 7, 8))),
                       ("Dec-Feb", both & np.isin(month, (12, 1, 2)))):
        if rows.sum() < 100:
            continue
        cv = [metrics(r.predictions["esus"][rows], r.actual[rows])["cv_rmse"] for r in (cold, warm)]
        print(f"{'':<28}temperature, {name} ({int(rows.sum())} rows): CV(RMSE) {cv[0]:.2f} % without, "
              f"{cv[1]:.2f} % with")


def plain_hgb(grid: Grid, result: BacktestResult) -> np.ndarray:
    """The reference a data scientist would build first: HistGradientBoostingRegressor (200 iterations,
    otherwise defaults) on lag, rolling and calendar features, retrained at each midnight of the backtest
    on everything before it; forecasts for the backtest's rows."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    h, means = Horizon(grid.step_s), WindowMeans(grid.values)
    day = h.slots(DAY_S)

    def features(issue: np.ndarray) -> np.ndarray:
        lags = [means.mean(issue - h.slots(s), h.window) for s in (0, 900, 1800, 2700, 3600, 7200)]
        rolling = [means.mean(issue, h.slots(s)) for s in (3600, 3 * 3600, DAY_S)]
        seasonal = [means.mean(issue + h.ahead - day, h.window), means.mean(issue + h.ahead - 7 * day, h.window)]
        local = grid.local_times_s(issue + h.ahead)
        calendar = [(local % DAY_S) / 3600, WorkCalendar().kinds_at(local)]   # weekends only: "plain"
        return np.column_stack([means.mean(issue, 1), *lags, *rolling, means.std(issue, max(2, h.slots(3600))),
                                *seasonal, *calendar])

    out = np.full(result.issue.size, np.nan)
    starts = np.intersect1d(local_midnights(grid), result.issue)
    stride = max(1, TRAIN_STRIDE_S // grid.step_s)
    for start in starts:
        issue = np.arange(0, start - h.ahead, stride)
        y = target(grid, issue, means)
        x = features(issue)
        ok = np.isfinite(y)
        model = HistGradientBoostingRegressor(max_iter=200, early_stopping=False, random_state=0).fit(x[ok], y[ok])
        rows = (result.issue >= start) & (result.issue < start + day)
        out[rows] = model.predict(features(result.issue[rows]))
    return out


def ninety_days() -> Grid:
    """90 days of real 1-minute data: the 62 open-dsm days followed by their first 28 again."""
    grid, _ = load_meter_csv(FILES["1-minute (Jul-Aug 2022)"])
    values = np.concatenate([grid.values, grid.values[: 28 * 1440]])
    return Grid(grid.t0_s, 60, values)


def train_once(queue: multiprocessing.Queue) -> None:
    from forecast.estimators import one_core
    from forecast.training import train_validated

    grid = ninety_days()
    before = reset_peak_rss_mb()  # reading the CSV peaks higher than training: start the peak here
    with one_core():  # as the service trains; its imports come before the clock: the figures are the fit's
        started = time.process_time()
        wall = time.monotonic()
        result = train_validated(grid)
        cpu, wall = time.process_time() - started, time.monotonic() - wall
    queue.put((cpu, wall, peak_rss_mb() - before, result.rmse_kw, result.persistence_rmse_kw))


def status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":")) / 1024


def reset_peak_rss_mb() -> float:
    """Reset this process's peak RSS (Linux: clear_refs 5) and return the RSS now, in MB."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return status_mb("VmRSS")


def peak_rss_mb() -> float:
    return status_mb("VmHWM")


def training_figures(rounds: int) -> None:
    context = multiprocessing.get_context("spawn")
    runs = []
    for _ in range(rounds):
        queue = context.Queue()
        process = context.Process(target=train_once, args=(queue,))
        process.start()
        runs.append(queue.get())
        process.join()
    cpu = statistics.median(r[0] for r in runs)
    wall = statistics.median(r[1] for r in runs)
    memory = statistics.median(r[2] for r in runs)
    print(f"training on 90 days of 1-minute data, one core: {cpu:.1f} s CPU, {wall:.1f} s wall, "
          f"{memory:.0f} MB extra peak RSS (median of {rounds}); held-out RMSE {runs[0][3]:.2f} kW "
          f"vs persistence {runs[0][4]:.2f} kW")


def forecast_latency() -> None:
    """What the service does each minute: top up the live window from the history store, grid it,
    forecast."""
    import tempfile

    from esus.parts.forecasting import LIVE_DAYS
    from esus.parts.power import POWER_SERIES
    from esus.parts.training_job import RecentPower
    from esus.state.store import HistoryStore
    from forecast.training import forecast_now, train_validated

    grid = ninety_days()
    model = train_validated(grid.slice(0, 30 * 1440)).model
    times_s = grid.t0_s + grid.step_s * np.arange(len(grid))
    ok = np.isfinite(grid.values)
    minutes = 30
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore(Path(tmp) / "history.db")
        store.append_many({POWER_SERIES: zip(times_s[ok][:-minutes].astype(float).tolist(),
                                             grid.values[ok][:-minutes].tolist(), strict=True)})
        recent = RecentPower(store, LIVE_DAYS)
        recent.grid(int(times_s[ok][-minutes - 1]))  # the service's first minute reads the whole window
        times = []
        for t, kw in zip(times_s[ok][-minutes:].tolist(), grid.values[ok][-minutes:].tolist(), strict=True):
            store.append_many({POWER_SERIES: [(float(t), kw)]})  # the BAS's write of this minute
            started = time.perf_counter()
            forecast_now(recent.grid(int(t)), model)
            times.append(time.perf_counter() - started)
        store.close()
    print(f"one live forecast, each minute, from {LIVE_DAYS} days of 1-minute history: "
          f"median {statistics.median(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms")


def upstream_comparison() -> None:
    """The upstream project's own definition: first 67 % train, last 33 % test, error of the next
    60 one-minute values at every minute. esus predicts 15-minute means at 15/30/45/60 minutes and
    gives each minute the mean of its quarter hour."""
    from forecast.model import PowerModel

    grid, _ = load_meter_csv(FILES["1-minute (Jul-Aug 2022)"])
    split = int(len(grid) * 0.67)
    issue = np.arange(split, len(grid) - 60)
    minute_ahead = issue[:, None] + np.arange(1, 61)[None, :]
    actual = grid.values[minute_ahead]
    predicted = np.empty_like(actual)
    persistence = np.repeat(grid.values[issue][:, None], 60, axis=1)
    for quarter in range(4):
        model = PowerModel(60, horizon_s=(quarter + 1) * 900).fit(grid, np.arange(0, split - (quarter + 1) * 15))
        predicted[:, quarter * 15:(quarter + 1) * 15] = model.predict(grid, issue)[:, None]
    ok = np.isfinite(actual) & np.isfinite(predicted)
    mse = float(np.mean((predicted[ok] - actual[ok]) ** 2))
    mse_persistence = float(np.mean((persistence[ok] - actual[ok]) ** 2))
    print(f"upstream definition (67/33 split, next 60 one-minute values): esus MSE {mse:.2f} kW^2 "
          f"(RMSE {mse ** 0.5:.2f} kW); last-value persistence {mse_persistence:.2f} kW^2; "
          f"upstream LSTM 9.21 kW^2 (RMSE 3.03 kW), MLP 10.22, random forest 11.12")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="skip the backtests")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-holidays", action="store_true", help="weekends only (the figures before holidays)")
    parser.add_argument("--no-temperature", action="store_true", help="power alone (the figures before temperature)")
    args = parser.parse_args()
    if not args.quick:
        backtest_table({} if args.no_holidays else HOLIDAYS, not args.no_temperature)
        upstream_comparison()
    training_figures(args.rounds)
    forecast_latency()


if __name__ == "__main__":
    main()
