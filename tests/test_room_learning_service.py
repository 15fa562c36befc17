"""The rooms learnt in the service: the record read back from the history store, the nightly fit
in its own process, the fit kept and handed to the shades, `esus shades rooms` and the doctor."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from esus.cli.doctor import check_shade_rooms
from esus.cli.main import main
from esus.parts.bms import configured_points
from esus.parts.room_learning import (
    STATE_KEY,
    RoomLearning,
    fit_group,
    poa_series,
    position_series,
    room_record,
    room_series_of,
)
from esus.runtime.supervisor import Health
from esus.settings.config import load_settings
from esus.state.store import HistoryStore
from shades.identify import RoomFit
from tests.test_room_learning import lived_in, weeks

DAYS = 36


@pytest.fixture
def settings(site_file: Path, tmp_path: Path):
    return load_settings({"ESUS_SITE": str(site_file), "ESUS_STATE_DIR": str(tmp_path / "state"),
                          "GPIOZERO_PIN_FACTORY": "mock"})


def keep_the_east_rooms(settings, days: int = DAYS) -> pd.DataFrame:
    """What the service would have kept of the east group's rooms over `days` (a room it was not
    told about: tests.test_room_learning's): the two rooms' sensors every 5 minutes, the
    setpoints, the outdoor temperature the forecast knew, the façade's irradiance, the blind up."""
    truth = lived_in(weeks(days))
    east = settings.site.shades.groups[0]
    series = room_series_of(settings, configured_points(settings))[east.number]
    five = truth.tz_convert("UTC").resample("5min").interpolate().iloc[:-1]
    poa = (truth["solar_w"] / (7.2 * 0.75 * 0.6)).tz_convert("UTC").resample("5min").ffill()
    rows: dict[str, list] = {name: [] for name in (*series.temperature, *series.heating, *series.cooling)}
    for offset, name in zip((-0.2, 0.2), series.temperature, strict=True):
        rows[name] = list(zip(five.index.to_pydatetime(), five["air_c"] + offset, strict=True))
    for name in series.heating:
        rows[name] = [(t, 21.0) for t in truth.index[::6].to_pydatetime()]
    for name in series.cooling:
        rows[name] = [(t, 24.0) for t in truth.index[::6].to_pydatetime()]
    rows[series.outdoor[-1]] = list(zip(truth.index.to_pydatetime(), truth["outdoor_c"], strict=True))
    rows[poa_series(east.name)] = list(zip(poa.index.to_pydatetime(), poa, strict=True))
    rows[position_series(east.name)] = [(t, 0.0) for t in poa.index.to_pydatetime()]
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with HistoryStore(settings.state_dir / "history.db") as store:
        store.append_many(rows)
    return truth


def end_of(truth: pd.DataFrame) -> int:
    return int(truth.index[-1].timestamp())


def test_the_record_is_read_back_from_the_store_and_the_room_learnt(settings) -> None:
    truth = keep_the_east_rooms(settings)
    east, shades, tz = settings.site.shades.groups[0], settings.site.shades, settings.site.site.tz
    series = room_series_of(settings, configured_points(settings))[east.number]
    assert len(series.temperature) == 2 and series.heating and series.cooling
    with HistoryStore(settings.state_dir / "history.db", readonly=True) as store:
        record = room_record(store, east, shades, tz, series, int(truth.index[0].timestamp()), end_of(truth))
        fit = fit_group(store, east, shades, tz, series, end_of(truth))
    both = pd.merge(record, truth, left_index=True, right_index=True, suffixes=("", "_true")).dropna()
    assert len(both) > 30 * 24
    assert np.abs(both["air_c"] - both["air_c_true"]).max() < 0.05     # the two rooms' mean
    assert (both["heating_c"] == 21.0).all() and (both["cooling_c"] == 24.0).all()
    # the site's window is 8.64 m², the one the sun came through 7.2 m²: the fit learns what the site file misses
    assert np.allclose(both["solar_w"], both["solar_w_true"] * 8.64 / 7.2, rtol=0.02, atol=1.0)
    assert fit.validated, fit.reason
    assert 1.0 < fit.model.solar_factor * 8.64 / 7.2 < 3.0


def test_without_room_points_a_group_stays_with_the_rule_and_says_why(settings) -> None:
    keep_the_east_rooms(settings, days=3)
    east = settings.site.shades.groups[0]
    empty = room_series_of(settings, [])[east.number]
    with HistoryStore(settings.state_dir / "history.db", readonly=True) as store:
        fit = fit_group(store, east, settings.site.shades, settings.site.site.tz, empty, 1_800_000_000)
    assert not fit.validated and "give the group's rooms" in fit.reason


class Recorded:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict, dict]] = []

    def record(self, measurement: str, fields: dict, at: datetime, tags: dict) -> None:
        self.lines.append((measurement, fields, tags))


def test_the_nightly_fit_runs_in_its_own_process_and_hands_the_shades_their_rooms(settings) -> None:
    truth = keep_the_east_rooms(settings)
    handed: dict[int, RoomFit] = {}
    telemetry, health = Recorded(), Health(SimpleNamespace(now=lambda: datetime.now(UTC)))
    series = room_series_of(settings, configured_points(settings))
    with HistoryStore(settings.state_dir / "history.db") as store:
        learning = RoomLearning(settings.site.shades, settings.site.site.tz, store, telemetry, health,
                                lambda: series, lambda n, fit: handed.__setitem__(n, fit))
        assert learning.wanted_now()            # a long enough record and no fit yet: no need to wait for the night
        asyncio.run(learning.nightly(truth.index[-1].to_pydatetime()))
        kept = store.get_state(STATE_KEY.format(number=1))
    east, south = handed[1], handed[2]
    assert east.validated and not south.validated and "0 whole days" in south.reason
    assert kept["rmse_k"] == east.rmse_k
    fields = {tags["group"]: f for m, f, tags in telemetry.lines if m == "shade_room"}
    assert fields["east"]["validated"] == 1 and fields["east"]["rmse_k"] <= 0.5 and "c_mass_kj_k" in fields["east"]
    assert fields["south"]["validated"] == 0 and "rmse_k" not in fields["south"]
    # a restart: the kept fits are handed over at once, before any night
    again: dict[int, RoomFit] = {}
    with HistoryStore(settings.state_dir / "history.db") as store:
        RoomLearning(settings.site.shades, settings.site.site.tz, store, telemetry, health, lambda: series,
                     lambda n, fit: again.__setitem__(n, fit))
    assert again[1] == east and not again[2].validated
    # and the doctor says which group runs on what
    check = check_shade_rooms(settings)
    assert check.ok and "east: the room model (" in check.detail and "south: the rule (" in check.detail


def test_a_fit_that_fails_keeps_yesterdays_rooms_and_says_so(settings) -> None:
    truth = keep_the_east_rooms(settings)
    series = room_series_of(settings, configured_points(settings))
    handed: dict[int, RoomFit] = {}
    health = Health(SimpleNamespace(now=lambda: datetime.now(UTC)))
    with HistoryStore(settings.state_dir / "history.db") as store:
        learning = RoomLearning(settings.site.shades, settings.site.site.tz, store, Recorded(), health,
                                lambda: series, lambda n, fit: handed.__setitem__(n, fit))
        asyncio.run(learning.nightly(truth.index[-1].to_pydatetime()))
        assert handed[1].validated
        # a job that does not finish in time: yesterday's rooms stay, the part says so once
        learning.timeout_s = 0.01
        asyncio.run(learning.nightly(truth.index[-1].to_pydatetime()))
        assert handed[1].validated and learning.fits[1].validated
        assert "the room fit failed (TimeoutError: no result within 0.01 s)" in health.parts["room learning"].error
        # a group whose record cannot be read is that group's fault, said in its reason
        learning.timeout_s, learning.series = 900.0, lambda: {2: series[2], 3: series[3]}
        asyncio.run(learning.nightly(truth.index[-1].to_pydatetime()))
        assert health.parts["room learning"].error is None
        assert not handed[1].validated and "the fit failed (KeyError: 1)" in handed[1].reason


def test_esus_shades_rooms_shows_each_group_and_plots_the_held_out_days(
        settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESUS_SITE", str(settings.site_path))
    monkeypatch.setenv("ESUS_STATE_DIR", str(settings.state_dir))
    assert main(["shades", "rooms"]) == 1
    assert "no record yet" in capsys.readouterr().err
    truth = keep_the_east_rooms(settings)
    monkeypatch.setattr("time.time", lambda: truth.index[-1].timestamp())
    out = tmp_path / "rooms.png"
    assert main(["shades", "rooms", "--plot", str(out)]) == 0
    text = capsys.readouterr().out
    assert "east: the room forecast decides: validated: a day ahead it misses the held-out 7 days by 0." in text
    assert "room: UA to outdoors" in text and "plant: cooled workday" in text
    assert "south: the VDI 3813 rule decides: 0 whole days of room record" in text
    assert "the service: no fit kept yet" in text
    assert out.stat().st_size > 20_000


def test_a_validated_room_lets_the_room_forecast_decide_and_an_unvalidated_one_does_not() -> None:
    """The coordinator hands the learnt room to the policy: the rule's trace before, the room
    forecast's after; a fit that fails its bound is the rule again."""
    from shades.identify import fit_room
    from tests.shade_harness import Rig, SimTime
    from tests.test_room_learning import prior

    fit = fit_room(lived_in(weeks(28)), prior())
    assert fit.validated
    rig = Rig(SimTime(datetime(2026, 6, 22, 8, 0, tzinfo=UTC)))   # 10:00 local, the sun on the east façade
    rig.inputs.rooms = {1: (("1.213", 23.0, 21.0, 24.0),)}
    rig.feed_wind(3.0)
    coordinator = rig.start()
    try:
        rig.run_for(15 * 60)   # the wind data's release
        east = coordinator.groups[1]
        assert east.decision.trace[-1].rule == "thermal_automatic"
        coordinator.set_room_fit(1, fit)
        rig.run_for(60)
        assert "thermal_automatic passed (the room model is validated" in east.decision.explain()
        assert east.decision.trace[-1].rule == "room_forecast" and east.day is not None
        assert east.day.rooms.room == fit.model
        failing = RoomFit.from_dict(fit.to_dict() | {"rmse_k": 0.9, "reason": "not validated: 0.90 K"})
        coordinator.set_room_fit(1, failing)
        rig.run_for(60)
        assert east.decision.trace[-1].rule == "thermal_automatic" and east.day.rooms.room != fit.model
    finally:
        coordinator.close()


def test_the_plan_uses_the_rooms_the_service_learnt(settings, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`esus shades plan` plans as the service would: the room forecast for a group whose kept fit
    is validated, the rule for the others."""
    import json

    from shades.identify import fit_room
    from tests.test_room_learning import prior

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with HistoryStore(settings.state_dir / "history.db") as store:
        store.set_state(STATE_KEY.format(number=1), fit_room(lived_in(weeks(28)), prior()).to_dict())
    for key, value in (("ESUS_SITE", str(settings.site_path)), ("ESUS_STATE_DIR", str(settings.state_dir)),
                       ("ESUS_WEATHER_URL", "off")):
        monkeypatch.setenv(key, value)
    assert main(["shades", "plan", "--date", "2026-06-22", "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]

    def deciders(name: str) -> set[str]:
        return {entry["trace"][-1]["rule"] for entry in groups[name]["timeline"] if entry["poa_wm2"] > 200}
    assert "room_forecast" in deciders("east") and "thermal_automatic" not in deciders("east")
    assert "thermal_automatic" in deciders("south") and "room_forecast" not in deciders("south")
