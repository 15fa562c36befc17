"""The sun table: pvlib's answers kept as plain arrays, so the service need not import pvlib; the
same answers from the table as from pvlib, and a bad table file is pvlib's turn, said once."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shades.sun import COLUMNS, Place, SunTable, SunTableError, by_pvlib, make_table

PLACES = {"Aalborg": (57.015, 9.985, 15.0, "Europe/Copenhagen"),   # the sun crosses north on summer nights
          "Singapore": (1.3, 103.8, 15.0, "Asia/Singapore"),       # nearly overhead: the azimuth swings fast
          "Cape Town": (-33.9, 18.4, 20.0, "Africa/Johannesburg")}
START = pd.Timestamp("2026-06-19 00:00", tz="UTC")


@pytest.mark.parametrize("name", PLACES)
def test_the_table_answers_as_pvlib_does(name: str, tmp_path: Path) -> None:
    latitude, longitude, altitude_m, tz = PLACES[name]
    path = tmp_path / "sun-table.npz"
    make_table(latitude, longitude, altitude_m, int(START.timestamp()), days=3).save(path)
    place = Place(latitude, longitude, altitude_m, tz, path)
    on_steps = pd.date_range(START, periods=3 * 1440, freq="1min").tz_convert(tz)
    between = on_steps[:-1] + pd.Timedelta(seconds=23)
    for times, tolerance in ((on_steps, 1e-9), (between, 0.05)):
        truth = by_pvlib(latitude, longitude, altitude_m, times)
        position, sky = place.position(times), place.clear_sky(times)
        ours = np.column_stack([position["elevation_deg"], position["azimuth_deg"], position["apparent_zenith_deg"],
                                sky["ghi"], sky["dni"], sky["dhi"]])
        # between two minutes: the sun up (refraction steps at the horizon, where no shade acts)
        seen = truth[:, 0] > 3 if tolerance > 1e-9 else np.ones(len(times), dtype=bool)
        azimuth_gap = np.abs((ours[:, 1] - truth[:, 1] + 180) % 360 - 180)
        assert azimuth_gap[seen].max() < tolerance * 2, name   # a sun near overhead swings fast
        for i, column in enumerate(COLUMNS):
            if column != "azimuth":
                scale = 1.0 if i < 3 else 20.0   # W/m² against degrees
                assert np.abs(ours[seen, i] - truth[seen, i]).max() < tolerance * scale, (name, column)
    assert place.asked_pvlib == 0   # the service's process never imported pvlib for these


def test_times_the_table_does_not_cover_come_from_pvlib(tmp_path: Path) -> None:
    latitude, longitude, altitude_m, tz = PLACES["Aalborg"]
    path = tmp_path / "sun-table.npz"
    make_table(latitude, longitude, altitude_m, int(START.timestamp()), days=1).save(path)
    place = Place(latitude, longitude, altitude_m, tz, path)
    later = pd.date_range(START + pd.Timedelta(days=2), periods=60, freq="1min")
    assert np.allclose(place.position(later)["elevation_deg"], by_pvlib(latitude, longitude, altitude_m, later)[:, 0])
    assert place.asked_pvlib == 1
    # a table made for another place is not this one's sun
    make_table(*PLACES["Singapore"][:3], int(START.timestamp()), days=1).save(path)
    inside = pd.date_range(START, periods=60, freq="1min")
    place.position(inside)
    assert place.asked_pvlib == 2


def test_a_new_table_on_file_is_read_at_the_next_answer(tmp_path: Path) -> None:
    latitude, longitude, altitude_m, tz = PLACES["Aalborg"]
    path = tmp_path / "sun-table.npz"
    place = Place(latitude, longitude, altitude_m, tz, path)
    times = pd.date_range(START + pd.Timedelta(hours=12), periods=5, freq="1min")
    place.position(times)
    assert place.asked_pvlib == 1 and place.table() is None   # none yet
    time.sleep(0.01)
    make_table(latitude, longitude, altitude_m, int(START.timestamp()), days=1).save(path)
    place.position(times)
    assert place.asked_pvlib == 1 and place.table() is not None
    assert not list(tmp_path.glob("*.part"))   # written whole, then renamed


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign", "pickle", "shape"])
def test_a_bad_table_is_refused_in_one_line_and_pvlib_answers(damage: str, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    latitude, longitude, altitude_m, tz = PLACES["Aalborg"]
    path = tmp_path / "sun-table.npz"
    make_table(latitude, longitude, altitude_m, int(START.timestamp()), days=1).save(path)
    if damage == "garbage":
        path.write_bytes(b"not a table at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "foreign":
        np.savez(path, values=np.zeros((3, 6)), format=np.array("someone else's"))
    elif damage == "pickle":   # an object array: loading it would run the pickle; it is never loaded
        np.savez(path, values=np.array([{"x": 1}], dtype=object), format=np.array("esus sun table 1"))
    else:
        np.savez(path, values=np.zeros((3, 2)), format=np.array("esus sun table 1"), made_by=np.array("x"),
                 place=np.array([latitude, longitude, altitude_m]), steps=np.array([0, 60]))
    with pytest.raises(SunTableError) as refused:
        SunTable.load(path)
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    place = Place(latitude, longitude, altitude_m, tz, path)
    times = pd.date_range(START + pd.Timedelta(hours=12), periods=5, freq="1min")
    with caplog.at_level(logging.WARNING, logger="shades.sun"):
        first = place.position(times)
        place.position(times)
    assert np.allclose(first["elevation_deg"], by_pvlib(latitude, longitude, altitude_m, times)[:, 0])
    assert len(caplog.records) == 1 and "pvlib in the service" in caplog.records[0].getMessage()
