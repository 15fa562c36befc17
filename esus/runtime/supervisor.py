"""Faults stay in the part where they happen.

Every part of the service (a scheduled job, a background loop, a shade group) reports to one
`Health`: a failure is logged once per change of cause, shown on the status line, by `esus doctor`
and on the BACnet device, and the part is retried while the others go on. `Supervisor` runs the
background loops: a loop that crashes, or returns, is restarted after a backoff on the injected
clock. Only a hung event loop ends the process (systemd's watchdog sees it).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from esus.runtime.clock import Clock

log = logging.getLogger(__name__)

#: A restarted loop that has run this long (clock seconds) without failing counts as recovered.
HEALTHY_AFTER_S = 60.0
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 300.0


def describe(exc: BaseException) -> str:
    """One line for a person: the exception's type and message (a full disk said as such)."""
    if disk_full(exc):
        return "the disk is full: free space where the state directory is (ESUS_STATE_DIR)"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else "no message"
    return f"{type(exc).__name__}: {text}"[:300]


def disk_full(exc: BaseException) -> bool:
    """No space left: a condition of the machine, not a fault of the code, so no traceback helps."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc)


@dataclass
class PartHealth:
    name: str
    error: str | None = None          # None: running as it should
    since: datetime | None = None     # when the current failure began
    failures: int = 0                 # failures since the service started

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, object]:
        return {"error": self.error, "since": self.since.isoformat() if self.since else None,
                "failures": self.failures}


@dataclass
class Health:
    """The health of every part, by name; `listeners` hear every change (BACnet, the doctor's file)."""

    clock: Clock
    parts: dict[str, PartHealth] = field(default_factory=dict)
    listeners: list[Callable[[Health], None]] = field(default_factory=list)

    def failed(self, name: str, exc: BaseException | str, *, what: str = "failed", logged: bool = False) -> None:
        """Record a failure; logged (with its traceback the first time) only when its cause changes,
        and not here when the part has `logged` it itself."""
        error = exc if isinstance(exc, str) else describe(exc)
        part = self.parts.setdefault(name, PartHealth(name))
        part.failures += 1
        if part.error == error:
            return
        first = part.error is None
        if first:
            part.since = self.clock.now()
        part.error = error
        if not logged:
            trace = exc if isinstance(exc, BaseException) and first and not disk_full(exc) else None
            log.error("%s %s (%s); the other parts go on, and it is retried", name, what, error, exc_info=trace)
        self._changed()

    def recovered(self, name: str, *, logged: bool = False) -> None:
        part = self.parts.setdefault(name, PartHealth(name))
        if part.error is None:
            return
        since = part.since
        part.error, part.since = None, None
        if not logged:
            lasted = f" after {(self.clock.now() - since).total_seconds():.0f} s" if since else ""
            log.info("%s recovered%s", name, lasted)
        self._changed()

    def forget(self, name: str) -> None:
        """A part that no longer exists (a group removed from the site file) is no longer failing."""
        if self.parts.pop(name, None) is not None:
            self._changed()

    def failing(self) -> list[PartHealth]:
        return [p for p in self.parts.values() if not p.ok]

    def summary(self) -> str:
        """'' when all is well, else the failing parts with their causes."""
        failing = self.failing()
        if not failing:
            return ""
        return "FAULT " + "; ".join(f"{p.name}: {p.error}" for p in failing)

    def _changed(self) -> None:
        for listener in self.listeners:
            try:
                listener(self)
            except Exception:  # showing a fault must not become another one
                log.exception("showing the service's health failed")


Loop = Callable[[], Awaitable[object]]


class Supervisor:
    """Runs background loops until cancelled, restarting each after a crash with backoff."""

    def __init__(self, health: Health, clock: Clock, *, first_backoff_s: float = FIRST_BACKOFF_S,
                 max_backoff_s: float = MAX_BACKOFF_S, healthy_after_s: float = HEALTHY_AFTER_S) -> None:
        self.health, self.clock = health, clock
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.healthy_after_s = healthy_after_s
        self.restarts: dict[str, int] = {}

    async def keep_running(self, name: str, loop: Loop) -> None:
        backoff = self.first_backoff_s
        while True:
            started = self.clock.monotonic()
            watcher = asyncio.create_task(self._mark_recovered(name), name=f"{name}:health")
            try:
                await loop()
                failure: BaseException | str = "ended on its own"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any crash of a part is that part's fault
                failure = exc
            finally:
                watcher.cancel()
            if self.clock.monotonic() - started >= self.healthy_after_s:
                backoff = self.first_backoff_s   # it ran well for a while: start the backoff afresh
            self.health.failed(name, failure, what="stopped")
            self.restarts[name] = self.restarts.get(name, 0) + 1
            await self.clock.sleep(backoff * random.uniform(0.8, 1.0))
            backoff = min(self.max_backoff_s, backoff * 2)

    async def once(self, name: str, job: Awaitable[object]) -> None:
        """Run one job of a part now (a first poll at start); its failure or success is the part's."""
        try:
            await job
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the part's fault, shown and retried at its next tick
            self.health.failed(name, exc)
        else:
            self.health.recovered(name)

    async def _mark_recovered(self, name: str) -> None:
        await self.clock.sleep(self.healthy_after_s)
        self.health.recovered(name)


#: How long a stop waits for the cancelled loops and jobs to end (they end at once unless one is
#: stuck), before it names the ones still running and goes on with the rest of the stop.
TASKS_END_S = 5.0


async def end_tasks(tasks: Sequence[asyncio.Task[object]], limit_s: float = TASKS_END_S) -> None:
    """Cancel `tasks` and wait for them, at most `limit_s` (wall-clock) seconds. A task still
    running then is logged with where it waits (it, or a task it waits on, did not take the
    cancellation), with every other task, and cancelled once more, with one second to end: a stop
    never waits on it for ever."""
    for task in tasks:
        task.cancel()
    pending: set[asyncio.Task[object]] = set(tasks)
    for attempt, wait_s in ((1, limit_s), (2, 1.0)):
        if not pending:
            break
        done, pending = await asyncio.wait(pending, timeout=wait_s)
        for task in done:
            failure = None if task.cancelled() else task.exception()
            if failure is not None:
                log.error("stopping: %s ended with %s", task.get_name(), describe(failure))
        if pending and attempt == 1:
            for task in pending:
                log.error("stopping: %s still runs %g s after its cancellation, at %s",
                          task.get_name(), limit_s, waits_at(task))
                task.cancel()
            others = asyncio.all_tasks() - pending - {asyncio.current_task()}
            log.error("stopping: the other tasks: %s", "; ".join(
                sorted(f"{t.get_name()} at {waits_at(t)}" for t in others if t is not None)) or "none")
    if pending:
        log.error("stopping without waiting longer for %s", ", ".join(sorted(t.get_name() for t in pending)))


def waits_at(task: asyncio.Task[object]) -> str:
    """Where a task is suspended: its innermost coroutine's function, file and line."""
    stack = task.get_stack()
    if not stack:
        return "an unknown place"
    frame = stack[-1]
    return f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})"
