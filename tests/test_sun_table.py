"""The service's sun table: made by pvlib in a process of its own at a start that has none and each
night, so the service's own process never imports pvlib (nor SciPy, h5py or scikit-learn)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from esus.parts import sun_table
from esus.parts.sun_table import PART, SunTableKeeper
from esus.runtime.supervisor import Health
from shades.sun import Place, make_table

NOW = datetime(2026, 6, 19, 9, 30, tzinfo=UTC)


class Clock:
    def now(self) -> datetime:
        return NOW


def place_in(tmp_path: Path) -> Place:
    return Place(57.015, 9.985, 15.0, "Europe/Copenhagen", tmp_path / "sun-table.npz")


def test_a_start_without_a_table_has_one_made_in_a_process_of_its_own(tmp_path: Path, sun_in_own_process) -> None:
    place, health = place_in(tmp_path), Health(Clock())
    job = SunTableKeeper(place, health)
    assert not job.reaches(NOW)
    asyncio.run(job.at_start(NOW))
    assert job.reaches(NOW, timedelta(days=13)) and health.parts[PART].error is None
    today = pd.date_range(pd.Timestamp(NOW).floor("D"), periods=1440, freq="1min")
    place.position(today), place.clear_sky(today)
    assert place.asked_pvlib == 0


def test_a_start_with_a_table_that_reaches_far_enough_makes_none(tmp_path: Path, monkeypatch) -> None:
    place = place_in(tmp_path)
    make_table(place.latitude, place.longitude, place.altitude_m, int((NOW - timedelta(days=1)).timestamp()),
               days=4).save(place.table_path)
    called: list[int] = []

    async def count(*args) -> str:
        called.append(1)
        return ""

    monkeypatch.setattr(sun_table, "made_elsewhere", count)
    asyncio.run(SunTableKeeper(place, Health(Clock())).at_start(NOW))
    assert not called
    asyncio.run(SunTableKeeper(place, Health(Clock())).at_start(NOW + timedelta(days=2)))   # two days on: too short
    assert called


@pytest.mark.parametrize("kept", [False, True])
def test_a_table_that_cannot_be_made_is_the_parts_fault_and_says_what_serves(tmp_path: Path, monkeypatch,
                                                                            kept: bool) -> None:
    place, health = place_in(tmp_path), Health(Clock())
    if kept:
        make_table(place.latitude, place.longitude, place.altitude_m, int(NOW.timestamp()) - 86400, days=3
                   ).save(place.table_path)

    async def broken(*args) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sun_table, "made_elsewhere", broken)
    asyncio.run(SunTableKeeper(place, health).renew(NOW))
    said = health.parts[PART].error or ""
    assert "the disk is full" in said
    assert ("the one on file still serves" in said) is kept and ("pvlib answers in the service" in said) is not kept


def test_the_service_process_loads_neither_pvlib_nor_scipy_nor_scikit_learn() -> None:
    """What the service imports; pvlib (with SciPy and h5py) and scikit-learn live in the processes
    that train and make the sun table."""
    code = ("import sys, esus.service, esus.demo\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pvlib', 'scipy', 'h5py', 'sklearn'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_doctor_says_where_the_sun_comes_from(site_file: Path, tmp_path: Path) -> None:
    from esus.cli.doctor import check_sun
    from esus.parts.shading import location_of
    from esus.settings.config import load_settings

    settings = load_settings({"ESUS_SITE": str(site_file), "ESUS_STATE_DIR": str(tmp_path / "state"),
                              "GPIOZERO_PIN_FACTORY": "mock"})
    (tmp_path / "state").mkdir(exist_ok=True)
    place = location_of(settings)
    assert place.table_path is not None
    check = check_sun(settings)
    assert check.ok and not check.warning and "no table yet" in check.detail
    now = int(datetime.now(UTC).timestamp())
    make_table(place.latitude, place.longitude, place.altitude_m, now - 86400, days=15).save(place.table_path)
    check = check_sun(settings)
    assert check.ok and not check.warning and check.detail.startswith("pvlib ") and "sun-table.npz" in check.detail
    make_table(place.latitude, place.longitude, place.altitude_m, now - 86400, days=2).save(place.table_path)
    assert check_sun(settings).warning and "ends soon" in check_sun(settings).detail
    place.table_path.write_bytes(b"damaged")
    check = check_sun(settings)
    assert check.ok and check.warning and "not a readable sun table" in check.detail and "\n" not in check.detail
