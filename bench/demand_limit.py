"""Demand limiting replayed on real meters, per billing month (demand_response.replay).

The meters: the shipped open-dsm building (one small commercial building in the US Midwest), its
1-minute eGauge record (July-August 2022) with 15- and 30-minute demand intervals, and its hourly
year (2022-03 to 2023-03) with a 60-minute interval (the data's own step: each hour's minutes are
its mean, so inside an hour there is nothing to project; bench only, the service takes 15 or 30).
Any other meter CSV can be added with --meter FILE:INTERVAL_MIN (time column first, kW column named
by --column or the first numeric one).

The flexible building (stated, not learnt): levels 1/2/3 take 5/10/15 % off the building's power
(Guideline 36's 0.5/1/2 K cooling setpoint raises on an HVAC-heavy building), 2 minutes after they
are ordered, for at most 3 hours a day; half of what a shed saves comes back after it, decaying
with a 30-minute time constant, up to half of what its first hour saved (a zone settles at its
raised setpoint within the hour).

The controllers, all with the same target in force: the larger of the billing month's peak so far
and the peak the same flexibility could have held the 28 days before the month to (learnt from the
building's record; none in a meter's first month):
- none;
- reactive (the OpenEMS way): the level the last 15 minutes' mean asks for, when it crosses the target;
- esus: the interval's projection (metered so far + the rest at the recent power, or at the
  forecast's bound when higher) with its margin learnt from its own misses (90 %), the next interval
  at the forecast's bound, and the plan (demand_response.shed_plan) that orders the lowest level
  leaving a way to hold this interval, the next and the rebound after them: a shed at the last
  minute that can still hold, a release once its rebound fits, a stage a minute, a 3-minute dwell;
- oracle: perfect foresight of the whole month, the lowest peak the same flexibility can hold.

Per month: the peak without action, each controller's cut (kW and % of the oracle's), the demand
charge avoided at --price per kW, shed hours, shed episodes and the unnecessary ones (in intervals
below the oracle's peak), and whether a release set the month's peak (R). The closing lines give
the medians over months and meters against the goals (>= 80 % of the oracle's cut, >= 1.5x the
reactive's, <= 2 unnecessary sheds a month, no month whose peak a release set).

Usage: .venv/bin/python bench/demand_limit.py [--price 15] [--meter FILE:MIN ...] [--only NAME]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demand_response.limiting import Flexibility, Rebound  # noqa: E402 - after the path is set
from forecast.backtest import load_meter_csv, walk_forward  # noqa: E402
from forecast.calendar import WorkCalendar  # noqa: E402
from forecast.features import Horizon  # noqa: E402
from forecast.training import TRAINING_DAYS  # noqa: E402
from demand_response.replay import (  # noqa: E402
    Esus,
    Meter,
    Outcome,
    Reactive,
    judge,
    no_action,
    oracle,
    replay,
)

DATA = Path(__file__).resolve().parents[1] / "esus" / "data" / "open-dsm"
FLEX = Flexibility(shares=(0.05, 0.10, 0.15), response_min=2, max_minutes_per_day=180)
REBOUND = Rebound(ratio=0.5, time_constant_min=30.0)
HISTORY_DAYS = 28
DECISION_S: list[float] = []   # every esus decision's cost, all meters


@dataclass(frozen=True)
class MeterFile:
    name: str
    path: Path
    column: str | None
    interval_min: int
    step: str   # "interpolate" minutes between samples, or "hold" each sample's mean over its step


def shipped() -> list[MeterFile]:
    minute = DATA / "egauge_1min_2022-07_08.csv"
    hourly = DATA / "hourly_electric_2022-23.csv"
    return [MeterFile("open-dsm 1-min, 15-min interval", minute, "Usage_kW", 15, "interpolate"),
            MeterFile("open-dsm 1-min, 30-min interval", minute, "Usage_kW", 30, "interpolate"),
            MeterFile("open-dsm hourly year, 60-min interval", hourly, "total_main_kw", 60, "hold")]


def minutes(meter: MeterFile) -> pd.Series:
    """The meter on a 1-minute grid of whole local days (wall-clock time, as the file gives it)."""
    frame = pd.read_csv(meter.path)
    column = meter.column or next(c for c in frame.columns[1:] if pd.api.types.is_numeric_dtype(frame[c]))
    times = pd.to_datetime(frame.iloc[:, 0], format="mixed")
    series = pd.Series(pd.to_numeric(frame[column], errors="coerce").to_numpy(), index=times).dropna()
    series = series[~series.index.duplicated()].sort_index()
    grid = pd.date_range(series.index[0].floor("D"), series.index[-1].ceil("D") - pd.Timedelta(minutes=1), freq="1min")
    if meter.step == "hold":
        return series.reindex(grid).ffill().bfill()
    return series.reindex(grid).interpolate(limit_direction="both")


def forecasts(meter: MeterFile, calendar: WorkCalendar) -> pd.DataFrame:
    """esus's forecast walked forward over the meter as the service makes it (retrained each
    midnight on the last TRAINING_DAYS): its mean and 90 % bound per window it forecasts, indexed
    by the window's start (wall-clock), with the window's length."""
    grid, _ = load_meter_csv(meter.path, value_col=meter.column)
    result = walk_forward(grid, calendar=calendar, window_days=TRAINING_DAYS)
    h = Horizon(grid.step_s)
    starts = grid.times_s(result.issue + h.ahead - h.window)
    return pd.DataFrame({"kw": result.predictions["esus"], "upper_kw": result.upper},
                        index=pd.to_datetime(starts, unit="s")).assign(window_s=h.window * grid.step_s)


def cached(folder: Path | None, meter: MeterFile, make: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """The forecast from `folder` when it holds one newer than the meter file, else made (and kept there)."""
    if folder is None:
        return make()
    path = folder / f"{meter.path.stem}.forecast.csv"
    if path.exists() and path.stat().st_mtime > meter.path.stat().st_mtime:
        return pd.read_csv(path, index_col=0, parse_dates=True)
    made = make()
    folder.mkdir(parents=True, exist_ok=True)
    made.to_csv(path)
    return made


def per_interval(made: pd.DataFrame, month: pd.Series, interval_min: int) -> tuple[np.ndarray, np.ndarray]:
    """The forecast of each of the month's intervals: the mean of the windows that tile it (NaN
    where one is missing)."""
    window = pd.Timedelta(seconds=int(made["window_s"].iloc[0]))
    tiles = made[(made.index - made.index.normalize()) % window == pd.Timedelta(0)]
    starts = pd.date_range(month.index[0], periods=len(month) // interval_min, freq=f"{interval_min}min")
    out = tiles[["kw", "upper_kw"]].resample(f"{interval_min}min").mean(numeric_only=True)
    count = tiles["kw"].resample(f"{interval_min}min").count()
    out[count < max(1, pd.Timedelta(minutes=interval_min) // window)] = np.nan
    out = out.reindex(starts)
    return out["kw"].to_numpy(dtype=float), out["upper_kw"].to_numpy(dtype=float)


def as_meter(series: pd.Series, interval_min: int) -> Meter:
    days = np.asarray((series.index.normalize() - series.index[0].normalize()).days, dtype=int)
    return Meter(series.to_numpy(dtype=float), days, interval_min)


def learnt_floor(series: pd.Series, day_start: pd.Timestamp, interval_min: int) -> float | None:
    """As the service learns it each night: the peak the flexibility could have held the last
    HISTORY_DAYS to (None: under half of them recorded)."""
    before = series[(series.index >= day_start - pd.Timedelta(days=HISTORY_DAYS)) & (series.index < day_start)]
    if len(before) < HISTORY_DAYS * 1440 / 2:
        return None
    return oracle(as_meter(before, interval_min), FLEX, REBOUND, tolerance_kw=0.05).target_kw


def run_month(series: pd.Series, month: pd.Series, interval_min: int,
              made: pd.DataFrame | None) -> tuple[dict[str, Outcome], float, list[float | None]]:
    """Each controller's outcome, the peak without action and each day's learnt floor."""
    meter = as_meter(month, interval_min)
    best = oracle(meter, FLEX, REBOUND)
    floors = [learnt_floor(series, day, interval_min) for day in pd.date_range(month.index[0], month.index[-1],
                                                                                freq="D")]

    def target(minute: int, peak_kw: float) -> float:
        """As in the service: the larger of the peak so far and the day's floor; with no floor
        learnt yet, none on the month's first day (each rise of it is a new peak)."""
        floor = floors[minute // 1440]
        return max(peak_kw, floor or 0.0) if floor or minute >= 1440 else float("inf")

    esus = Esus(meter, FLEX, forecast=per_interval(made, month, interval_min) if made is not None else None)
    esus.limiter.errors.learn(series[(series.index >= month.index[0] - pd.Timedelta(days=HISTORY_DAYS))
                             & (series.index < month.index[0])].to_numpy(dtype=float))
    controllers: dict[str, Callable] = {"none": no_action, "reactive": Reactive(meter, FLEX), "esus": esus}
    assert best.target_kw is not None
    outcomes = {name: judge(meter, replay(meter, FLEX, REBOUND, controller, target), best.target_kw)
                for name, controller in controllers.items()}
    outcomes["oracle"] = judge(meter, best, best.target_kw)
    DECISION_S.extend(esus.decide_s)
    return outcomes, float(meter.intervals(meter.load_kw).max()), floors


def share(cut: float, of: float) -> float:
    return cut / of if of > 1e-9 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--price", type=float, default=15.0, help="demand charge, per kW of the month's peak")
    parser.add_argument("--meter", action="append", default=[], metavar="FILE:MIN",
                        help="another meter CSV and its demand interval in minutes")
    parser.add_argument("--column", help="the kW column of the --meter files")
    parser.add_argument("--only", help="run only the meters whose name contains this")
    parser.add_argument("--holidays", default="US", help="the meters' country for the forecast's calendar")
    parser.add_argument("--cache", type=Path, help="a folder that keeps the walked-forward forecasts between runs")
    parser.add_argument("--no-forecast", action="store_true", help="esus without its forecast (the power now only)")
    args = parser.parse_args()
    meters = shipped() + [MeterFile(Path(m).name, Path(m.rsplit(":", 1)[0]), args.column, int(m.rsplit(":", 1)[1]),
                                    "interpolate") for m in args.meter]
    ratios, versus_reactive, needless, release_peaks, months = [], [], [], 0, 0
    made_for: dict[Path, pd.DataFrame] = {}   # a meter file's forecast, walked forward once
    for meter in meters:
        if args.only and args.only not in meter.name:
            continue
        series = minutes(meter)
        started = time.perf_counter()
        if not args.no_forecast and meter.path not in made_for:
            made_for[meter.path] = cached(args.cache, meter, lambda: forecasts(meter, WorkCalendar(args.holidays)))
        made = made_for.get(meter.path)
        print(f"\n{meter.name} ({meter.path.name}; forecast walked forward in {time.perf_counter() - started:.0f} s)")
        print(f"{'month':8} {'peak kW':>7} {'floor kW':>11} | {'oracle cut':>10} {'h':>4} | "
              f"{'reactive cut':>17} {'h':>4} {'sheds':>5} {'unn':>3} | {'esus cut':>17} {'h':>4} {'sheds':>5} "
              f"{'unn':>3} | {'esus saves':>10}")
        for period, month in series.groupby(series.index.to_period("M")):
            if len(month) < 20 * 1440:
                continue   # a stub of a month at the record's end: no billing month
            started = time.perf_counter()
            out, base, floors = run_month(series, month, meter.interval_min, made)
            known = [f for f in floors if f is not None]
            floor = f"{min(known):4.1f}-{max(known):4.1f}" if known else "none"
            o, r, e = out["oracle"], out["reactive"], out["esus"]
            months += 1
            ratios.append(share(e.cut_kw, o.cut_kw))
            versus_reactive.append(share(e.cut_kw, r.cut_kw) if r.cut_kw > 0 else float("inf") if e.cut_kw > 0 else 0)
            needless.append(e.unnecessary)
            release_peaks += e.release_set_peak
            print(f"{str(period):8} {base:7.1f} {floor:>11} | {o.cut_kw:6.2f} kW {o.shed_hours:4.1f} | "
                  f"{r.cut_kw:6.2f} kW {share(r.cut_kw, o.cut_kw):5.0%}{'R' if r.release_set_peak else ' '} "
                  f"{r.shed_hours:4.1f} {r.sheds:5d} {r.unnecessary:3d} | "
                  f"{e.cut_kw:6.2f} kW {share(e.cut_kw, o.cut_kw):5.0%}{'R' if e.release_set_peak else ' '} "
                  f"{e.shed_hours:4.1f} {e.sheds:5d} {e.unnecessary:3d} | {e.cut_kw * args.price:10.0f}"
                  f"   ({time.perf_counter() - started:.0f} s)")
    if not months:
        return
    finite = [v for v in versus_reactive if np.isfinite(v)]
    print(f"\n{months} billing months. esus's cut, median share of the oracle's: {statistics.median(ratios):.0%} "
          f"(goal >= 80 %); median esus/reactive: {statistics.median(finite) if finite else float('nan'):.2f}x "
          f"(goal >= 1.5x; {len(versus_reactive) - len(finite)} months where only esus cut); unnecessary sheds a month: "
          f"median {statistics.median(needless):g}, max {max(needless)} (goal <= 2); months whose peak a release set: "
          f"{release_peaks} (goal 0)")
    costs = np.array(DECISION_S) * 1000
    print(f"One decision (Limiter.decide, once a minute in the service): median {np.median(costs):.3f} ms, "
          f"99th percentile {np.percentile(costs, 99):.3f} ms, max {costs.max():.2f} ms over {costs.size} minutes "
          "(goal < 5 ms)")


if __name__ == "__main__":
    main()
