"""The BMS in the service: the five-minute poller, samples into the history store and InfluxDB,
high-water marks in the store's state. The adapter it polls is built outside (the site's from
settings, the demo's simulated one) and handed in."""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bms_wrapper.adapters import BmsAdapter
from bms_wrapper.poller import PointRef, Poller, PollReport, resolve_points
from bms_wrapper.samples import Sample
from bms_wrapper.transport import BmsError
from esus.runtime.clock import Clock
from esus.runtime.supervisor import Health
from esus.settings.config import Settings
from esus.state.store import HistoryStore
from esus.state.telemetry import Telemetry, line

log = logging.getLogger(__name__)

API_PART = "bms api"          # the BMS's answers (the poll job itself is the scheduler's "bms")
STORAGE_PART = "bms storage"  # keeping what it answered

def series_name(point: str) -> str:
    return f"bms.{point}"


def dropped_key(point: str) -> str:
    """The store's count of a point's values dropped as implausible, for `esus doctor`."""
    return f"bms.dropped.{point}"


def configured_points(settings: Settings) -> list[PointRef]:
    return [PointRef(p.point_id, p.source, p.room, p.kind, p.unit) for p in settings.site.bms.points]


class BmsService:
    def __init__(self, settings: Settings, store: HistoryStore, telemetry: Telemetry, clock: Clock,
                 adapter: BmsAdapter, health: Health | None = None) -> None:
        """Takes over `adapter` (closed with this service)."""
        self.settings, self.store, self.telemetry, self.clock = settings, store, telemetry, clock
        self.health = health if health is not None else Health(clock)
        self.adapter = adapter
        self.configured = configured_points(settings)
        bms = settings.site.bms
        self.poller = Poller(self.adapter, self.configured, known=self._known, get_mark=self._get_mark,
                             set_mark=self._set_mark, sink=self._sink, overlap=bms.overlap,
                             threads=2 * bms.max_in_flight)
        self.resolved = False
        self.last_report: PollReport | None = None
        self._poll_error: str | None = None              # the last failed poll's message, said once
        self.latest: dict[str, Sample] = {}
        self._restore(self.configured)
        self.listeners: list[Callable[[], None]] = []   # called after each poll (the shades react to wind)
        self.polls_done = 0                              # answered or failed, since start
        self._one_poll_at_a_time = asyncio.Lock()

    def close(self) -> None:
        self.adapter.close()

    @property
    def errors(self) -> int:
        return self.adapter.failures

    @property
    def points(self) -> list[PointRef]:
        """The points polled: the site file's, and those the adapter chose (once the BMS has listed them)."""
        return self.poller.points if self.resolved else self.configured

    def _restore(self, refs: list[PointRef]) -> None:
        """What earlier runs knew of these points: the newest stored sample (after a restart the wind
        and the rooms are known at once, not only after the first poll, so shades are not retracted
        for want of a reading; too old a sample still counts as unknown, see `sample`), and the count
        of values dropped as implausible (a broken sensor stays visible)."""
        for ref in refs:
            self.poller.dropped[ref.point_id] = int(self.store.get_state(dropped_key(ref.point_id)) or 0)
            newest = self.store.latest(series_name(ref.point_id))
            if newest is not None:
                self.latest[ref.point_id] = Sample(newest[0], ref.point_id, newest[1], ref.unit)

    def _known(self, ref: PointRef, start: datetime, end: datetime) -> set[datetime]:
        times, _ = self.store.range(series_name(ref.point_id), start, end)
        return {datetime.fromtimestamp(t, UTC) for t in times.tolist()}

    def _get_mark(self, ref: PointRef) -> datetime | None:
        text = self.store.get_state(f"bms.mark.{ref.point_id}")
        return datetime.fromisoformat(text) if text else None

    def _set_mark(self, ref: PointRef, when: datetime) -> None:
        self.store.set_state(f"bms.mark.{ref.point_id}", when.isoformat())

    def _sink(self, ref: PointRef, samples: list[Sample]) -> None:
        tags = {"point": str(ref.point_id), "room": ref.room, "kind": ref.kind, "unit": ref.unit}
        self.telemetry.keep({series_name(ref.point_id): [(s.time, s.value) for s in samples]},
                            [line("bms", {"value": s.value}, s.time, tags, self.telemetry.site) for s in samples])
        self.latest[ref.point_id] = samples[-1]

    def _resolve(self) -> None:
        points, messages = resolve_points(self.configured, self.adapter.list_points())
        for message in messages:
            log.warning("%s", message)
        known = {ref.point_id for ref in self.configured}
        chosen = [ref for ref in points if ref.point_id not in known]
        if chosen:
            log.info("BMS: %d points chosen by the site file's filters besides its %d listed ones", len(chosen),
                     len(self.configured))
        self._restore(chosen)
        self.poller.points = points
        self.resolved = True

    async def poll(self, due: datetime) -> None:
        """One poll of every point (runs in worker threads; never stops the service). One at a
        time: the poll at start and the first aligned one must not store the same samples twice."""
        loop = asyncio.get_running_loop()
        self.poller.on_change = functools.partial(loop.call_soon_threadsafe, self._show_failing)
        async with self._one_poll_at_a_time:
            try:
                if not self.resolved:
                    await asyncio.to_thread(self._resolve)
                report = await asyncio.to_thread(self.poller.poll, self.clock.now())
            except BmsError as exc:
                if str(exc) != self._poll_error:   # once per change of cause, not at every poll
                    log.warning("BMS poll failed: %s; retrying at each poll", exc)
                self._poll_error = str(exc)
                self.health.failed(API_PART, exc.cause, logged=True)
            except (sqlite3.Error, OSError) as exc:   # the disk is full, the store is read-only: nothing is lost,
                # the marks did not move, so the next poll that can store fetches the same samples again
                self.health.failed(STORAGE_PART, f"cannot store the samples ({exc}): check the free space and "
                                                 f"permissions of {self.settings.state_dir}")
            else:
                if self._poll_error is not None:
                    log.info("BMS poll answered again")
                self._poll_error = None
                self.health.recovered(STORAGE_PART)
                self._show_failing()
                if report.dropped:
                    for point, count in self.poller.dropped.items():
                        self.store.set_state(dropped_key(point), str(count))
                self.last_report = report
                log.debug("BMS poll due %s: %d new samples in %.2f s (clock)", due.isoformat(), report.new_samples,
                          (self.clock.now() - due).total_seconds())
                if report.failures:
                    log.debug("BMS poll: %d new samples, %d of %d points failed", report.new_samples,
                              len(report.failures), len(self.poller.points))
            finally:
                self.polls_done += 1
                for listener in self.listeners:
                    listener()

    def sample(self, point: str | None, max_age: timedelta = timedelta(minutes=20)) -> Sample | None:
        """The newest sample of a point if it is recent enough, else None (unknown)."""
        sample = self.latest.get(point) if point is not None else None
        if sample is None or self.clock.now() - sample.time > max_age:
            return None
        return sample

    def value(self, point: str | None, max_age: timedelta = timedelta(minutes=20)) -> float | None:
        sample = self.sample(point, max_age)
        return sample.value if sample is not None else None

    def _show_failing(self) -> None:
        """The BMS as failing from the moment a request fails (the poll may run on for a while)."""
        failing = self.poller.failing
        if failing:
            causes = ", ".join(f"{n} {cause}" for cause, n in Counter(failing.values()).most_common())
            self.health.failed(API_PART, f"{len(failing)} of {len(self.poller.points)} points failing ({causes})",
                               logged=True)   # the poller has said it, once per change
        elif self.resolved:
            self.health.recovered(API_PART, logged=True)

    def status(self, now: datetime) -> str:
        failing, total = self.poller.failing, len(self.poller.points)
        if self.last_report is None and not failing:
            return "BMS: not polled yet" if self.polls_done == 0 else "BMS: no poll has answered yet"
        text = f"BMS {total - len(failing)}/{total} points"
        if failing:
            text += f", {len(failing)} failing ({Counter(failing.values()).most_common(1)[0][0]})"
        dropped = sum(self.poller.dropped.values())
        if dropped:
            text += f", {dropped} implausible values dropped"
        return text
