"""The BMS servers on loopback that the adapter tests drive, one per API in
esus.parts.bms_sources.SOURCES, each with a site file whose points are that API's ids for the
example site's points."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bacnet_server.client import BacnetClient
from bms_wrapper.adapters import HttpAdapter
from bms_wrapper.simulator import SimPoint, SimulatedBms
from bms_wrapper.transport import RetryPolicy
from esus.parts.bms import BmsService, series_name
from esus.parts.bms_sources import Context, make_adapter
from esus.runtime.clock import ManualClock
from esus.settings.config import Settings, load_settings
from esus.state.outbox import Outbox
from esus.state.store import HistoryStore
from esus.state.telemetry import Telemetry
from tests.bacnet_controllers import Controller, ControllerPoint
from tests.bacnet_harness import free_udp_port
from tests.haystack_server import HaystackPoint, HaystackServer
from tests.peers.shaystack_server import Shaystack

SITE = Path(__file__).resolve().parent.parent / "site.example.toml"
#: (AAU number, source, kind, room) of a point
Point = tuple[int, str, str, str]


@dataclass
class Source:
    """One API's server on loopback, and how the contract drives it."""

    api: str
    url: str
    site: Path
    point_id: Callable[[int], str]          # the AAU number of a point -> this API's id for it
    take_down: Callable[[set[str]], None]    # these points' reads fail (empty: all answer)
    stop: Callable[[], None]
    outage_cause: str = "HTTP 503"           # what the poller says a taken-down point failed with
    context: Context = Context()             # what the adapter needs beyond settings
    keeps_history: Callable[[int], bool] = lambda number: True   # else one sample per poll
    server: str = ""                         # its key in SERVERS, where that is not the API's name


def aau_source(tmp_path: Path, clock: ManualClock, points: list[Point]) -> Source:
    server = SimulatedBms([SimPoint(n, source, kind) for n, source, kind, _ in points], "esus", "pw",
                          now=clock.now).start()

    def take_down(ids: set[str]) -> None:
        server.faults.down_points = {int(i) for i in ids}
    return Source("aau-v1", server.url, SITE, str, take_down, server.stop)


def haystack_source(tmp_path: Path, clock: ManualClock, points: list[Point]) -> Source:
    def ref(number: int) -> str:
        return f"p:tmv23:r:{number}"
    server = HaystackServer([HaystackPoint(ref(n), source, kind, n, room) for n, source, kind, room in points],
                            "esus", "pw", now=clock.now).start()

    def take_down(ids: set[str]) -> None:
        server.faults.down = set(ids)
    return Source("haystack", server.url, haystack_site(tmp_path), ref, take_down, server.stop)


def haystack_site(tmp_path: Path) -> Path:
    """The example site read from a Haystack server: each point's id is its ref, @p:tmv23:r:<number>."""
    text = SITE.read_text().replace('api = "aau-v1"', 'api = "haystack"')
    text = re.sub(r"^externallogid = (\d+)", r'id = "@p:tmv23:r:\1"', text, flags=re.M)
    text = re.sub(r"^(wind_point|irradiance_point) = (\d+)", r'\1 = "p:tmv23:r:\2"', text, flags=re.M)
    site = tmp_path / "haystack-site.toml"
    site.write_text(text)
    return site


SERVERS = {"aau-v1": aau_source, "haystack": haystack_source}


def site_points() -> list[Point]:
    """The example site's points."""
    settings = load_settings({"ESUS_SITE": str(SITE), "ESUS_STATE_DIR": "/tmp/esus-contract-unused"})
    return [(int(p.point_id), p.source, p.kind, p.room) for p in settings.site.bms.points]


#: Kinds read by present value (a weather station without TrendLogs) wherever their room is.
PRESENT_VALUE_KINDS = {"wind_speed", "irradiance", "outdoor_temperature"}


def bacnet_source(tmp_path: Path, clock: ManualClock, points: list[Point]) -> Source:
    """Two controllers: room 1.213's points on one that keeps a TrendLog of each, every other point on
    one without."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="bacnet-controllers", daemon=True)
    thread.start()

    def on_loop(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(10)

    # TrendLogs of room 1.213's points only: bacpypes3 encodes and decodes about 1,500 log records a
    # second, so a day of every room point would take most of a minute on loopback
    rooms = [p for p in points if p[3] == "1.213" and p[2] not in PRESENT_VALUE_KINDS]
    weather = [p for p in points if p not in rooms]
    controllers = [Controller(1001 + i, free_udp_port(), [ControllerPoint(f"analog-input,{n}", source[:60],
                                                                          SimPoint(n, source, kind))
                                                          for n, source, kind, _ in group],
                              trend_logs=(group is rooms), now=clock.now)
                   for i, group in enumerate((rooms, weather))]
    ids = {n: f"{c.address} analog-input,{n}" for c in controllers for n in (p.sim.externallogid for p in c.points)}
    for n, *_ in site_points():   # a point of the site file that no controller has: asked at the first
        ids.setdefault(n, f"{controllers[0].address} analog-input,{n}")

    async def start() -> BacnetClient:
        for controller in controllers:
            controller.start()
        return BacnetClient.own_device(f"127.0.0.1/8:{free_udp_port()}", 598, "esus-test", timeout_s=2.0)
    client = on_loop(start())
    text = SITE.read_text().replace('api = "aau-v1"', 'api = "bacnet"').replace("timeout_s = 10 ", "timeout_s = 2 ")
    text = re.sub(r"^externallogid = (\d+)", lambda m: f'id = "{ids[int(m[1])]}"', text, flags=re.M)
    text = re.sub(r"^(wind_point|irradiance_point) = (\d+)", lambda m: f'{m[1]} = "{ids[int(m[2])]}"', text,
                  flags=re.M)
    site = tmp_path / "bacnet-site.toml"
    site.write_text(text)

    def take_down(point_ids: set[str]) -> None:
        for controller in controllers:
            controller.refusing = {i.split(" ")[1] for i in point_ids if i.startswith(controller.address + " ")}

    def stop() -> None:
        async def close() -> None:
            client.close()
            for controller in controllers:
                controller.stop()
        if loop.is_running():
            on_loop(close())
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

    return Source("bacnet", "", site, lambda n: ids[n], take_down, stop, outage_cause="refused",
                  context=Context(client, loop, clock.now), keeps_history=lambda n: n in {p[0] for p in rooms})


def shaystack_source(tmp_path: Path, clock: ManualClock, points: list[Point]) -> Source:
    """shaystack, a Haystack server no one here wrote (tests/peers/shaystack_server.py), with the same
    points and site file as the test Haystack server, its histories covering the windows the contract
    reads: the days before the clock's time, the end of summer time, and the hours around now."""
    now = clock.now()
    windows = [(now - timedelta(days=3), now + timedelta(hours=1)),
               (datetime(2026, 10, 24, 21, tzinfo=UTC), datetime(2026, 10, 25, 4, tzinfo=UTC)),
               (datetime.now(UTC) - timedelta(hours=3), datetime.now(UTC) + timedelta(hours=1))]
    server = Shaystack(tmp_path / "shaystack", [HaystackPoint(f"p:tmv23:r:{n}", source, kind, n, room)
                                                for n, source, kind, room in points], windows).start()
    return Source("haystack", server.url, haystack_site(tmp_path), lambda n: f"p:tmv23:r:{n}",
                  lambda ids: server.start(missing=ids), server.stop, outage_cause="HTTP 400",
                  server="shaystack")


#: Each API's servers: ours (with faults), and a peer no one here wrote where one installs.
SERVERS: dict[str, Callable[[Path, ManualClock, list[Point]], Source]] = {
    "aau-v1": aau_source, "haystack": haystack_source, "shaystack": shaystack_source, "bacnet": bacnet_source}


class Rig:
    """The BMS part of the service over a source, its store in tmp_path (a restart is a new Rig)."""

    def __init__(self, tmp_path: Path, clock: ManualClock, source: Source) -> None:
        self.settings: Settings = load_settings({
            "ESUS_SITE": str(source.site), "ESUS_STATE_DIR": str(tmp_path / "state"), "ESUS_BMS_URL": source.url,
            "ESUS_BMS_USER": "esus", "ESUS_BMS_PASSWORD": "pw"})
        self.clock, self.source = clock, source
        self.store = HistoryStore(self.settings.state_dir / "history.db")
        self.outbox = Outbox(self.store)
        adapter = make_adapter(self.settings, context=source.context)
        if isinstance(adapter, HttpAdapter):
            adapter.transport.retry = RetryPolicy(attempts=2, base_s=0.01)   # outages in seconds, not minutes
        self.service = BmsService(self.settings, self.store, Telemetry(self.outbox, "TMV23"), clock, adapter)

    def poll(self) -> None:
        asyncio.run(self.service.poll(self.clock.now()))

    def stored(self) -> int:
        """Samples in the store, all points."""
        return sum(self.store.range(series_name(ref.point_id), 0, 2**40)[0].size for ref in self.service.points)

    def times(self, number: int) -> np.ndarray:
        return self.store.range(series_name(self.source.point_id(number)), 0, 2**40)[0]

    def close(self) -> None:
        self.service.close()
        self.store.close()
