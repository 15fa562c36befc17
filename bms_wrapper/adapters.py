"""BMS API adapters behind one small interface: list the points, read one point's history.
A point's id is an opaque string past the adapter (the AAU API's integer externallogid as text, a
Haystack ref, a BACnet object): only the adapter that made it reads it. The AAU BMS API v1 is the
first; an EcoStruxure EWS or Project Haystack adapter fits the same shape."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from bms_wrapper.samples import Sample, ambiguous, normalise, within
from bms_wrapper.transport import BmsBadResponse, Transport

log = logging.getLogger(__name__)

DANISH_TIME = ZoneInfo("Europe/Copenhagen")
SKEW_WARNING = timedelta(hours=1)


@dataclass(frozen=True)
class PointInfo:
    point_id: str
    source: str
    #: Set where the adapter chose the point itself (a Haystack filter in the site file): it is
    #: polled as this kind, in this room, without a [[bms.points]] entry.
    kind: str = ""
    room: str = ""
    unit: str = ""


class BmsAdapter(Protocol):
    #: How far back the source keeps history, in days (None: as far as anyone asks).
    history_days: float | None

    @property
    def failures(self) -> int:
        """Requests that failed since the start."""

    def close(self) -> None: ...

    def list_points(self) -> list[PointInfo]: ...

    def read_history(self, point: str, start: datetime, end: datetime, unit: str = "") -> list[Sample]:
        """Samples with start <= time < end (aware datetimes), oldest first."""


@runtime_checkable
class BatchReader(Protocol):
    """An adapter that reads several points' histories in one request (a backfill uses it)."""

    @property
    def batch_size(self) -> int:
        """Points per request (1: the source reads one at a time after all)."""

    def read_many(self, points: list[tuple[str, str]], start: datetime, end: datetime) -> list[list[Sample]]:
        """For (id, unit) pairs, each point's samples with start <= time < end, in the same order."""


@runtime_checkable
class HttpAdapter(BmsAdapter, Protocol):
    """An adapter over HTTP: its owner closes the transport and reads its failure count."""

    transport: Transport


def _point_ids(records: list[dict], point: str) -> set:
    try:
        return set(map(itemgetter("externallogid"), records))  # in C: a week is 10,000 records
    except KeyError:
        return {r.get("externallogid", point) for r in records}


def _number_or_text(point: str) -> int | str:
    """The AAU API's own form of an id: its JSON has integers."""
    return int(point) if point.isdigit() else point


class AauBmsV1:
    """GET /api/v1/metadata and /api/v1/trenddata (HTTP Basic); times are Danish local time."""

    history_days: float | None = 7.6   # the trend buffers hold about 7.6 days of one-minute samples

    def __init__(self, transport: Transport, local_tz: ZoneInfo = DANISH_TIME) -> None:
        self.transport, self.local_tz = transport, local_tz
        self._skew_reported: set[str] = set()

    @property
    def failures(self) -> int:
        return self.transport.failures

    def close(self) -> None:
        self.transport.close()

    def _records(self, path: str, params: dict | None = None) -> list[dict]:
        data = self.transport.get_json(path, params)
        if isinstance(data, dict):
            message = data.get("error") or data.get("message") or data.get("detail") or str(data)[:200]
            raise BmsBadResponse(f"the BMS answered {path} with an error instead of data: {message}")
        if not isinstance(data, list) or not set(map(type, data)) <= {dict}:  # JSON objects decode to dict
            raise BmsBadResponse(f"the BMS answered {path} with {type(data).__name__}, not a list of records")
        return data

    def list_points(self) -> list[PointInfo]:
        points = []
        for record in self._records("/api/v1/metadata"):
            try:
                points.append(PointInfo(str(int(record["externallogid"])), str(record.get("source", ""))))
            except (KeyError, TypeError, ValueError):
                continue
        return points

    def _local(self, t: datetime, widen: timedelta) -> str:
        """`t` as the API takes it, in local time without an offset. In the repeated hour at the end of
        summer time that names two instants, so the window is widened by `widen` there; the samples
        outside it are cut off after."""
        local = t.astimezone(self.local_tz).replace(tzinfo=None)
        if ambiguous(local, self.local_tz):
            local += widen
        return local.strftime("%Y-%m-%d %H:%M:%S")

    def read_history(self, point: str, start: datetime, end: datetime, unit: str = "") -> list[Sample]:
        params = {"starttime": self._local(start, -timedelta(hours=1)), "endtime": self._local(end, timedelta(hours=1)),
                  "externallogid": point}
        records = self._records("/api/v1/trenddata", params)
        if _point_ids(records, point) - {point, _number_or_text(point)}:  # other points mixed in
            records = [r for r in records if str(r.get("externallogid", point)) == str(point)]
        end_utc = end.astimezone(UTC)
        samples = normalise(records, point, unit, self.local_tz)
        if samples and samples[-1].time > end_utc + SKEW_WARNING and point not in self._skew_reported:
            self._skew_reported.add(point)
            log.warning("BMS point %s returned samples stamped up to %s for a window ending %s: the BMS clock "
                        "is more than an hour ahead (check NTP on the BMS and here); those samples are taken "
                        "when this clock reaches them", point, samples[-1].time.isoformat(), end_utc.isoformat())
        return within(samples, start, end)
