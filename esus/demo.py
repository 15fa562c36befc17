"""The embedded demo: a real building's meter replayed as if the BAS were writing it.

The open-dsm 1-minute eGauge data (July-August 2022) is mapped onto the present by weekday and
local time of day, looping every eight weeks, so a Monday morning in the demo is a real Monday
morning of that building.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from esus.parts.power import POWER_SERIES
from esus.runtime.clock import Clock
from esus.runtime.scheduler import Every
from esus.state.store import HistoryStore

log = logging.getLogger(__name__)

METER_FILE = "egauge_1min_2022-07_08.csv"
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
