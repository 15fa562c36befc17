"""The BMS servers on loopback that the adapter tests drive, one per API in
esus.parts.bms_sources.SOURCES, each with a site file whose points are that API's ids for the
example site's points."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bms_wrapper.simulator import SimPoint, SimulatedBms
from bms_wrapper.transport import RetryPolicy
from esus.parts.bms import BmsService, series_name
from esus.parts.bms_sources import make_adapter
from esus.runtime.clock import ManualClock
from esus.settings.config import Settings, load_settings
from esus.state.outbox import Outbox
from esus.state.store import HistoryStore
from esus.state.telemetry import Telemetry
from tests.haystack_server import HaystackPoint, HaystackServer

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
    take_down: Callable[[set[str]], None]    # these points' histories answer 503 (empty: all answer)
    stop: Callable[[], None]


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
    text = SITE.read_text().replace('api = "aau-v1"', 'api = "haystack"')
    text = re.sub(r"^externallogid = (\d+)", r'id = "@p:tmv23:r:\1"', text, flags=re.M)
    text = re.sub(r"^(wind_point|irradiance_point) = (\d+)", r'\1 = "p:tmv23:r:\2"', text, flags=re.M)
    site = tmp_path / "haystack-site.toml"
    site.write_text(text)

    def take_down(ids: set[str]) -> None:
        server.faults.down = set(ids)
    return Source("haystack", server.url, site, ref, take_down, server.stop)


SERVERS = {"aau-v1": aau_source, "haystack": haystack_source}


def site_points() -> list[Point]:
    """The example site's points."""
    settings = load_settings({"ESUS_SITE": str(SITE), "ESUS_STATE_DIR": "/tmp/esus-contract-unused"})
    return [(int(p.point_id), p.source, p.kind, p.room) for p in settings.site.bms.points]


SERVERS: dict[str, Callable[[Path, ManualClock, list[Point]], Source]] = {
    "aau-v1": aau_source, "haystack": haystack_source}


class Rig:
    """The BMS part of the service over a source, its store in tmp_path (a restart is a new Rig)."""

    def __init__(self, tmp_path: Path, clock: ManualClock, source: Source) -> None:
        self.settings: Settings = load_settings({
            "ESUS_SITE": str(source.site), "ESUS_STATE_DIR": str(tmp_path / "state"), "ESUS_BMS_URL": source.url,
            "ESUS_BMS_USER": "esus", "ESUS_BMS_PASSWORD": "pw"})
        self.clock, self.source = clock, source
        self.store = HistoryStore(self.settings.state_dir / "history.db")
        self.outbox = Outbox(self.store)
        self.service = BmsService(self.settings, self.store, Telemetry(self.outbox, "TMV23"), clock,
                                  make_adapter(self.settings))
        self.service.adapter.transport.retry = RetryPolicy(attempts=2, base_s=0.01)   # outages in seconds, not minutes

    def poll(self) -> None:
        asyncio.run(self.service.poll(self.clock.now()))

    def times(self, number: int) -> np.ndarray:
        return self.store.range(series_name(self.source.point_id(number)), 0, 2**40)[0]

    def close(self) -> None:
        self.service.close()
        self.store.close()
