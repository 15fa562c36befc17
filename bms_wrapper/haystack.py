"""Project Haystack as a BMS source (SkySpark, Haxall, Niagara with nHaystack, many gateways): `read`
by filter lists the points, `hisRead` reads a point's history, in Zinc (every Haystack version) or
Haystack 4 JSON. The kinds are decoded by phable; the requests are esus's transport (deadlines,
size bounds, retries, which phable's own client has none of). A point's id is its ref without '@'.

phable's decoders keep a datetime's zone but drop its offset, so in the repeated hour at the end of
summer time the second pass reads as the first. The offsets are not needed: a history is sorted,
so a step back in local time is the second pass (`LocalTimeResolver`, seeded at the window's start)."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any, Literal
from zoneinfo import ZoneInfo

import orjson
import requests
from phable import Grid, Number, Ref, ph_from_json, ph_from_zinc
from phable.auth.scram import ScramScheme, ScramServerResponseParsingError, ScramServerSignatureNotEqualError

from bms_wrapper.adapters import PointInfo
from bms_wrapper.haystack_json import haystack4, is_haystack3_grid
from bms_wrapper.samples import LocalTimeResolver, Sample, as_number, samples_from, within
from bms_wrapper.transport import BmsAuthError, BmsBadResponse, BmsUnavailable, Transport
from bms_wrapper.zinc_history import his_columns
from bms_wrapper.zinc_mend import DECODING_ERRORS, mend

log = logging.getLogger(__name__)

Format = Literal["zinc", "json"]
MIME: dict[str, str] = {"zinc": "text/zinc", "json": "application/json"}
#: The forms of a request grid's type, the first as Haystack's HTTP spec shows it; servers differ
CONTENT_TYPES = ("text/zinc", "text/zinc; charset=utf-8")
#: What a point list asks for unless the site file says otherwise: every point with a history.
POINTS_FILTER = "point and his"
BATCH_SIZE = 8
#: A 401 this soon after signing in is a request sent before the token came, not a refused token.
FRESH_LOGIN_S = 10.0


def point_id(ref: Ref | str) -> str:
    """A Haystack ref as esus keeps it: its id, without '@' or display name."""
    text = ref.val if isinstance(ref, Ref) else str(ref).strip()
    return text.removeprefix("@")


def zinc_text(text: str) -> str:
    """A Zinc Str literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("$", "\\$")
    return f'"{escaped}"'


def zinc_datetime(t: datetime) -> str:
    return f"{t.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z UTC"


def request_grid(columns: dict[str, str], rows: Iterable[dict[str, str]] = ({},), meta: str = "") -> bytes:
    """A request grid in Zinc (any Haystack server reads it), the values already in Zinc."""
    names = list(columns)
    lines = [f'ver:"3.0"{" " + meta if meta else ""}', ",".join(names)]
    for row in rows:
        lines.append(",".join(row.get(name, columns[name]) for name in names))
    return ("\n".join(lines) + "\n").encode()


def display_name(row: Mapping[str, Any]) -> str:
    ref = row.get("id")
    return str(row.get("navName") or row.get("dis") or (ref.dis if isinstance(ref, Ref) else "") or "")


def tag_text(value: Any) -> str:
    """A tag's value as a name: a ref's display name (else its id), a text as it is."""
    if isinstance(value, Ref):
        return value.dis or point_id(value)
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class Selection:
    """The points a filter finds are read as `kind`, each in the room its `room_tag` names."""

    filter: str
    kind: str
    room_tag: str = "spaceRef"
    unit: str = ""


# ── signing in ───────────────────────────────────────────────────────────────


class _Scram(ScramScheme):
    """phable's SCRAM-SHA-256 exchange (Haystack's auth), its three requests sent with esus's session
    and timeouts: phable's own wait for ever on a server that does not answer."""

    def __init__(self, url: str, user: str, password: str, session: requests.Session,
                 timeouts: tuple[float, float]) -> None:
        super().__init__(url, user, password, "text/zinc")
        self._session, self._timeouts = session, timeouts
        self.last_status, self.last_challenge = 0, ""

    def _ph_scram_get(self, url: str, headers: dict[str, str], context: Any = None) -> Message:
        try:
            reply = self._session.get(url, headers=headers, timeout=self._timeouts)
        except requests.RequestException as exc:
            raise BmsUnavailable(f"the Haystack server did not answer the login ({type(exc).__name__}): check "
                                 "ESUS_BMS_URL and the network", "no answer to the login") from None
        reply.close()
        self.last_status, self.last_challenge = reply.status_code, reply.headers.get("WWW-Authenticate", "")
        if reply.status_code == 403:
            raise BmsAuthError("the Haystack server refused the login (SCRAM, HTTP 403): check ESUS_BMS_USER and "
                               "ESUS_BMS_PASSWORD", "login refused")
        headers_seen = Message()   # as urllib gives them: phable reads the final message's headers as text
        for name, value in reply.headers.items():
            headers_seen[name] = value
        return headers_seen


class HaystackAuth:
    """Haystack's sign-in, done when the server first answers 401 (so a server without auth needs
    none): SCRAM, or Basic where the server asks for that; a token given instead is used as it is."""

    def __init__(self, url: str, user: str = "", password: str = "", token: str = "",
                 timeouts: tuple[float, float] = (5.0, 30.0)) -> None:
        self.url, self.user, self.password, self.token = url.rstrip("/"), user, password, token
        self.timeouts = timeouts
        self._session: requests.Session | None = None
        self.logins = 0
        self._signed_in_at = -FRESH_LOGIN_S

    def apply(self, session: requests.Session) -> None:
        self._session = session
        if self.token:
            session.headers["Authorization"] = f"BEARER authToken={self.token}"

    def refresh(self) -> bool:
        """Sign in again (the server answered 401); False when a given token was refused."""
        if self._session is None or self.token:
            return False
        if time.monotonic() - self._signed_in_at < FRESH_LOGIN_S:
            return True   # a request that was sent before another thread signed in: try it with the new token
        session = self._session   # the exchange's requests carry their own Authorization; the rest keep theirs
        scram = _Scram(self.url, self.user, self.password, session, self.timeouts)
        try:
            token = scram.get_auth_token()
        except ScramServerSignatureNotEqualError:
            raise BmsAuthError("the Haystack server could not prove it knows the password (its SCRAM signature "
                               "is wrong): check ESUS_BMS_URL is the server you meant", "server not proven") from None
        except (ScramServerResponseParsingError, ValueError) as exc:   # not SCRAM, or a hash other than SHA-256
            challenge = scram.last_challenge.split(" ", 1)[0].lower()
            if challenge == "basic":
                session.headers["Authorization"] = "Basic " + base64.b64encode(
                    f"{self.user}:{self.password}".encode()).decode()
                self._signed_in()
                return True
            raise BmsAuthError(f"the Haystack server's login could not be completed (HTTP {scram.last_status}, "
                               f"{challenge or 'no challenge'}: {type(exc).__name__}): esus signs in with SCRAM or "
                               "Basic; check ESUS_BMS_URL is the API's root (…/api/<project>)",
                               "login failed") from None
        session.headers["Authorization"] = f"BEARER authToken={token}"
        self._signed_in()
        return True

    def _signed_in(self) -> None:
        self.logins += 1
        self._signed_in_at = time.monotonic()


# ── the adapter ──────────────────────────────────────────────────────────────


class Haystack:
    """A Haystack server's points and histories (POST of a Zinc request grid: every server reads it)."""

    history_days: float | None = None   # a historian keeps years

    def __init__(self, transport: Transport, *, fmt: Format = "zinc", points_filter: str = POINTS_FILTER,
                 selections: Iterable[Selection] = ()) -> None:
        self.transport, self.fmt, self.points_filter = transport, fmt, points_filter
        self.selections = list(selections)
        transport.session.headers["Accept"] = MIME[fmt]
        self.records: dict[str, Mapping[str, Any]] = {}   # each listed point's tags, by id
        self.batch_reads = True   # until the server shows it reads one id per hisRead
        self.content_type = CONTENT_TYPES[0]
        self._mends_said: set[str] = set()

    @property
    def batch_size(self) -> int:
        """Points per hisRead: 8 where the server reads batches (a day of 8 points is what 8 days of
        one is, about 0.5 MB of Zinc), else 1."""
        return BATCH_SIZE if self.batch_reads else 1

    @property
    def failures(self) -> int:
        return self.transport.failures

    def close(self) -> None:
        self.transport.close()

    def call(self, op: str, body: bytes) -> Grid:
        """One op: its grid, or a BmsError saying what the server said."""
        return self._grid(op, self._text(op, body))

    def _text(self, op: str, body: bytes) -> str:
        """The answer's text. The request grid is sent as `text/zinc`, as the HTTP spec of Haystack
        shows it; a server that refuses that form (406, 415) is asked once with the charset named,
        and the form it takes is kept."""
        try:
            reply = self.transport.request("POST", f"/{op}", data=body, content_type=self.content_type)
        except BmsBadResponse as refused:
            if refused.cause not in ("HTTP 406", "HTTP 415"):
                raise
            other = CONTENT_TYPES[1 - CONTENT_TYPES.index(self.content_type)]
            reply = self.transport.request("POST", f"/{op}", data=body, content_type=other)
            log.info("the Haystack server takes requests as %r, not %r (it answered %s)", other, self.content_type,
                     refused.cause)
            self.content_type = other
        try:
            return reply.body.decode("utf-8")
        except UnicodeDecodeError:
            self.transport.failures += 1
            raise BmsBadResponse(f"the Haystack server's answer to {op} is not UTF-8", "not UTF-8") from None

    def _grid(self, op: str, text: str) -> Grid:
        try:
            grid = self._decoded(op, text)
        except DECODING_ERRORS as exc:
            self.transport.failures += 1
            raise BmsBadResponse(f"the Haystack server's answer to {op} is no {self.fmt} grid ({type(exc).__name__}: "
                                 f"{str(exc)[:80]})", f"malformed {self.fmt}") from None
        if not isinstance(grid, Grid):
            self.transport.failures += 1
            raise BmsBadResponse(f"the Haystack server answered {op} with a {type(grid).__name__}, not a grid",
                                 "not a grid")
        if "err" in grid.meta:
            self.transport.failures += 1
            kind, dis = str(grid.meta.get("errType", "")), str(grid.meta.get("dis", "no message"))
            unknown = "UnknownRec" in kind or "UnknownRec" in dis
            raise BmsBadResponse(f"the Haystack server answered {op} with an error: {dis}",
                                 "unknown point" if unknown else "an error grid")
        return grid

    def _decoded(self, op: str, text: str) -> Any:
        """phable's reading of the text: Haystack 3 JSON as Haystack 4's; Zinc the grammar does not allow
        mended cell by cell (zinc_mend), which is said once per kind of mend."""
        if self.fmt == "json":
            data = orjson.loads(text)
            return ph_from_json(haystack4(data) if is_haystack3_grid(data) else data)
        try:
            return ph_from_zinc(text)
        except DECODING_ERRORS:
            mended = mend(text, ph_from_zinc)
            if mended is None:
                raise
        grid, said = mended
        for what in said:
            kind = what.split("(", 1)[0]
            if kind not in self._mends_said:
                self._mends_said.add(kind)
                log.warning("the Haystack server's answer to %s is not all Zinc: %s; said once", op, what)
        return grid

    def read(self, filter_text: str) -> list[tuple[str, Mapping[str, Any]]]:
        """The records a filter finds, as (id, tags); each kept in `records`."""
        grid = self.call("read", request_grid({"filter": zinc_text(filter_text)}))
        found = []
        for row in grid.rows:
            ref = row.get("id")
            if isinstance(ref, Ref):
                self.records[point_id(ref)] = row
                found.append((point_id(ref), row))
        return found

    def list_points(self) -> list[PointInfo]:
        """The points `points_filter` finds, and those each selection finds, typed by it (the first
        selection that finds a point types it)."""
        points = {ident: PointInfo(ident, display_name(row)) for ident, row in self.read(self.points_filter)}
        chosen: set[str] = set()
        for selection in self.selections:
            for ident, row in self.read(selection.filter):
                if ident not in chosen:
                    chosen.add(ident)
                    points[ident] = PointInfo(ident, display_name(row), selection.kind,
                                              tag_text(row.get(selection.room_tag)),
                                              selection.unit or tag_text(row.get("unit")))
        return list(points.values())

    def read_history(self, point: str, start: datetime, end: datetime, unit: str = "") -> list[Sample]:
        """Samples with start <= time < end, oldest first; the Haystack unit where the site file gives none."""
        body = request_grid({"id": f"@{point_id(point)}", "range": zinc_text(
            f"{zinc_datetime(start)},{zinc_datetime(end)}")})
        return self._histories("hisRead", body, [(point, unit)], start, end)[0]

    def _histories(self, op: str, body: bytes, points: list[tuple[str, str]], start: datetime, end: datetime
                   ) -> list[list[Sample]]:
        """Each point's samples from a his grid of one value column per point (`val`, or v0, v1, …)."""
        text = self._text(op, body)
        regular = his_columns(text, len(points)) if self.fmt == "zinc" else None
        if regular is not None:
            seconds, columns = regular
            return [within(samples_from(seconds, values, point_id(point), unit or his_unit), start, end)
                    for (point, unit), (values, his_unit) in zip(points, columns, strict=True)]
        grid = self._grid(op, text)
        names = [col.name for col in grid.cols]
        if len(points) > 1 and ("val" in names or f"v{len(points) - 1}" not in names):
            raise NoBatchReads
        value_names = ["val"] if len(points) == 1 else [f"v{i}" for i in range(len(points))]
        return [within(history_samples(({"ts": row.get("ts"), "val": row.get(name)} for row in grid.rows),
                                       point_id(point), unit, start), start, end)
                for (point, unit), name in zip(points, value_names, strict=True)]

    def read_many(self, points: list[tuple[str, str]], start: datetime, end: datetime) -> list[list[Sample]]:
        """Several points' histories in one request (Haystack 4's batch hisRead), for (id, unit) pairs;
        a server that reads only the first id is asked one point at a time from then on."""
        if len(points) == 1 or not self.batch_reads:
            return [self.read_history(point, start, end, unit) for point, unit in points]
        body = request_grid({"id": ""}, ({"id": f"@{point_id(point)}"} for point, _ in points),
                            meta="range:" + zinc_text(f"{zinc_datetime(start)},{zinc_datetime(end)}"))
        try:
            return self._histories("hisRead", body, points, start, end)
        except NoBatchReads:
            log.info("the Haystack server reads one point per hisRead (no batch reads): asking point by point")
            self.batch_reads = False
            return self.read_many(points, start, end)


class NoBatchReads(Exception):
    """A batch hisRead was answered for one point only."""


def history_samples(rows: Iterable[Mapping[str, Any]], point: str, unit: str, start: datetime) -> list[Sample]:
    """A hisRead grid's rows (`ts`, `val`) as samples in UTC; rows without a number are skipped (a
    null, NA, a Bool is 0 or 1). The first row of a repeated hour is placed by the window's start."""
    resolvers: dict[ZoneInfo, LocalTimeResolver] = {}
    by_time: dict[datetime, Sample] = {}
    for row in rows:
        ts, raw = row.get("ts"), row.get("val")
        if not isinstance(ts, datetime) or ts.tzinfo is None:
            if ts is not None and not isinstance(ts, datetime):
                raise BmsBadResponse(f"point {point}'s history has a ts that is no datetime ({str(ts)[:40]}): the "
                                     "server's history is not one esus can read", "malformed history")
            continue
        value = as_number(raw.val if isinstance(raw, Number) else raw)
        if value is None:
            continue
        if isinstance(ts.tzinfo, ZoneInfo):
            zone = ts.tzinfo
            if zone not in resolvers:
                resolvers[zone] = LocalTimeResolver(zone, second_pass_step=timedelta(0))
                resolvers[zone].seed(start)
            when = resolvers[zone].to_utc(ts.replace(tzinfo=None))
        else:
            when = ts.astimezone(UTC)
        by_time[when] = Sample(when, point, value, unit or (raw.unit or "" if isinstance(raw, Number) else ""))
    return [by_time[t] for t in sorted(by_time)]
