"""The CLI as a person uses it: help, the demo run with status lines, a clean stop on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from esus.cli.main import build_parser, main
from tests.conftest import esus_env


def test_help_lists_every_command() -> None:
    text = build_parser().format_help()
    for command in ("run", "doctor", "forecast", "bms", "shades", "bacnet"):
        assert command in text


@pytest.mark.parametrize("argv", [["run", "--speed", "0"], ["run", "--speed", "fast"],
                                  ["bms", "backfill"], ["shades", "plan"]])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "esus" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_prints_status_lines_and_stops_cleanly(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "esus", "run", "--speed", "120"],
                               cwd=tmp_path, env=esus_env(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and sum("esus.status" in l for l in lines) < 3:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
    output = "".join(lines) + rest
    status = [l for l in lines if "esus.status" in l]
    assert len(status) >= 3, output
    assert "power " in status[-1] and " kW" in status[-1] and "CET" in status[-1] or "CEST" in status[-1]
    assert "demo mode" in output
    assert process.returncode == 0, output
    assert "esus stopped" in output
    assert (tmp_path / "xdg-state" / "esus-demo" / "history.db").exists()


def test_shades_plan_offline_is_clear_sky_json_and_a_png(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.png"
    assert main(["shades", "plan", "--date", "2026-06-22", "--json", "--plot", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["weather"] == "clear-sky" and set(doc["groups"]) == {"east", "south", "west"}
    assert all(2 <= g["moves"] <= 4 and g["avoided_gain_kwh"] > 5 for g in doc["groups"].values())
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["shades", "plan", "--date", "2026-12-21"]) == 0
    text = capsys.readouterr().out
    assert "heating" in text and "south (façade 180°)" in text
    assert main(["shades", "plan", "--date", "21.12.2026"]) == 2
    assert "use YYYY-MM-DD" in capsys.readouterr().err


def test_the_plan_names_each_facades_sun_and_what_the_rooms_get(capsys: pytest.CaptureFixture[str]) -> None:
    import re

    assert main(["shades", "plan", "--date", "2026-06-22"]) == 0
    text = capsys.readouterr().out
    assert len(re.findall(r"sun on the façade \d\d:\d\d-\d\d:\d\d, peak \d+ W/m²", text)) == 3, text
    assert len(re.findall(r"room model \d+\.\d-\d+\.\d °C, cooling \d+\.\d\d kWh, heating", text)) == 3, text
    # no group's room model is validated here: the VDI 3813 thermal automatic decides, and says so
    assert "VDI 3813 thermal automatic; the room model is not yet validated" in text


def test_bms_points_and_backfill_against_the_simulated_bms(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bms", "points"]) == 0
    assert "28 of 28 configured points found" in capsys.readouterr().out
    out = tmp_path / "week.csv"
    assert main(["bms", "backfill", "--days", "0.1", "--out", str(out)]) == 0
    rows = out.read_text().splitlines()
    assert rows[0] == "time,point,source,room,kind,unit,value"
    assert len(rows) > 28 * 100
    first = rows[1].split(",")
    assert first[0].endswith("Z") and float(first[-1]) == float(first[-1])
    assert "samples of 28 points" in capsys.readouterr().err


def test_every_command_says_what_it_does_and_every_option_what_it_takes() -> None:
    """`esus <command> --help` is the manual at the console: a description, a help for each option."""
    import argparse

    from esus.cli.main import build_parser

    def leaves(parser: argparse.ArgumentParser, name: str):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]   # argparse has no public walk of its parsers
        if not subs:
            yield name, parser
        for action in subs:
            for child, sub in action.choices.items():
                yield from leaves(sub, f"{name} {child}")

    found = list(leaves(build_parser(), "esus"))
    assert len(found) >= 10
    for name, parser in found:
        assert parser.description, f"{name} --help has no description"
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings[0]} has no help"


STUCK_STOP = """
import asyncio, threading
import esus.service as service

service.STOP_LIMIT_S = 1

async def main():
    stop = asyncio.Event()
    service.install_signal_handlers(stop)
    print("ready", flush=True)
    await stop.wait()
    threading.Event().wait()   # a stop that never ends: a thread that waits for nothing

asyncio.run(main())
"""


def test_a_stuck_stop_writes_every_threads_stack_and_ends_the_process(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", STUCK_STOP], cwd=tmp_path, env=esus_env(tmp_path),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 1, err
    assert "Timeout (0:00:01)!" in err and "in main" in err, err
