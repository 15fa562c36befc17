"""The embedded demo: the service with simulated parts, built here and handed to it (the service
itself has no demo branch): a simulated BMS, gpiozero's mock pins, and a real building's meter
seeded into the history and written over BACnet by a simulated BAS, as a BAS would.

The open-dsm 1-minute eGauge data (July-August 2022) is mapped onto the present by weekday and
local time of day, looping every eight weeks, so a Monday morning in the demo is a real Monday
morning of that building.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from gpiozero.pins.mock import MockFactory

from bacnet_server.client import BacnetClient
from bms_wrapper.adapters import AauBmsV1
from bms_wrapper.simulator import SimPoint, SimulatedBms
from bms_wrapper.transport import BasicAuth
from esus.parts.bacnet import POWER_POINT
from esus.parts.bms_sources import transport_for
from esus.parts.power import POWER_SERIES
from esus.runtime.clock import Clock
from esus.runtime.scheduler import Every
from esus.service import Service
from esus.settings.config import Settings
from esus.state.files import StateFiles
from esus.state.store import HistoryStore

log = logging.getLogger(__name__)

METER_FILE = "egauge_1min_2022-07_08.csv"
#: History seeded at start, so that thresholds and forecasts have data from the first minute.
SEED_DAYS = 35
#: The simulated BAS writes input-power-meter at this priority, from the next UDP port.
BAS_PRIORITY = 10
BAS_INSTANCE = 4194000
BMS_USER, BMS_PASSWORD = "esus", "esus-demo"
LOOP_MINUTES = 8 * 7 * 24 * 60  # whole weeks, so weekdays line up


def meter_file() -> Path:
    return Path(str(resources.files("esus") / "data" / "open-dsm" / METER_FILE))


class MeterReplay:
    """Power (kW) of the open-dsm building for any instant, by local weekday and time of day."""

    def __init__(self, tz: ZoneInfo, path: Path | None = None) -> None:
        self.tz = tz
        with open(path or meter_file(), newline="") as handle:
            rows = list(csv.DictReader(handle))
        self.start = datetime.strptime(rows[0]["Date"], "%m/%d/%Y %H:%M")  # local wall-clock time
        self.kw = np.array([float(r["Usage_kW"]) for r in rows], dtype=np.float64)
        if self.kw.size < LOOP_MINUTES:
            raise ValueError(f"{path}: need at least {LOOP_MINUTES} one-minute rows, got {self.kw.size}")

    def index(self, t: datetime) -> int:
        local = t.astimezone(self.tz).replace(tzinfo=None)
        minutes = int((local - self.start).total_seconds() // 60)
        return minutes % LOOP_MINUTES

    def kw_at(self, t: datetime) -> float:
        return float(self.kw[self.index(t)])


def seed_history(store: HistoryStore, replay: MeterReplay, now: datetime, days: int) -> int:
    """Fill the minutes of the last `days` that the store lacks, so the demo starts with history."""
    start = (now - timedelta(days=days)).replace(second=0, microsecond=0)
    have, _ = store.range(POWER_SERIES, start, now)
    have_set = set(have.tolist())
    rows, t = [], start
    while t < now - timedelta(minutes=1):
        if int(t.timestamp()) not in have_set:
            rows.append((t, replay.kw_at(t)))
        t += timedelta(minutes=1)
    return store.append_many({POWER_SERIES: rows}) if rows else 0


PowerWriter = Callable[[float], Awaitable[None]]


def resume_time(settings: Settings, now: datetime | None = None) -> datetime | None:
    """Where a demo that ran on a fast clock got to (its newest power sample), when that is ahead of
    the real time: a restart goes on from there instead of going back in time and writing samples
    older than those it kept. None when there is nothing to resume."""
    path = StateFiles(settings.state_dir).history
    if not path.exists():
        return None
    with HistoryStore(path, readonly=True) as store:
        newest = store.latest(POWER_SERIES)
    now = now or datetime.now(UTC)
    if newest is None or newest[0] <= now:
        return None
    return newest[0] + timedelta(minutes=1)


class DemoBas:
    """Writes the replayed meter once a minute, like a BAS would (over BACnet in the service)."""

    def __init__(self, replay: MeterReplay, write: PowerWriter, clock: Clock, offset_s: float = 2.0) -> None:
        self.replay, self.write, self.clock = replay, write, clock
        self.trigger = Every(60, offset_s)

    async def run(self) -> None:
        while True:
            due = self.trigger.next_after(self.clock.now())
            await self.clock.sleep_until(due)
            try:
                await self.write(self.replay.kw_at(due))
            except Exception as exc:  # noqa: BLE001 - a failed write is what a BAS would log, and go on
                log.warning("demo BAS: writing power failed: %s", exc)


def start_simulated_bms(settings: Settings, clock: Clock | None = None) -> SimulatedBms:
    """The site file's BMS points, served by the simulator on loopback."""
    points = [SimPoint(int(p.point_id), p.source, p.kind) for p in settings.site.bms.points]
    simulator = SimulatedBms(points, BMS_USER, BMS_PASSWORD, now=clock.now if clock else lambda: datetime.now(UTC))
    return simulator.start()


def simulated_bms_adapter(settings: Settings, simulator: SimulatedBms, max_in_flight: int | None = None) -> AauBmsV1:
    return AauBmsV1(transport_for(settings, simulator.url, BasicAuth(BMS_USER, BMS_PASSWORD), max_in_flight))


def demo_service(settings: Settings, clock: Clock) -> Service:
    """The service with the demo's parts: the simulated BMS (unless .env names a real one), mock
    pins, the meter history seeded and a simulated BAS writing it each minute."""
    simulator = start_simulated_bms(settings, clock) if settings.bms is None else None
    try:
        service = Service(settings, clock, pin_factory=MockFactory(),
                          bms_adapter=simulated_bms_adapter(settings, simulator) if simulator else None)
    except BaseException:
        if simulator is not None:
            simulator.stop()
        raise
    if simulator is not None:
        service.closers.append(simulator.stop)
    replay = MeterReplay(settings.site.site.tz)
    seeded = seed_history(service.store, replay, clock.now(), SEED_DAYS)
    if seeded:
        log.info("demo: seeded %d minutes of replayed meter history", seeded)
    bas = SimulatedBas(settings)
    service.closers.append(bas.close)
    log.info("demo: a simulated BAS on UDP port %d writes %s once a minute", settings.bacnet.port + 1, POWER_POINT)
    service.background["demo-bas"] = DemoBas(replay, bas.write_power, clock).run
    return service


class SimulatedBas:
    """The BAS side of the demo: a BACnet device on the next port that writes the power point."""

    def __init__(self, settings: Settings) -> None:
        address = settings.bacnet
        self.client = BacnetClient.own_device(
            f"{address.ip}/{address.interface.network.prefixlen}:{address.port + 1}", BAS_INSTANCE, "esus-demo-bas")
        self.target = f"{address.ip}:{address.port}"

    async def write_power(self, kw: float) -> None:
        await self.client.write(self.target, "analog-value,1", kw, priority=BAS_PRIORITY)

    def close(self) -> None:
        self.client.close()
