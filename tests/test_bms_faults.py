"""A BMS that misbehaves as a broken or hostile server does: every request ends at its deadline and
within its size limit, each change of cause is said once, nonsense values are dropped, a full disk
is one line. The server is the simulated BMS on 127.0.0.1 with its faults switched on."""

from __future__ import annotations

import logging
import sqlite3
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bms_wrapper.adapters import AauBmsV1
from bms_wrapper.simulator import SimPoint, SimulatedBms
from bms_wrapper.transport import BasicAuth, BmsBadResponse, BmsUnavailable, RetryPolicy, Transport
from esus.parts.bms import API_PART, STORAGE_PART
from tests.test_bms_poller import Rig, world  # noqa: F401 - `world` is a fixture, used by its name

POINT = SimPoint(6397, "Rum 1.213/TRU01_Rum Temp", "temperature")
WINDOW = (datetime(2026, 6, 10, 10, tzinfo=UTC), datetime(2026, 6, 10, 12, tzinfo=UTC))


@pytest.fixture
def bms():
    server = SimulatedBms([POINT], "esus", "pw").start()
    yield server
    server.stop()


def transport(server: SimulatedBms, **kw: object) -> Transport:
    return Transport(server.url, BasicAuth("esus", "pw"), retry=RetryPolicy(attempts=3, base_s=0.01), **kw)


@pytest.mark.parametrize(("fault", "said"), [("trickle", r"the BMS sent \d+ bytes of its answer to "
                                                        r"/api/v1/trenddata in 1.5 s: too slow"),
                                             ("silent", "the BMS did not answer to /api/v1/trenddata in 1.5 s: "
                                                        "too slow")])
def test_a_bms_that_drips_or_says_nothing_is_cut_off_at_the_deadline(bms: SimulatedBms, fault: str,
                                                                      said: str) -> None:
    bms.faults.next_requests.extend([fault] * 5)
    bms.faults.trickle_s = 0.2            # each read returns long before the 30-s read timeout
    adapter = AauBmsV1(transport(bms, deadline_s=1.5, read_timeout_s=30.0))
    started = time.monotonic()
    with pytest.raises(BmsUnavailable, match=said) as caught:
        adapter.read_history(str(POINT.externallogid), *WINDOW)
    took = time.monotonic() - started
    assert caught.value.cause == "too slow"
    assert took < 1.5 + 5.0, f"a 1.5-s deadline held the request {took:.1f} s"   # not minutes (or for ever)
    adapter.transport.close()


def test_a_deadline_that_passes_while_connecting_still_cuts_the_drip(bms: SimulatedBms, monkeypatch) -> None:
    """The timer can fire after the request has taken its connection and before the socket exists (a busy
    machine makes that window wide): the drip must still end at the deadline, not after 100,000 drops."""
    import urllib3.util.connection as connection

    connect = connection.create_connection

    def slow_connect(*args, **kwargs):
        time.sleep(0.8)              # the 0.5-s deadline passes here, with no socket yet to cut
        return connect(*args, **kwargs)

    monkeypatch.setattr(connection, "create_connection", slow_connect)
    bms.faults.next_requests.append("trickle")
    bms.faults.trickle_s = 0.2
    adapter = AauBmsV1(Transport(bms.url, BasicAuth("esus", "pw"), deadline_s=0.5, retry=RetryPolicy(attempts=1)))
    started = time.monotonic()
    with pytest.raises(BmsUnavailable, match="too slow"):
        adapter.read_history(str(POINT.externallogid), *WINDOW)
    assert time.monotonic() - started < 0.8 + 5.0
    adapter.transport.close()


def test_the_next_request_after_a_cut_off_one_is_answered(bms: SimulatedBms) -> None:
    bms.faults.next_requests.append("silent")
    adapter = AauBmsV1(transport(bms, deadline_s=1.0, max_in_flight=1))
    with pytest.raises(BmsUnavailable, match="too slow"):
        adapter.read_history(str(POINT.externallogid), *WINDOW)
    assert len(adapter.read_history(str(POINT.externallogid), *WINDOW)) == 120   # the pool's one slot came back
    adapter.transport.close()


@pytest.mark.parametrize("fault", ["flood", "huge"])
def test_a_flood_is_refused_while_it_arrives_and_never_held_whole(bms: SimulatedBms, fault: str) -> None:
    bms.faults.next_requests.append(fault)
    adapter = AauBmsV1(transport(bms, max_reply_bytes=4 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(BmsBadResponse, match=r"answer to /api/v1/trenddata is larger than 4 MB: refused") as caught:
            adapter.read_history(str(POINT.externallogid), *WINDOW)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.cause == "too large"
    assert peak < 20 << 20, f"{peak / 2**20:.0f} MB held for a refused 50 MB answer"
    assert len(adapter.read_history(str(POINT.externallogid), *WINDOW)) == 120
    adapter.transport.close()


def test_an_empty_answer_says_empty_not_malformed(bms: SimulatedBms) -> None:
    bms.faults.next_requests.append("empty")
    adapter = AauBmsV1(transport(bms))
    with pytest.raises(BmsBadResponse, match="with an empty body"):
        adapter.read_history(str(POINT.externallogid), *WINDOW)
    adapter.transport.close()


def test_each_change_of_cause_is_said_once(tmp_path: Path, world, caplog: pytest.LogCaptureFixture) -> None:
    clock, simulator = world
    rig = Rig(tmp_path, clock, simulator)
    rig.service.adapter.transport.retry = RetryPolicy(attempts=1)
    rig.poll(clock)
    count = len(rig.service.poller.points)
    with caplog.at_level(logging.INFO):
        simulator.faults.down_points = {6397}          # one point answers 503
        for _ in range(2):
            clock.jump(300)
            rig.poll(clock)
        good = simulator.credentials
        simulator.credentials = "someone-else"          # then the BMS refuses the password: every point 401
        for _ in range(2):
            clock.jump(300)
            rig.poll(clock)
        assert rig.service.health.parts[API_PART].error == f"{count} of {count} points failing ({count} HTTP 401)"
        assert rig.service.status(clock.now()) == f"BMS 0/{count} points, {count} failing (HTTP 401)"
        simulator.credentials, simulator.faults.down_points = good, set()
        clock.jump(300)
        rig.poll(clock)
    text = caplog.text
    assert text.count("BMS point 6397 'Rum 1.213/TRU01_Rum Temp': the BMS answered HTTP 503") == 1
    assert text.count(f"BMS: all {count} points failed ({count} HTTP 401): the BMS refused the login") == 1
    assert text.count(f"BMS: all {count} points answer again") == 1
    assert rig.service.health.parts[API_PART].ok
    rig.close()


def test_values_no_sensor_can_read_are_dropped_counted_and_said_once(tmp_path: Path, world,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    clock, simulator = world
    simulator.faults.forced = {6397: 1e308}             # a room temperature of 1e308
    rig = Rig(tmp_path, clock, simulator)
    with caplog.at_level(logging.WARNING):
        rig.poll(clock)
        clock.jump(300)
        rig.poll(clock)
    assert rig.times(6397).size == 0                    # nothing stored, nothing sent to InfluxDB
    batch = rig.outbox.oldest(100_000)
    assert batch is not None and not any("point=6397" in line for line in batch.lines)
    assert rig.service.poller.dropped["6397"] == 24 * 60 + 5
    assert caplog.text.count("BMS point 6397") == 1 and "a temperature cannot read (outside -40 to 160)" in caplog.text
    assert f"{24 * 60 + 5} implausible values dropped" in rig.service.status(clock.now())
    assert rig.times(6428).size == 24 * 60 + 5           # the other points go on
    clock.jump(300)
    rig.poll(clock)                                     # the mark moved past them: not fetched again
    assert rig.service.poller.dropped["6397"] == 24 * 60 + 10
    rig.close()
    from esus.cli.doctor import check_bms

    check = check_bms(rig.settings)   # the counts outlive the process: the doctor reads them from the store
    assert check.ok and check.warning and f"point 6397 {24 * 60 + 10} (check those sensors" in check.detail
    rig = Rig(tmp_path, clock, simulator)
    assert rig.service.poller.dropped["6397"] == 24 * 60 + 10
    rig.close()


def test_a_full_disk_is_one_line_and_its_end_is_said(tmp_path: Path, world, caplog: pytest.LogCaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    clock, simulator = world
    rig = Rig(tmp_path, clock, simulator)
    rig.poll(clock)
    before = rig.times(6397).size
    keep = rig.service.telemetry.keep

    def full(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(rig.service.telemetry, "keep", full)
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            clock.jump(300)
            rig.poll(clock)
        assert "database or disk is full" in (rig.service.health.parts[STORAGE_PART].error or "")
        monkeypatch.setattr(rig.service.telemetry, "keep", keep)
        clock.jump(300)
        rig.poll(clock)
    assert caplog.text.count("database or disk is full") == 1 and "Traceback" not in caplog.text
    assert f"{STORAGE_PART} recovered" in caplog.text
    assert rig.times(6397).size == before + 20          # the 15 minutes the full disk refused came after all
    rig.close()


def test_a_bms_that_drips_shows_as_failing_and_the_poll_ends_in_time(tmp_path: Path, world) -> None:
    clock, simulator = world
    rig = Rig(tmp_path, clock, simulator)
    rig.poll(clock)
    transport = rig.service.adapter.transport
    transport.deadline_s, transport.retry = 1.0, RetryPolicy(attempts=1)
    count = len(rig.service.poller.points)
    simulator.faults.next_requests.extend(["trickle"] * count)
    simulator.faults.trickle_s = 0.2
    clock.jump(300)
    started = time.monotonic()
    rig.poll(clock)
    took = time.monotonic() - started
    per_slot = -(-count // rig.settings.site.bms.max_in_flight)   # rounds of requests the pool allows
    assert took < per_slot * 1.0 + 10, f"the poll took {took:.1f} s"
    assert rig.service.health.parts[API_PART].error == f"{count} of {count} points failing ({count} too slow)"
    assert rig.service.status(clock.now()).startswith(f"BMS 0/{count} points, {count} failing (too slow)")
    rig.close()


def test_the_deadline_must_be_shorter_than_the_poll(tmp_path: Path) -> None:
    from esus.settings.errors import SettingsError
    from esus.settings.site import load_site

    site = tmp_path / "site.toml"
    text = (Path(__file__).resolve().parent.parent / "site.example.toml").read_text()
    site.write_text(text.replace("deadline_s = 30", "deadline_s = 400"))
    with pytest.raises(SettingsError, match="deadline_s 400 must be shorter than the poll period"):
        load_site(site)
