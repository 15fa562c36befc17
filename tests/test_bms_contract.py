"""The contract every BMS adapter passes, run over each API in esus.parts.bms_sources.SOURCES: the
points listed, samples sorted, unique, in UTC and inside the window asked for (a repeated hour of
the end of summer time included), and the poller's guarantees in the service (high-water marks
across a restart, no gap, no duplicate, an outage back-filled, one line per failure and per
recovery, an unknown point skipped). A new adapter adds its server to tests/bms_servers.py; each API
is also run against a server no one here wrote where one installs (shaystack for Haystack)."""

from __future__ import annotations

import logging
from csv import reader
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from bms_wrapper.poller import backfill
from bms_wrapper.simulator import SimPoint, values
from esus.parts.bms_sources import SOURCES
from esus.runtime.clock import ManualClock
from esus.settings.config import load_settings
from tests.bms_servers import SERVERS, Rig, Source, site_points

NOW = datetime(2026, 6, 10, 12, 0, 30, tzinfo=UTC)
ROOM = 6397   # Rum 1.213's temperature, as the AAU API numbers it
WIND = 6428


def test_every_api_has_its_server_here() -> None:
    assert SERVERS.keys() - {"shaystack"} == SOURCES.keys()


@pytest.fixture(params=sorted(SERVERS))
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ManualClock, Source]]:
    clock = ManualClock(NOW)
    source = SERVERS[request.param](tmp_path, clock, site_points())
    yield clock, source
    source.stop()


def test_the_points_are_listed_and_a_window_reads_sorted_unique_utc_samples(tmp_path: Path, world) -> None:
    clock, source = world
    rig = Rig(tmp_path, clock, source)
    adapter = rig.service.adapter
    listed = {p.point_id for p in adapter.list_points()}
    assert {p.point_id for p in rig.settings.site.bms.points} <= listed
    start, end = NOW.replace(second=0) - timedelta(hours=2), NOW - timedelta(minutes=30, seconds=30)
    samples = adapter.read_history(source.point_id(ROOM), start, end, "°C")
    assert len(samples) == 90 and samples[0].time == start and samples[-1].time < end
    assert all(s.time.tzinfo is UTC and s.unit == "°C" and s.point == source.point_id(ROOM) for s in samples)
    assert all(b.time - a.time == timedelta(minutes=1) for a, b in pairwise(samples))
    expected = values(sim(ROOM), np.array([int(s.time.timestamp()) for s in samples]))
    assert [s.value for s in samples] == pytest.approx(expected.tolist(), rel=1e-6)   # BACnet's Real is 32 bits
    rig.close()


def sim(number: int) -> SimPoint:
    """The simulated signal of a point of the example site (the same on every server)."""
    return next(SimPoint(n, source, kind) for n, source, kind, _ in site_points() if n == number)


@pytest.mark.parametrize("start", [datetime(2026, 10, 24, 23, 0, tzinfo=UTC),     # before the repeated hour
                                   datetime(2026, 10, 25, 0, 30, tzinfo=UTC),     # in its first pass
                                   datetime(2026, 10, 25, 1, 20, tzinfo=UTC)])    # in its second pass
def test_the_repeated_hour_of_the_end_of_summer_time_reads_as_two_hours(tmp_path: Path, world,
                                                                         start: datetime) -> None:
    clock, source = world
    clock.jump((datetime(2026, 10, 25, 6, tzinfo=UTC) - clock.now()).total_seconds())
    rig = Rig(tmp_path, clock, source)
    samples = rig.service.adapter.read_history(source.point_id(ROOM), start, start + timedelta(hours=2))
    assert len(samples) == 120 and samples[0].time == start
    assert all(b.time - a.time == timedelta(minutes=1) for a, b in pairwise(samples))
    rig.close()


def test_marks_survive_a_restart_and_nothing_is_stored_twice(tmp_path: Path, world) -> None:
    clock, source = world
    rig = Rig(tmp_path, clock, source)
    rig.poll()
    first = rig.times(ROOM)
    assert first.size == 24 * 60  # the first poll looks back a day
    wind_now = values(sim(WIND), np.array([int(NOW.timestamp()) // 60 * 60]))[0]
    assert rig.service.value(source.point_id(WIND)) == pytest.approx(wind_now, rel=1e-6)
    lines = rig.outbox.depth
    rig.poll()                    # the same time again: nothing new
    assert rig.times(ROOM).size == first.size and rig.outbox.depth == lines
    stored = rig.stored()
    rig.close()

    clock.jump(5 * 60)            # a restart five minutes later
    rig = Rig(tmp_path, clock, source)
    assert rig.service.sample(source.point_id(WIND)) is not None   # known before the first poll
    rig.poll()
    times = rig.times(ROOM)
    assert times.size == first.size + 5
    assert np.all(np.diff(times) == 60)                             # no gap, no duplicate
    assert rig.outbox.depth - lines == rig.stored() - stored > 0    # each new sample sent once
    rig.close()


def test_an_outage_is_one_line_and_back_filled_when_it_ends(tmp_path: Path, world,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    clock, source = world
    rig = Rig(tmp_path, clock, source)
    rig.poll()
    count = len(rig.service.poller.points)
    source.take_down({p.point_id for p in rig.service.poller.points})
    with caplog.at_level(logging.INFO):
        for _ in range(6):            # half an hour without an answer
            clock.jump(300)
            rig.poll()
        assert rig.times(ROOM)[-1] == int(NOW.timestamp()) // 60 * 60
        source.take_down(set())
        clock.jump(300)
        rig.poll()
    assert caplog.text.count(f"BMS: all {count} points failed ({count} {source.outage_cause})") == 1
    assert caplog.text.count(f"BMS: all {count} points answer again") == 1
    assert "BMS point" not in caplog.text   # one line for the BMS, not one per point
    assert "recovered" not in caplog.text   # the poller's line says it; the health record does not repeat it
    times = rig.times(ROOM)
    assert np.all(np.diff(times) == 60) and times[-1] == int(clock.now().timestamp()) // 60 * 60
    rig.close()


def test_one_failing_point_is_said_once_and_the_rest_flow(tmp_path: Path, world,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    clock, source = world
    source.take_down({source.point_id(ROOM)})
    rig = Rig(tmp_path, clock, source)
    with caplog.at_level(logging.WARNING):
        rig.poll()
        clock.jump(300)
        rig.poll()
    assert rig.times(ROOM).size == 0 and rig.times(WIND).size > 0
    assert caplog.text.count(f"BMS point {source.point_id(ROOM)}") == 1
    assert rig.service.last_report.failures.keys() == {source.point_id(ROOM)}
    source.take_down(set())
    clock.jump(300)
    rig.poll()
    assert rig.times(ROOM).size > 0 and not rig.service.last_report.failures
    rig.close()


def test_a_point_the_bms_does_not_list_is_skipped_with_one_line(tmp_path: Path, world,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    clock, source = world
    source.stop()
    points = [p for p in site_points() if p[0] != ROOM]
    source = SERVERS[source.server or source.api](tmp_path, clock, points)
    rig = Rig(tmp_path, clock, source)
    with caplog.at_level(logging.WARNING):
        rig.poll()
    assert caplog.text.count("is not in the BMS's point list; skipped") == 1
    assert len(rig.service.poller.points) == len(points) and rig.times(WIND).size > 0
    rig.close()
    source.stop()


def test_a_backfill_reads_every_point_whole(tmp_path: Path, world) -> None:
    clock, source = world
    rig = Rig(tmp_path, clock, source)
    numbers = [n for n, *_ in site_points()]   # in the site file's order, as `configured` is
    points = [ref for n, ref in zip(numbers, rig.service.configured, strict=True) if source.keeps_history(n)][:4]
    start = NOW.replace(second=0) - timedelta(days=2)
    got = {ref.point_id: 0 for ref in points}
    for ref, samples in backfill(rig.service.adapter, points, start, NOW.replace(second=0)):
        got[ref.point_id] += len(samples)
    assert got == {ref.point_id: 2 * 24 * 60 for ref in points}
    rig.close()


def test_the_cli_and_the_doctor_read_every_api(tmp_path: Path, world, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from esus.cli.doctor import check_bms
    from esus.cli.main import main

    clock, source = world
    clock.jump((datetime.now(UTC) - clock.now()).total_seconds())   # `esus bms backfill` reads up to now
    env = {"ESUS_SITE": str(source.site), "ESUS_STATE_DIR": str(tmp_path / "state"), "ESUS_BMS_URL": source.url,
           "ESUS_BMS_USER": "esus", "ESUS_BMS_PASSWORD": "pw"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)   # no .env here
    assert main(["bms", "points"]) == 0
    out = capsys.readouterr().out
    assert f"({source.api}); 28 of 28 configured points found" in out and source.point_id(ROOM) in out
    csv = tmp_path / "backfill.csv"
    assert main(["bms", "backfill", "--days", "0.05", "--out", str(csv)]) == 0
    header, *rows = list(reader(csv.read_text().splitlines()))
    keeping = [n for n, *_ in site_points() if source.keeps_history(n)]   # a present value has no past
    assert header == ["time", "point", "source", "room", "kind", "unit", "value"] and len(rows) >= len(keeping) * 71
    assert {row[1] for row in rows} == {source.point_id(n) for n in keeping}
    check = check_bms(load_settings(env))
    assert check.ok and not check.warning and f"({source.api}): " in check.detail and "28 of the site's" in check.detail
