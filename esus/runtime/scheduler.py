"""Wall-clock aligned ticks that neither drift nor pile up.

Each tick time is computed from the wall clock (never by adding a period to the last run), so
jobs stay on :00/:05/... forever. A job that overran, or a stalled process, runs once late and
then skips to the next aligned tick, counting what it skipped.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from esus.runtime.clock import Clock
from esus.runtime.supervisor import Health

log = logging.getLogger(__name__)


class Trigger(Protocol):
    def next_after(self, t: datetime) -> datetime:
        """The first tick strictly after t (aware UTC in, aware UTC out)."""


@dataclass(frozen=True)
class Every:
    """Every `period_s` seconds on the UTC epoch grid, plus `offset_s`.

    Periods that divide 15 minutes land on the same local marks in every time zone in use.
    """

    period_s: float
    offset_s: float = 0.0

    def __post_init__(self) -> None:
        if self.period_s <= 0 or not 0 <= self.offset_s < self.period_s:
            raise ValueError("need period_s > 0 and 0 <= offset_s < period_s")

    def next_after(self, t: datetime) -> datetime:
        seconds = t.timestamp() - self.offset_s
        k = math.floor(seconds / self.period_s) + 1
        return datetime.fromtimestamp(k * self.period_s + self.offset_s, UTC)


@dataclass(frozen=True)
class DailyAt:
    """Once a day at a local wall-clock time in `tz`.

    On a DST night a repeated time runs once (its first occurrence); a skipped time runs at the
    moment the same offset from the previous midnight is reached (02:30 becomes 03:30 in spring).
    """

    at: time
    tz: ZoneInfo

    def on(self, day: date) -> datetime:
        return datetime.combine(day, self.at, tzinfo=self.tz).astimezone(UTC)

    def next_after(self, t: datetime) -> datetime:
        today = t.astimezone(self.tz).date()
        for days in range(3):
            candidate = self.on(today + timedelta(days=days))
            if candidate > t:
                return candidate
        raise AssertionError("unreachable: a day always has a next occurrence")


Job = Callable[[datetime], Awaitable[None]]


@dataclass
class JobStats:
    runs: int = 0
    failures: int = 0
    skipped: int = 0
    last_due: datetime | None = None
    last_lag_s: float = 0.0
    max_lag_s: float = 0.0


@dataclass
class ScheduledJob:
    name: str
    trigger: Trigger
    func: Job
    stats: JobStats = field(default_factory=JobStats)


def ticks_between(trigger: Trigger, after: datetime, before: datetime, limit: int = 100_000) -> int:
    """How many ticks lie strictly between two instants."""
    count, t = 0, trigger.next_after(after)
    while t < before and count < limit:
        count, t = count + 1, trigger.next_after(t)
    return count


class Scheduler:
    """Runs each job on its trigger, one run of a job at a time, jobs independent of each other.
    A job that fails is reported to `health` under its name (logged once per change of cause) and
    runs again at its next tick."""

    def __init__(self, clock: Clock, health: Health | None = None) -> None:
        self.clock = clock
        self.health = health if health is not None else Health(clock)
        self.jobs: list[ScheduledJob] = []

    def add(self, name: str, trigger: Trigger, func: Job) -> ScheduledJob:
        job = ScheduledJob(name, trigger, func)
        self.jobs.append(job)
        return job

    async def run(self) -> None:
        """Run until cancelled."""
        async with asyncio.TaskGroup() as group:
            for job in self.jobs:
                group.create_task(self._loop(job), name=f"job:{job.name}")

    async def _loop(self, job: ScheduledJob) -> None:
        due = job.trigger.next_after(self.clock.now())
        while True:
            await self.clock.sleep_until(due)
            lag = (self.clock.now() - due).total_seconds()
            job.stats.last_due, job.stats.last_lag_s = due, lag
            job.stats.max_lag_s = max(job.stats.max_lag_s, lag)
            try:
                await job.func(due)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a job's failure is its own; the others go on
                job.stats.failures += 1
                self.health.failed(job.name, exc, what=f"failed for the tick at {due.isoformat()}")
            else:
                job.stats.runs += 1
                self.health.recovered(job.name)
            now = self.clock.now()
            following = job.trigger.next_after(max(now, due))
            skipped = ticks_between(job.trigger, due, following)
            if skipped:
                job.stats.skipped += skipped
                log.warning("%s ran late (%.0f s behind): skipped %d tick(s), next at %s",
                            job.name, (now - due).total_seconds(), skipped, following.isoformat())
            due = following
