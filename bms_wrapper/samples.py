"""Normalised samples: UTC time, point, float value, unit. BMS times are local wall-clock times
unless they carry an offset; a repeated hour at the end of DST is resolved by the order of the
records; duplicates and non-numbers are dropped."""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise, repeat
from operator import attrgetter, itemgetter
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

_OFFSET = re.compile(r"^(?:UTC|GMT)?\s*([+-])(\d{1,2}):?(\d{2})?$")


class Sample(NamedTuple):
    """A named tuple: a week of 171 points is 1.7 million of them, and tuples are cheap to make."""

    time: datetime  # aware, UTC
    point: str
    value: float
    unit: str = ""


def parse_zone(text: str | None) -> timezone | ZoneInfo | None:
    """'+01:00', 'UTC+1', 'Z', 'Europe/Copenhagen' -> a tzinfo; None when absent or unknown."""
    if not text:
        return None
    text = str(text).strip()
    if text.upper() in ("Z", "UTC", "GMT"):
        return UTC
    match = _OFFSET.match(text)
    if match:
        sign, hours, minutes = match.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        return None


#: What a BMS writes for a reading its sensor could not make: counted as dropped, not skipped unseen
NOT_A_NUMBER = {"nan", "-nan", "inf", "-inf", "infinity", "-infinity"}


def as_number(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)  # type: ignore[arg-type] # any JSON value: the except takes what is no number
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


#: In a repeated hour, a step back of at least this much means the records entered the second pass
#: (small steps back are just records out of order).
SECOND_PASS_STEP = timedelta(minutes=30)


def ambiguous(naive: datetime, tz: ZoneInfo) -> bool:
    """Does this wall-clock time name two instants (the repeated hour at the end of summer time)?"""
    return naive.replace(tzinfo=tz, fold=0).utcoffset() != naive.replace(tzinfo=tz, fold=1).utcoffset()


class LocalTimeResolver:
    """Local wall-clock times to UTC; in a repeated hour, a big step back means the second pass."""

    def __init__(self, tz: ZoneInfo, second_pass_step: timedelta = SECOND_PASS_STEP) -> None:
        """`second_pass_step`: the least step back that means the second pass (zero where the records
        are sorted, as a Haystack history is: then any step back, or a repeated time, means it)."""
        self.tz, self.second_pass_step = tz, second_pass_step
        self._previous: datetime | None = None
        self._fold = 0

    def seed(self, start: datetime) -> None:
        """Records that follow an aware `start`: a first record in a repeated hour takes start's pass
        (and a record at start itself is no step back)."""
        local = start.astimezone(self.tz)
        self._previous, self._fold = local.replace(tzinfo=None) - timedelta(microseconds=1), local.fold

    def to_utc(self, naive: datetime) -> datetime:
        twice = ambiguous(naive, self.tz)
        if not twice:
            self._fold = 0
        elif self._previous is not None and self._previous - naive >= self.second_pass_step:
            self._fold = 1
        self._previous = naive
        return naive.replace(tzinfo=self.tz, fold=self._fold if twice else 0).astimezone(UTC)


def _normalise_fast(records: list[dict], point: str, unit: str, local_tz: ZoneInfo) -> list[Sample] | None:
    """Vectorised path for the usual reply: naive local stamps in one format and one named zone.
    None when the reply is anything else (the record-by-record path then handles it)."""
    try:  # itemgetter in map() walks 10,000 records in C; a missing key means the unusual path
        zones = set(map(itemgetter("timestamp_tzinfo"), records))
        stamp_texts = list(map(itemgetter("timestamp"), records))
        raw = list(map(itemgetter("value"), records))
    except KeyError:
        return None
    if len(zones) != 1:
        return None
    zone_text = zones.pop()
    zone = parse_zone(zone_text) if zone_text else local_tz
    if not isinstance(zone, ZoneInfo):
        return None
    try:
        stamps = pd.to_datetime(stamp_texts, format="%Y-%m-%d %H:%M:%S")
        seconds = stamps.tz_localize(zone, ambiguous="infer", nonexistent="shift_forward").as_unit("s").asi8
    except (ValueError, TypeError):  # pandas raises ValueError for a DST hour it cannot infer
        return None
    try:
        values = np.array(raw, dtype="float64")  # None becomes NaN, numeric strings numbers
    except (TypeError, ValueError):
        values = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy("float64")
    return samples_from(seconds, values, point, unit)


def samples_from(seconds: np.ndarray, values: np.ndarray, point: str, unit: str) -> list[Sample]:
    """Epoch seconds and values (NaN: none) as sorted samples, one per time (the last of a repeated one)."""
    finite = np.isfinite(values)
    if not finite.any():
        return []
    order = np.argsort(seconds[finite], kind="stable")  # stable: of a repeated time, the last record wins
    seconds, values = seconds[finite][order], values[finite][order]
    last = np.append(seconds[1:] != seconds[:-1], True)
    times = pd.to_datetime(seconds[last], unit="s", utc=True).to_pydatetime()
    return list(map(tuple.__new__, repeat(Sample), zip(times, repeat(point), values[last].tolist(), repeat(unit))))


def normalise(records: list[dict], point: str, unit: str, local_tz: ZoneInfo) -> list[Sample]:
    """API records of one point to sorted, unique samples (the last record of a repeated time wins)."""
    if len(records) > 50 and all(isinstance(r.get("value"), (int, float)) for r in records[:50]):
        fast = _normalise_fast(records, point, unit, local_tz)
        if fast is not None:
            return fast
    resolver = LocalTimeResolver(local_tz)
    by_time: dict[datetime, Sample] = {}
    for record in records:
        raw = record.get("value")
        value = as_number(raw)
        if value is None and str(raw).strip().lower() in NOT_A_NUMBER:
            value = math.nan   # a sensor's "NaN": kept, so the poll drops and counts it with the implausible
        stamp = record.get("timestamp")
        if value is None or not stamp:
            continue
        try:
            parsed = datetime.fromisoformat(str(stamp).replace(" ", "T").replace("Z", "+00:00"))
        except ValueError:
            continue
        if parsed.tzinfo is None:
            zone = parse_zone(record.get("timestamp_tzinfo"))
            if isinstance(zone, timezone):
                parsed = parsed.replace(tzinfo=zone)
            else:
                resolver.tz = zone or local_tz
                parsed = resolver.to_utc(parsed)
        when = parsed.astimezone(UTC)
        by_time[when] = Sample(when, point, value, unit)
    return [by_time[t] for t in sorted(by_time)]


def within(samples: list[Sample], start: datetime, end: datetime) -> list[Sample]:
    """The samples (sorted by time) with start <= time < end."""
    start_utc, end_utc = start.astimezone(UTC), end.astimezone(UTC)
    first = bisect_left(samples, start_utc, key=attrgetter("time"))
    return samples[first:bisect_left(samples, end_utc, lo=first, key=attrgetter("time"))]


def gaps(samples: list[Sample], factor: float = 3.0, min_gap: timedelta = timedelta(minutes=10)
         ) -> list[tuple[datetime, datetime]]:
    """Spans longer than `factor` x the typical interval (and at least `min_gap`) without samples."""
    if len(samples) < 3:
        return []
    steps = sorted((b.time - a.time) for a, b in pairwise(samples))
    limit = max(steps[len(steps) // 2] * factor, min_gap)
    return [(a.time, b.time) for a, b in pairwise(samples) if b.time - a.time > limit]
