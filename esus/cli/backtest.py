"""`esus forecast backtest`: the walk-forward evaluation on a meter CSV."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from esus.settings.errors import EXIT_BAD_SETTINGS, EXIT_FAILURE, EXIT_OK
from forecast.training import MIN_TRAINING_DAYS


def cmd_backtest(args: argparse.Namespace) -> int:
    from forecast.backtest import MeterFileError, load_meter_csv, plot, walk_forward, with_temperature_file
    from forecast.calendar import CalendarError, WorkCalendar
    from forecast.estimators import one_core

    try:
        calendar = WorkCalendar(args.holidays, tuple(w.strip() for w in (args.holidays_worked or "").split(",") if w))
    except CalendarError as exc:
        print(f"esus: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    try:
        grid, column = load_meter_csv(Path(args.file), args.time_col, args.value_col,
                                      None if args.temperature else args.temperature_col)
        if args.temperature:
            grid = with_temperature_file(grid, Path(args.temperature), args.temperature_col,
                                         args.temperature_tz or args.tz, args.tz)
        terminal = sys.stderr.isatty()
        months: list[str] = []

        def progress(done: int, total: int, start_slot: int) -> None:
            """At a terminal a counter; else (a log, CI, a pipe) one line a month."""
            if args.json and terminal:
                return
            if terminal:
                print(f"\rbacktest: day {done}/{total}", end="" if done < total else "\n", file=sys.stderr)
                return
            month = f"{datetime.fromtimestamp(int(grid.local_times_s(np.array([start_slot]))[0]), UTC):%Y-%m}"
            if months and (month != months[-1] or done == total):
                print(f"backtest: {months[-1]} done, day {done}/{total}", file=sys.stderr, flush=True)
            months.append(month)

        with one_core():
            result = walk_forward(grid, progress=progress, calendar=calendar)
    except (MeterFileError, ValueError) as exc:
        print(f"esus: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS if isinstance(exc, MeterFileError) and exc.argument else EXIT_FAILURE
    summary = result.summary(column)
    if args.plot:
        plot(result, Path(args.plot), f"{Path(args.file).name}: walk-forward, {summary['test_days']} days scored "
                                      f"(the last 7 shown)")
    if args.json:
        print(json.dumps(summary))
        return EXIT_OK
    print(f"{summary['rows']} forecasts over {summary['test_days']} days scored (the first "
          f"{MIN_TRAINING_DAYS + 1} of the file only train), interval {summary['interval_s']} s")
    if summary["days_previous_model_kept"] or summary["days_without_a_model"]:
        print(f"gaps: on {summary['days_previous_model_kept']} days the data could not train a model and the "
              f"previous one went on (as in production); {summary['days_without_a_model']} days before any model "
              "were not forecast")
    print(f"target: {summary['target']}")
    print(f"{'model':<22}{'RMSE kW':>9}{'MAE kW':>9}{'CV(RMSE) %':>12}{'NMBE %':>9}")
    for name, m in summary["models"].items():
        print(f"{name:<22}{m['rmse']:>9.3f}{m['mae']:>9.3f}{m['cv_rmse']:>12.1f}{m['nmbe']:>9.2f}")
    bound = summary["models"]["esus"]
    print(f"90 % upper bound covered {bound['p90_coverage']:.1f} % of actuals "
          f"({bound['p90_worst_hour_coverage']:.1f} % at {bound['p90_worst_hour']:02d}h, its worst hour), "
          f"{bound['p90_width_kw']:.2f} kW above the forecast on average, pinball loss {bound['pinball_p90']:.3f} kW; "
          f"calibrated at quantiles {bound['p90_level_min']:.3f} to {bound['p90_level_max']:.3f} "
          "as its misses moved them")
    if summary["temperature_known_pct"] is not None:
        source = args.temperature or args.temperature_col
        print(f"outdoor temperature ({source}) known for {summary['temperature_known_pct']:.1f} % of the forecasts; "
              "the others were made from power alone")
    print(f"training {summary['train_seconds_median']:.2f} s median, {summary['train_seconds_max']:.2f} s max")
    return EXIT_OK


def add_backtest_command(commands: argparse._SubParsersAction) -> None:
    backtest = commands.add_parser(
        "backtest", help="walk-forward evaluation on a meter CSV",
        description="Retrain each local midnight on what was known, forecast every interval of the next day, and "
                    "score esus against persistence and the seasonal naive baselines (1-minute to hourly data; "
                    "gaps, DST repeats, sentinels and spikes are cleaned). Shipped data to try: "
                    "esus/data/open-dsm/egauge_1min_2022-07_08.csv and hourly_electric_2022-23.csv, with "
                    "weather_hourly_2022-23.csv beside them. Progress goes to stderr: a counter at a terminal, "
                    "else a line a month.")
    backtest.add_argument("file", metavar="FILE.csv", help="the meter's CSV: a time column and a power column (kW)")
    backtest.add_argument("--time-col", metavar="C",
                          help="the time column (default: the first whose name has 'time' or 'date', else the first)")
    backtest.add_argument("--value-col", metavar="C", help="the power column, kW (default: the first numeric column)")
    backtest.add_argument("--temperature", metavar="FILE.csv",
                          help="an outdoor temperature CSV beside the meter's (a time column and a temperature "
                               "column, °C or °F, any interval), e.g. esus/data/open-dsm/weather_hourly_2022-23.csv")
    backtest.add_argument("--temperature-col", metavar="C",
                          help="the outdoor temperature column (°C or °F) to forecast with, in --temperature's file "
                               "(default: its first numeric column) or else in the meter's: each forecast uses the "
                               "latest value at or before its own time, never a later one (default: power alone)")
    backtest.add_argument("--tz", metavar="ZONE",
                          help="the meter's time zone when its times carry no offset, e.g. America/Chicago (needed "
                               "only to line up a --temperature file kept on another clock)")
    backtest.add_argument("--temperature-tz", metavar="ZONE",
                          help="the time zone of --temperature's times, e.g. Etc/GMT+6 for a weather station's local "
                               "standard time all year (default: the meter's)")
    backtest.add_argument("--holidays", metavar="CC[-SUB]",
                          help="the meter's country (and subdivision) for public holidays, e.g. DK or US-WI: a "
                               "holiday is a non-working day (default: weekends only)")
    backtest.add_argument("--holidays-worked", metavar="WORD[,WORD]",
                          help="words of the names of holidays the building works on, e.g. Juneteenth,observed "
                               "(default: none)")
    backtest.add_argument("--json", action="store_true", help="print the summary as JSON (default: a table)")
    backtest.add_argument("--plot", metavar="OUT.png",
                          help="also draw the last week's forecast, its 90 %% bound and RMSE by hour (default: none)")
    backtest.set_defaults(func=cmd_backtest)
