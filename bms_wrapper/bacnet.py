"""BACnet objects on the building's controllers as a BMS source: a point is an address and an object
("192.168.1.30 analog-input,3"). Where the controller keeps a TrendLog of the object's present
value, its buffer is read by time (ReadRange), so a restart or an outage is back-filled; else the
present value is read at each poll and stamped with the poll's time.

The BACnet requests are coroutines of the device esus already runs (`BacnetReads`); this adapter is
called from the poller's threads, so each request is handed to the device's event loop by `call`.
A controller's times are its local wall-clock time: a log buffer is sorted, so the repeated hour of
the end of summer time is placed by order (`LocalTimeResolver`), as for Haystack."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol, TypeVar
from zoneinfo import ZoneInfo

from bms_wrapper.adapters import PointInfo
from bms_wrapper.samples import LocalTimeResolver, Sample, ambiguous, as_number, within
from bms_wrapper.transport import BmsBadResponse, BmsError, BmsUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
#: What a point id names: an address (IPv4 with an optional port, or network:mac) and an object.
POINT_ID = re.compile(r"^(?P<address>\S+)\s+(?P<object>[a-z][a-z-]*,\d+)$")
#: A controller that did not answer is asked again after this (each poll's points would wait for it).
ASK_AGAIN = timedelta(minutes=1)
#: Log records asked for per ReadRange: about 28 bytes each, so an answer fits one 1476-byte APDU.
RECORDS_PER_READ = 40
#: A log's sequence numbers are Unsigned32 and go on from 2^32 - 1 to 1 (clause 12.25.16).
SEQUENCE_WRAP = 2**32 - 1


def next_sequence(first: int, count: int) -> int:
    """The sequence number `count` records after `first`, across the wrap."""
    return (first - 1 + count) % SEQUENCE_WRAP + 1


class BacnetPoint(NamedTuple):
    address: str
    object_id: str


def parse_point(point: str) -> BacnetPoint:
    match = POINT_ID.match(point.strip())
    if match is None:
        raise ValueError(f"BACnet point {point!r}: expected '<address> <object-type>,<instance>', "
                         "such as '192.168.1.30 analog-input,3'")
    return BacnetPoint(match["address"], match["object"])


class BacnetReads(Protocol):
    """The requests this adapter makes; each raises a BmsError subclass on failure."""

    async def device_at(self, address: str) -> str: ...

    async def read(self, address: str, object_id: str, property: str = "present-value") -> Any: ...

    async def read_log(self, address: str, trend_log: str, after: datetime | int, count: int
                       ) -> tuple[int, list[tuple[datetime, float | None]]]:
        """Records stamped after a local time, or from a sequence number on: (the first's sequence
        number, [(naive local time, value or None)])."""


@dataclass
class Controller:
    """What one controller has: its objects, and the TrendLog of each object's present value."""

    device: str
    objects: set[str]
    trend_logs: dict[str, str]


class BacnetSource:
    history_days: float | None = None   # as long as each controller's TrendLog buffers reach

    def __init__(self, points: Iterable[str], reads: BacnetReads, call: Callable[[Coroutine[Any, Any, Any]], Any],
                 *, local_tz: ZoneInfo, now: Callable[[], datetime], records_per_read: int = RECORDS_PER_READ
                 ) -> None:
        """`points`: the site file's ids; `call(coroutine)` runs it on the device's loop and returns
        its result."""
        self.points = [parse_point(p) for p in points]
        self.records_per_read = records_per_read
        self.reads, self.call, self.local_tz, self.now = reads, call, local_tz, now
        self.controllers: dict[str, Controller] = {}
        self._silent: dict[str, datetime] = {}   # a controller that did not answer Who-Is, and when
        self.failures = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        """Nothing of its own to close: the device belongs to the service."""

    def _run(self, request: Coroutine[Any, Any, T]) -> T:
        try:
            return self.call(request)
        except BmsError:
            self.failures += 1
            raise

    def controller(self, address: str) -> Controller:
        """The controller at an address, asked once for its objects and TrendLogs (again after a
        failure: a controller offline at start is learnt when it answers)."""
        with self._lock:
            known = self.controllers.get(address)
            silent_since = self._silent.get(address)
        if known is not None:
            return known
        if silent_since is not None and self.now() - silent_since < ASK_AGAIN:
            raise BmsUnavailable(f"BACnet controller {address} did not answer at {silent_since:%H:%M:%S}; asked "
                                 f"again from {silent_since + ASK_AGAIN:%H:%M:%S}", "no answer")
        try:
            device = self._run(self.reads.device_at(address))
        except BmsUnavailable:
            with self._lock:
                self._silent[address] = self.now()
            raise
        objects = {str(o) for o in self._run(self.reads.read(address, device, "object-list"))}
        trend_logs: dict[str, str] = {}
        for trend_log in sorted(o for o in objects if o.startswith("trend-log,")):
            logged = self._run(self.reads.read(address, trend_log, "log-device-object-property"))
            # the device is optional; a controller that names itself (bacnet-stack does) is this one
            logged_device = None if logged.deviceIdentifier is None else str(logged.deviceIdentifier)
            if (str(logged.propertyIdentifier) == "present-value"
                    and logged_device in (None, device) and str(logged.objectIdentifier) in objects):
                trend_logs.setdefault(str(logged.objectIdentifier), trend_log)
        found = Controller(device, objects, trend_logs)
        with self._lock:
            self.controllers[address] = found
        log.info("BACnet %s (%s): %d objects, TrendLogs of %s", address, device, len(objects),
                 ", ".join(sorted(trend_logs)) or "none")
        return found

    def list_points(self) -> list[PointInfo]:
        """The site's points that their controllers have; a controller that does not answer keeps
        its points (each is then said as failing at the poll, and learnt when it answers)."""
        listed = []
        for address in dict.fromkeys(p.address for p in self.points):
            mine = [p for p in self.points if p.address == address]
            try:
                controller = self.controller(address)
            except BmsError as exc:
                log.warning("BACnet controller %s: %s; its %d points are polled and said failing until it "
                            "answers", address, exc, len(mine))
                listed += [PointInfo(f"{p.address} {p.object_id}", "") for p in mine]
                continue
            for point in mine:
                if point.object_id in controller.objects:
                    listed.append(PointInfo(f"{point.address} {point.object_id}", self._name(point)))
        return listed

    def _name(self, point: BacnetPoint) -> str:
        """The object's name, or "" where the controller refuses it for now (the reads say why)."""
        try:
            return str(self._run(self.reads.read(point.address, point.object_id, "object-name")))
        except BmsError:
            return ""

    def read_history(self, point: str, start: datetime, end: datetime, unit: str = "") -> list[Sample]:
        """From the object's TrendLog where it has one, else its present value now (if now is in
        the window)."""
        address, object_id = parse_point(point)
        trend_log = self.controller(address).trend_logs.get(object_id)
        if trend_log is not None:
            return self._logged(point, trend_log, start, end, unit)
        now = self.now().astimezone(UTC).replace(microsecond=0)
        if not start <= now < end:
            return []
        value = as_number(self._run(self.reads.read(address, object_id)))
        if value is None:
            raise BmsBadResponse(f"BACnet {point}: its present value is no number", "not a number")
        return [Sample(now, point, value, unit)]

    def _logged(self, point: str, trend_log: str, start: datetime, end: datetime, unit: str) -> list[Sample]:
        """The first page by time (records after one second before start; from before the repeated
        hour where start's local time names two instants), the next by sequence number."""
        address = parse_point(point).address
        after = start - timedelta(seconds=1)
        local = after.astimezone(self.local_tz).replace(tzinfo=None)
        if ambiguous(local, self.local_tz):
            local -= timedelta(hours=1)
            after = local.replace(tzinfo=self.local_tz)   # an hour before a repeated hour names one instant
        resolver = LocalTimeResolver(self.local_tz, second_pass_step=timedelta(0))
        resolver.seed(after)
        samples: list[Sample] = []
        reference: datetime | int = local
        while True:
            first, records = self._run(self.reads.read_log(address, trend_log, reference, self.records_per_read))
            when = after
            for stamp, value in records:
                when = resolver.to_utc(stamp)
                if value is not None:
                    samples.append(Sample(when, point, value, unit))
            if len(records) < self.records_per_read or when >= end:
                break   # the buffer's end, or past the window
            reference = next_sequence(first, len(records))
        return within(sorted(set(samples)), start, end)
