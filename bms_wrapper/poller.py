"""Point selection, the incremental poller (per-point high-water marks, overlap for API lag, no
interval skipped or stored twice) and the backfill, both with bounded concurrency.

Storage is not this package's business: the caller passes `known` (times already stored), the
mark getter/setter and a sink, so the same poller feeds SQLite, InfluxDB or a CSV file.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bms_wrapper.adapters import BatchReader, BmsAdapter, PointInfo
from bms_wrapper.plausible import PLAUSIBLE, implausible
from bms_wrapper.samples import Sample, gaps
from bms_wrapper.transport import BmsError

log = logging.getLogger(__name__)

#: Longest window asked for in one request: bounds memory per request whatever the span.
MAX_WINDOW = timedelta(days=8)
FUTURE_TOLERANCE = timedelta(minutes=5)


@dataclass(frozen=True)
class PointRef:
    point_id: str
    source: str
    room: str
    kind: str
    unit: str = ""


def resolve_points(configured: list[PointRef], listed: list[PointInfo]) -> tuple[list[PointRef], list[str]]:
    """Match configured points to the BMS's list by id, else by source path (a renumbered point),
    then add the listed points the adapter chose and typed itself. Returns the points to poll and
    one message per point that is unknown or was renumbered."""
    by_id = {p.point_id: p for p in listed}
    by_source = {p.source: p for p in listed}
    usable: list[PointRef] = []
    messages: list[str] = []
    for ref in configured:
        if ref.point_id in by_id:
            usable.append(ref)
        elif ref.source in by_source:
            new_id = by_source[ref.source].point_id
            messages.append(f"BMS point '{ref.source}' is now point {new_id} (site file: "
                            f"{ref.point_id}); polling {new_id} - update the site file")
            usable.append(PointRef(new_id, ref.source, ref.room, ref.kind, ref.unit))
        else:
            messages.append(f"BMS point {ref.point_id} '{ref.source}' is not in the BMS's point list; "
                            "skipped - check the site file")
    taken = {ref.point_id for ref in usable} | {ref.point_id for ref in configured}
    usable += [PointRef(p.point_id, p.source, p.room, p.kind, p.unit) for p in listed
               if p.kind and p.point_id not in taken]
    return usable, messages


def windows(start: datetime, end: datetime, size: timedelta = MAX_WINDOW) -> list[tuple[datetime, datetime]]:
    out, t = [], start
    while t < end:
        out.append((t, min(t + size, end)))
        t += size
    return out


@dataclass
class PollReport:
    new_samples: int = 0
    points_ok: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    dropped: int = 0          # values outside what the point's kind can read


class Poller:
    def __init__(self, adapter: BmsAdapter, points: list[PointRef], *,
                 known: Callable[[PointRef, datetime, datetime], set[datetime]],
                 get_mark: Callable[[PointRef], datetime | None],
                 set_mark: Callable[[PointRef, datetime], None],
                 sink: Callable[[PointRef, list[Sample]], None],
                 overlap: timedelta = timedelta(hours=8), first_lookback: timedelta = timedelta(days=1),
                 threads: int = 8) -> None:
        self.adapter, self.points = adapter, points
        self.known, self.get_mark, self.set_mark, self.sink = known, get_mark, set_mark, sink
        self.overlap, self.first_lookback, self.threads = overlap, first_lookback, threads
        #: point -> the cause of its current failure; kept up to date while a poll runs, so a status
        #: line shows a failing BMS from the moment a request fails, not when the poll ends.
        self.failing: dict[str, str] = {}
        self.dropped: Counter[str] = Counter()   # implausible values per point, since start
        #: Called (in the poll's thread) each time `failing` changes.
        self.on_change: Callable[[], object] = lambda: None

    def poll(self, now: datetime) -> PollReport:
        """Fetch every point from its mark (minus the overlap) to now; blocking, run it in a thread."""
        report = PollReport()
        changed: list[tuple[PointRef, BmsError, str | None]] = []
        recovered: list[PointRef] = []
        with ThreadPoolExecutor(self.threads, thread_name_prefix="bms") as pool:
            futures = {pool.submit(self._poll_point, ref, now): ref for ref in self.points}
            for future in as_completed(futures):
                ref = futures[future]
                point = ref.point_id
                try:
                    new, dropped = future.result()
                except BmsError as exc:
                    report.failures[point] = str(exc)
                    before = self.failing.get(point)
                    self.failing[point] = exc.cause
                    if before != exc.cause:   # said when it starts and when its cause changes, not every poll
                        changed.append((ref, exc, before))
                        self.on_change()
                    continue
                report.new_samples += new
                report.points_ok += 1
                if self.failing.pop(point, None) is not None:
                    recovered.append(ref)
                    self.on_change()
                if dropped:
                    self._say_dropped(ref, dropped)
                    report.dropped += len(dropped)
        order = {ref.point_id: i for i, ref in enumerate(self.points)}
        changed.sort(key=lambda c: order[c[0].point_id])
        recovered.sort(key=lambda r: order[r.point_id])
        self._say(changed, recovered)
        return report

    def _say(self, changed: list[tuple[PointRef, BmsError, str | None]], recovered: list[PointRef]) -> None:
        """One line per point, or one for all of them when the whole API went down or came back."""
        several = len(self.points) > 1
        if several and len(changed) == len(self.points):
            causes = Counter(exc.cause for _, exc, _ in changed)
            counted = ", ".join(f"{n} {cause}" for cause, n in causes.most_common())
            log.warning("BMS: all %d points failed (%s): %s; retrying at the next poll", len(changed), counted,
                        changed[0][1])
        else:
            for ref, exc, before in changed:
                was = f" (was: {before})" if before else ""
                log.warning("BMS point %s '%s': %s%s; retrying at the next poll", ref.point_id, ref.source,
                            exc, was)
        if several and len(recovered) == len(self.points):
            log.info("BMS: all %d points answer again", len(recovered))
        else:
            for ref in recovered:
                log.info("BMS point %s '%s' answers again", ref.point_id, ref.source)

    def _say_dropped(self, ref: PointRef, dropped: list[Sample]) -> None:
        """Once per point: a sensor that sends nonsense does so every poll."""
        first = not self.dropped[ref.point_id]
        self.dropped[ref.point_id] += len(dropped)
        if first:
            low, high = PLAUSIBLE.get(ref.kind, PLAUSIBLE["other"])
            log.warning("BMS point %s '%s': dropped %d values a %s cannot read (outside %g to %g), e.g. %g at %s; "
                        "check the sensor and the unit (said once; `esus doctor` counts them)", ref.point_id,
                        ref.source, len(dropped), ref.kind, low, high, dropped[0].value, dropped[0].time.isoformat())

    def _poll_point(self, ref: PointRef, now: datetime) -> tuple[int, list[Sample]]:
        """(samples stored, samples dropped as implausible)."""
        mark = self.get_mark(ref)
        start = (mark - self.overlap) if mark else now - self.first_lookback
        fetched: list[Sample] = []
        for a, b in windows(start, now + timedelta(seconds=1)):
            fetched += self.adapter.read_history(ref.point_id, a, b, ref.unit)
        fetched = [s for s in fetched if s.time <= now + FUTURE_TOLERANCE]
        if not fetched:
            return 0, []
        have = self.known(ref, start, now + FUTURE_TOLERANCE + timedelta(seconds=1))
        unseen = [s for s in fetched if s.time not in have]
        bad = implausible(unseen, ref.kind)
        bad_times = {s.time for s in bad}
        new = [s for s in unseen if s.time not in bad_times]
        dropped = [s for s in bad if mark is None or s.time > mark]   # the overlap's were counted before
        if new:
            previous = [Sample(mark, ref.point_id, 0.0)] if mark and mark < new[0].time else []
            for a, b in gaps(previous + new):
                log.info("BMS point %s '%s' has no samples from %s to %s", ref.point_id, ref.source,
                         a.isoformat(), b.isoformat())
            self.sink(ref, new)
        latest = fetched[-1].time   # past dropped values too (the overlap reads them again, uncounted)
        if mark is None or latest > mark:
            self.set_mark(ref, latest)
        return len(new), dropped


def backfill(adapter: BmsAdapter, points: list[PointRef], start: datetime, end: datetime, *,
             threads: int = 16, progress: Callable[[int, int], None] | None = None
             ) -> Iterator[tuple[PointRef, list[Sample]]]:
    """Every point's samples in [start, end), window by window, yielded as they arrive, so memory
    stays bounded whatever the span. The transport bounds the requests in flight; with more threads
    than that, replies are decoded while the next requests wait on the network. Values no sensor of
    the point's kind can read are dropped (said once per point), as in the poll."""
    size = adapter.batch_size if isinstance(adapter, BatchReader) else 1
    batches = [points[i:i + size] for i in range(0, len(points), size)]
    span = MAX_WINDOW / size   # a request of `size` points covers no more point-days than one point's
    tasks = [(batch, a, b) for batch in batches for a, b in windows(start, end, span)]

    def read(batch: list[PointRef], a: datetime, b: datetime) -> list[list[Sample]]:
        if isinstance(adapter, BatchReader):
            return adapter.read_many([(ref.point_id, ref.unit) for ref in batch], a, b)
        return [adapter.read_history(ref.point_id, a, b, ref.unit) for ref in batch]

    done_count = 0
    said: set[str] = set()   # points whose implausible values were reported
    with ThreadPoolExecutor(threads, thread_name_prefix="backfill") as pool:
        pending: dict[Future, list[PointRef]] = {}
        queue = iter(tasks)
        while True:
            while len(pending) < threads:
                task = next(queue, None)
                if task is None:
                    break
                pending[pool.submit(read, *task)] = task[0]
            if not pending:
                return
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                batch = pending.pop(future)
                done_count += 1
                if progress:
                    progress(done_count, len(tasks))
                for ref, samples in zip(batch, future.result(), strict=True):
                    yield ref, _plausible(ref, samples, said)


def _plausible(ref: PointRef, samples: list[Sample], said: set[str]) -> list[Sample]:
    """The samples but those no sensor of the point's kind can read (said once per point)."""
    bad = implausible(samples, ref.kind)
    if not bad:
        return samples
    if ref.point_id not in said:
        said.add(ref.point_id)
        log.warning("BMS point %s '%s': dropped values a %s cannot read, e.g. %g at %s",
                    ref.point_id, ref.source, ref.kind, bad[0].value, bad[0].time.isoformat())
    bad_times = {s.time for s in bad}
    return [s for s in samples if s.time not in bad_times]
