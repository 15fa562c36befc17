"""`esus forecast backtest`: any meter CSV, the SPEC's JSON shape, a plot, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import esus_env
from tests.synthetic import office_power


def write_csv(path: Path, step_s: int = 900, days: int = 18, aware: bool = False) -> Path:
    grid = office_power(days, step_s=step_s, seed=4)
    stamps = pd.to_datetime(grid.times_s(), unit="s")
    if aware:
        stamps = stamps.tz_localize("UTC").tz_convert("Europe/Copenhagen")
    frame = pd.DataFrame({"Timestamp": stamps.astype(str) if aware else stamps.strftime("%m/%d/%Y %H:%M"),
                          "site": "x", "Main_kW": grid.values})
    frame.loc[5, "Main_kW"] = -1  # a sentinel
    frame.to_csv(path, index=False)
    with open(path, "a") as handle:
        handle.write(",,\n,,\n")  # blank trailing rows, as spreadsheets leave them
    return path


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "esus", "forecast", "backtest", *args], cwd=tmp_path,
                          env=esus_env(tmp_path), capture_output=True, text=True, timeout=600)


def test_json_shape_and_plot(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "meter.csv")
    result = run_cli(tmp_path, str(csv), "--json", "--plot", str(tmp_path / "bt.png"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {"rows", "interval_s", "target", "models", "train_seconds_median", "train_seconds_max"} <= set(summary)
    assert summary["interval_s"] == 900 and summary["rows"] > 0
    assert set(summary["models"]) == {"esus", "persistence", "seasonal_naive_day", "seasonal_naive_week"}
    bound = {"p90_coverage", "pinball_p90", "p90_width_kw", "p90_worst_hour", "p90_worst_hour_coverage",
             "p90_level_min", "p90_level_max"}
    for name, scores in summary["models"].items():   # only esus has a bound
        assert set(scores) == {"rmse", "mae", "cv_rmse", "nmbe"} | (bound if name == "esus" else set())
        assert all(np.isfinite(v) for v in scores.values())
    esus = summary["models"]["esus"]["cv_rmse"]
    assert esus < summary["models"]["persistence"]["cv_rmse"]
    assert esus < summary["models"]["seasonal_naive_day"]["cv_rmse"]
    assert (tmp_path / "bt.png").read_bytes()[:4] == b"\x89PNG"


def test_table_output_with_explicit_columns_and_offsets(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "meter.csv", step_s=3600, days=20, aware=True)
    result = run_cli(tmp_path, str(csv), "--time-col", "Timestamp", "--value-col", "Main_kW")
    assert result.returncode == 0, result.stderr
    assert "persistence" in result.stdout and "CV(RMSE)" in result.stdout


@pytest.mark.parametrize(("args", "message", "code"), [
    (["absent.csv"], "no such file", 2),                             # what was asked for is not there
    (["meter.csv", "--value-col", "Power"], "no column 'Power'", 2),
    (["meter.csv", "--time-col", "site"], "not times", 1),           # it is there, but its data will not do
    (["short.csv"], "days of data to backtest", 1),
])
def test_bad_input_says_what_is_wrong(tmp_path: Path, args: list[str], message: str, code: int) -> None:
    write_csv(tmp_path / "meter.csv")
    write_csv(tmp_path / "short.csv", days=5)
    result = run_cli(tmp_path, *args)
    assert result.returncode == code
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_days_too_gappy_to_train_keep_the_previous_model_and_the_run_finishes(tmp_path: Path) -> None:
    """Production keeps its model on a night whose data cannot validate a new one; so does the backtest."""
    csv = write_csv(tmp_path / "meter.csv", step_s=3600, days=24)
    frame = pd.read_csv(csv)
    for day in (19, 21):                        # two days with 18 of their 24 values missing
        gone = [day * 24 + hour for hour in range(24) if hour % 4]
        frame.loc[gone, "Main_kW"] = None
    frame.to_csv(csv, index=False)
    result = run_cli(tmp_path, str(csv), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["days_previous_model_kept"] == 2 and summary["days_without_a_model"] == 0
    assert summary["test_days"] == 9 and summary["rows"] > 0   # days 15 to 23 (14 days train the first)
    table = run_cli(tmp_path, str(csv))
    assert "on 2 days the data could not train a model and the previous one went on" in table.stdout


def test_help_explains_every_option_and_its_default(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "esus", "forecast", "backtest", "--help"], cwd=tmp_path,
                            env=esus_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for option in ("--time-col", "--value-col", "--json", "--plot"):
        assert option in text
    assert text.count("default") >= 4 and "hourly_electric_2022-23.csv" in text


def test_a_temperature_column_is_an_input_and_a_missing_one_is_named(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "meter.csv")
    frame = pd.read_csv(csv)
    frame["OAT_F"] = 60 + 10 * np.sin(np.arange(len(frame)) / 40)
    frame.loc[len(frame) - 150:len(frame) - 60, "OAT_F"] = None   # the station was down on a test day
    frame.to_csv(csv, index=False)
    result = run_cli(tmp_path, str(csv), "--json", "--temperature-col", "OAT_F")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert 50 < summary["temperature_known_pct"] < 100      # known, except while the station was down
    assert json.loads(run_cli(tmp_path, str(csv), "--json").stdout)["temperature_known_pct"] is None
    wrong = run_cli(tmp_path, str(csv), "--temperature-col", "OAT")
    assert wrong.returncode == 2 and "no column 'OAT'" in wrong.stderr


def test_an_outdoor_temperature_file_beside_the_meter_on_its_own_clock(tmp_path: Path) -> None:
    """A weather station's CSV in local standard time all year, a meter on the wall clock: each
    reading lands on the meter's slot of the same instant, never later than known."""
    from forecast.backtest import load_meter_csv, with_temperature_file

    csv = write_csv(tmp_path / "meter.csv", step_s=3600, days=20)
    grid, _ = load_meter_csv(csv)
    first = pd.Timestamp(grid.t0_s, unit="s")
    stamps = pd.date_range(first - pd.Timedelta(days=1), periods=24 * 22, freq="h")   # station clock
    station = pd.DataFrame({"Date": stamps.strftime("%Y-%m-%dT%H:%M:%S"),
                            "DryBulb": np.arange(len(stamps), dtype=float)})
    station.to_csv(tmp_path / "station.csv", index=False)
    plain = with_temperature_file(grid, tmp_path / "station.csv")
    moved = with_temperature_file(grid, tmp_path / "station.csv", zone="Etc/GMT+6", meter_zone="America/Chicago")
    slot = 24 * 5   # a day in June (the synthetic meter's summer): CDT is the station's LST + 1 h
    assert plain.temperature_c[slot] == station["DryBulb"][24 + slot]
    assert moved.temperature_c[slot] == station["DryBulb"][24 + slot - 1]
    missing = run_cli(tmp_path, str(csv), "--temperature", str(tmp_path / "nowhere.csv"))
    assert missing.returncode == 2 and "nowhere.csv: no such file" in missing.stderr
    wrong = run_cli(tmp_path, str(csv), "--temperature", str(tmp_path / "station.csv"), "--temperature-col", "OAT")
    assert wrong.returncode == 2 and "no column 'OAT'" in wrong.stderr
    result = run_cli(tmp_path, str(csv), "--temperature", str(tmp_path / "station.csv"), "--temperature-tz",
                     "Etc/GMT+6", "--tz", "America/Chicago")
    assert result.returncode == 0, result.stderr
    assert "outdoor temperature (" in result.stdout and "station.csv) known for 100.0 %" in result.stdout
    # not a terminal: progress a line a month, not a counter's carriage returns
    assert "\r" not in result.stderr and "backtest: " in result.stderr and " done, day " in result.stderr
    assert "days scored (the first 15 of the file only train)" in result.stdout
