"""The five-minute poller in the service over the AAU API's own faults (API lag, a clock ahead, a
login page); what every adapter must do is tests/test_bms_contract.py."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from bms_wrapper.adapters import AauBmsV1
from bms_wrapper.poller import PointRef, backfill
from bms_wrapper.simulator import Faults, SimPoint, SimulatedBms
from bms_wrapper.transport import BasicAuth, RetryPolicy, Transport
from esus.parts.bms import BmsService, series_name
from esus.parts.bms_sources import make_adapter
from esus.runtime.clock import ManualClock
from esus.settings.config import load_settings
from esus.state.outbox import Outbox
from esus.state.store import HistoryStore
from esus.state.telemetry import Telemetry

NOW = datetime(2026, 6, 10, 12, 0, 30, tzinfo=UTC)


class Rig:
    def __init__(self, tmp_path: Path, clock: ManualClock, simulator: SimulatedBms) -> None:
        env = {"ESUS_SITE": str(Path(__file__).resolve().parent.parent / "site.example.toml"),
               "ESUS_STATE_DIR": str(tmp_path / "state"), "ESUS_BMS_URL": simulator.url,
               "ESUS_BMS_USER": "esus", "ESUS_BMS_PASSWORD": "pw"}
        self.settings = load_settings(env)
        self.store = HistoryStore(self.settings.state_dir / "history.db")
        self.outbox = Outbox(self.store)
        self.service = BmsService(self.settings, self.store, Telemetry(self.outbox, "TMV23"), clock,
                                  make_adapter(self.settings))

    def poll(self, clock: ManualClock) -> None:
        asyncio.run(self.service.poll(clock.now()))

    def times(self, point: str | int) -> np.ndarray:
        return self.store.range(series_name(point), 0, 2**40)[0]

    def close(self) -> None:
        self.service.close()
        self.store.close()


@pytest.fixture
def world(tmp_path: Path):
    clock = ManualClock(NOW)
    settings = load_settings({"ESUS_SITE": str(Path(__file__).resolve().parent.parent / "site.example.toml"),
                              "ESUS_STATE_DIR": str(tmp_path / "s0")})
    points = [SimPoint(int(p.point_id), p.source, p.kind) for p in settings.site.bms.points]
    simulator = SimulatedBms(points, "esus", "pw", now=clock.now).start()
    yield clock, simulator
    simulator.stop()




def test_a_restart_knows_the_newest_readings_before_its_first_poll(tmp_path: Path, world) -> None:
    """Else the wind is unknown until the first poll answers, and unknown wind retracts the shades."""
    clock, simulator = world
    rig = Rig(tmp_path, clock, simulator)
    rig.poll(clock)
    wind = rig.service.sample("6428")
    rig.close()

    clock.jump(5 * 60)
    rig = Rig(tmp_path, clock, simulator)                     # restarted; no poll yet
    assert rig.service.sample("6428") == wind and wind is not None and wind.unit == "m/s"
    clock.jump(30 * 60)                                       # down too long: the stored reading is too old
    assert rig.service.sample("6428", timedelta(minutes=15)) is None
    rig.close()


def test_late_samples_arrive_once_within_the_overlap(tmp_path: Path, world) -> None:
    clock, simulator = world
    simulator.faults.lag = timedelta(hours=3)   # the API is three hours behind
    rig = Rig(tmp_path, clock, simulator)
    rig.poll(clock)
    behind = rig.times(6397)
    assert behind[-1] <= (NOW - timedelta(hours=3)).timestamp()
    simulator.faults.lag = timedelta(0)         # it catches up
    clock.jump(300)
    rig.poll(clock)
    times = rig.times(6397)
    assert np.all(np.diff(times) == 60) and times[-1] == int((clock.now()).timestamp()) // 60 * 60
    rig.close()






def test_a_down_api_never_stops_the_service(tmp_path: Path, world, caplog: pytest.LogCaptureFixture) -> None:
    clock, simulator = world
    rig = Rig(tmp_path, clock, simulator)
    simulator.faults.next_requests.extend(["html"] * RetryPolicy().attempts)   # each attempt (an odd one is asked again)
    rig.poll(clock)  # the metadata request meets a login page: logged, no exception
    assert "HTML page" in caplog.text
    simulator.faults.next_requests.clear()
    rig.poll(clock)
    assert rig.times(6397).size > 0
    rig.close()


def test_a_bms_clock_far_ahead_is_flagged_and_its_future_ignored(tmp_path: Path, world,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    clock, simulator = world
    simulator.faults.skew = timedelta(hours=2)
    rig = Rig(tmp_path, clock, simulator)
    rig.poll(clock)
    assert "more than an hour ahead" in caplog.text and caplog.text.count("BMS point 6397 returned") == 1
    assert rig.times(6397)[-1] <= (NOW + timedelta(hours=1)).timestamp()
    rig.close()


def test_backfill_keeps_requests_in_flight_within_the_transport_bound():
    points = [SimPoint(500 + i, f"/b/p{i}", "temperature") for i in range(12)]
    server = SimulatedBms(points, "esus", "pw", faults=Faults(latency_s=0.05)).start()
    try:
        adapter = AauBmsV1(Transport(server.url, BasicAuth("esus", "pw"), max_in_flight=3))
        end = datetime(2026, 3, 2, tzinfo=UTC)
        refs = [PointRef(str(p.externallogid), p.source, "r", p.kind) for p in points]
        replies = backfill(adapter, refs, end - timedelta(days=2), end, threads=8)
        got = {ref.point_id: len(samples) for ref, samples in replies}
        assert got == {str(p.externallogid): 2 * 1440 for p in points}
        assert server.max_concurrent == 3
        adapter.transport.close()
    finally:
        server.stop()


def test_a_state_dir_of_the_integer_id_versions_is_read_as_it_is(tmp_path: Path, world) -> None:
    """Before ids were text, the store's names were made from the AAU integers: the same text, so a
    state dir carries over with nothing lost and nothing downloaded again."""
    clock, simulator = world
    rig = Rig(tmp_path, clock, simulator)
    mark = (NOW - timedelta(minutes=10)).replace(second=0)
    rig.store.append_many({"bms.6397": [(mark - timedelta(minutes=m), 21.0) for m in range(3)]})
    rig.store.set_state("bms.mark.6397", mark.isoformat())
    rig.store.set_state("bms.dropped.6397", "7")
    rig.close()
    rig = Rig(tmp_path, clock, simulator)
    assert rig.service.poller.dropped["6397"] == 7
    rig.poll(clock)
    times = rig.times("6397")
    overlap = rig.settings.site.bms.overlap
    assert times[0] >= (mark - overlap).timestamp()     # from the old mark (less the overlap), not a day back
    assert np.all(np.diff(times) == 60)                   # no gap, no duplicate
    rig.close()


def test_a_bms_away_is_said_once_and_the_status_line_agrees_with_it(tmp_path: Path, world,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The poll at start and the first aligned one both fail: one warning, not one per poll; the
    status line says no poll has answered, not that none was made, beside the part's FAULT."""
    clock, simulator = world
    rig = Rig(tmp_path, clock, simulator)
    assert rig.service.status(clock.now()) == "BMS: not polled yet"
    transport = rig.service.adapter.transport
    transport.retry, served = RetryPolicy(attempts=1), transport.base_url
    transport.base_url = "http://127.0.0.1:9"                 # the BMS goes away
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            rig.poll(clock)
            clock.jump(17)
    assert caplog.text.count("BMS poll failed") == 1, caplog.text
    assert rig.service.status(clock.now()) == "BMS: no poll has answered yet"
    assert "refused the connection" in rig.service.health.parts["bms api"].error
    transport.base_url = served                               # and is back
    with caplog.at_level(logging.INFO):
        rig.poll(clock)
    assert "BMS poll answered again" in caplog.text and rig.service.health.parts["bms api"].error is None
    rig.close()
