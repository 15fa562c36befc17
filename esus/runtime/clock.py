"""Clocks: the real one, an accelerated one for the demo and soak tests, and a manual one for tests.

Everything in esus that needs the time takes a clock, so the same code runs at wall-clock speed on
the Pi, N times faster in the demo, and step by step in tests.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

#: Longest single sleep: a wall clock stepped by NTP is noticed within this many (real) seconds.
MAX_SLEEP_CHUNK_S = 30.0


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC datetime."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (simulated seconds for a fast clock)."""

    async def sleep(self, seconds: float) -> None:
        """Sleep for this many seconds of this clock's time."""

    async def sleep_until(self, when: datetime) -> None:
        """Return once now() >= when."""


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, when: datetime) -> None:
        while (remaining := (when - self.now()).total_seconds()) > 0:
            await asyncio.sleep(min(remaining, MAX_SLEEP_CHUNK_S))


class AcceleratedClock:
    """Simulated time running `speed` times faster than real time, from `start` (default: now)."""

    def __init__(self, speed: float, start: datetime | None = None, anchor_unix_s: float | None = None) -> None:
        """`start` is the simulated time when the wall clock read `anchor_unix_s` (default: now), so
        several processes, or one restarted, share one simulated timeline. Anchored clocks read the
        wall clock each time, as every process on the timeline does: had each counted from its own
        start with the monotonic clock, an adjustment of the wall clock between two starts (one
        second of NTP slew is ten simulated minutes at 600x) would put them minutes apart."""
        if not speed > 0:
            raise ValueError("speed must be positive")
        self.speed = float(speed)
        self._start = start or datetime.now(UTC)
        self._anchor = anchor_unix_s
        self._real0 = time.monotonic()
        self._last = float("-inf")

    def monotonic(self) -> float:
        if self._anchor is None:
            return (time.monotonic() - self._real0) * self.speed
        self._last = max(self._last, (time.time() - self._anchor) * self.speed)  # never backwards
        return self._last

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.monotonic())

    def resume_after(self, when: datetime) -> None:
        """Make simulated time continue after `when` (a restarted fast demo must not go back in time).
        An anchored clock is a timeline shared with other processes and is never moved: a process
        started before the anchor would otherwise run minutes ahead of the rest for its whole life."""
        if self._anchor is None and when >= self.now():
            self._start += when - self.now() + timedelta(seconds=1)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    async def sleep_until(self, when: datetime) -> None:
        while (remaining := (when - self.now()).total_seconds()) > 0:
            await asyncio.sleep(min(remaining / self.speed, MAX_SLEEP_CHUNK_S))


class ManualClock:
    """A clock that moves only when a test advances it; sleepers wake in time order."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._now = start.astimezone(UTC)
        self._mono = 0.0
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + timedelta(seconds=max(0.0, seconds)))

    async def sleep_until(self, when: datetime) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._order), future))
        await future

    def _set(self, when: datetime) -> None:
        self._mono += max(0.0, (when - self._now).total_seconds())
        self._now = max(self._now, when)

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper at its own time and letting it run."""
        target = self._now + timedelta(seconds=seconds)
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, future = heapq.heappop(self._sleepers)
            self._set(when)
            if not future.done():
                future.set_result(None)
            await settle()
        self._set(target)
        await settle()

    def jump(self, seconds: float) -> None:
        """Move time forward without waking anyone in between (a stalled process, a suspended VM)."""
        self._set(self._now + timedelta(seconds=seconds))


async def sleep_or_wake(clock: Clock, seconds: float, wake: asyncio.Event) -> None:
    """Sleep `seconds` of the clock's time, or until `wake` is set (then clear it)."""
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    waker = asyncio.ensure_future(wake.wait())
    try:
        await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        waker.cancel()
    wake.clear()


async def settle(rounds: int = 20) -> None:
    """Let ready tasks run (a few event-loop turns)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
