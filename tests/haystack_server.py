"""A Project Haystack server on loopback for the tests and the benchmark: SCRAM-SHA-256 sign-in as
RFC 5802 and Haystack's HttpAuth describe it, `about`, `read` by filter and `hisRead` (one id, or
many as Haystack 4's batch read), answering in Zinc or Haystack 4 JSON as asked. Written from the
specifications without phable (esus's client): request grids are read by hszinc, point grids
written by hszinc, histories written out by hand, so neither end checks itself. A point's history
is the simulated AAU BMS's value for the same kind at each minute, stamped in Copenhagen time with
the offset, as SkySpark writes it. Faults are switched on per test."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import hszinc
import numpy as np
import pandas as pd

from bms_wrapper.simulator import DANISH_TIME, SimPoint, send, values

TAGS = {"temperature": "temp zone air sensor", "irradiance": "solar irradiance sensor", "wind_speed": "wind speed sensor",
        "co2": "co2 zone air sensor", "setpoint_heating": "temp zone air heating sp"}
UNITS = {"temperature": "°C", "irradiance": "W/m²", "wind_speed": "m/s", "co2": "ppm", "setpoint_heating": "°C"}


@dataclass(frozen=True)
class HaystackPoint:
    ref: str          # without '@'
    dis: str
    kind: str
    number: int       # the simulated signal's seed (an AAU externallogid)
    room: str = ""    # the spaceRef's name, where the point is in a room

    @property
    def sim(self) -> SimPoint:
        return SimPoint(self.number, self.dis, self.kind)


@dataclass
class HaystackFaults:
    next_requests: deque = field(default_factory=deque)   # "500", "503", "html", "error_grid", "slow"
    empty: set = field(default_factory=set)                # refs whose history is empty
    down: set = field(default_factory=set)                 # refs whose hisRead answers 503
    haystack3_json: bool = False                           # JSON as Haystack 3 wrote it ("t:…" strings)
    no_batch: bool = False                                 # hisRead reads the first id only (Haystack 3)
    refused_content_type: str = ""                         # a request grid of this exact type answers 415
    latency_s: float = 0.0
    slow_s: float = 5.0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4))


def _params(header: str) -> dict[str, str]:
    """'SCRAM handshakeToken=x, data=y' -> {'handshakeToken': 'x', 'data': 'y'}."""
    return dict(re.findall(r"(\w+)=([^,\s]+)", header.split(" ", 1)[1] if " " in header else ""))


def zinc_number(value: float, unit: str) -> str:
    return f"{value!r}{unit}"


class HaystackServer:
    def __init__(self, points: list[HaystackPoint], user: str = "esus", password: str = "pw", *,
                 auth: str = "scram", iterations: int = 4096, faults: HaystackFaults | None = None,
                 now: Any = lambda: datetime.now(UTC), port: int = 0) -> None:
        self.points = {p.ref: p for p in points}
        self.user, self.password, self.auth, self.iterations = user, password, auth, iterations
        self.faults = faults or HaystackFaults()
        self.now = now
        self.salt = secrets.token_bytes(16)
        self.tokens: set[str] = set()
        self.logins = self.requests = 0
        self.ops: list[str] = []
        self._handshakes: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self.codec_lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/api/demo"

    def start(self) -> HaystackServer:
        threading.Thread(target=self.server.serve_forever, name="haystack-server", daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def forget_tokens(self) -> None:
        """The server restarted: every token is void."""
        with self._lock:
            self.tokens.clear()

    # ── SCRAM, the server's side ───────────────────────────────────────────────

    def _keys(self) -> tuple[bytes, bytes]:
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), self.salt, self.iterations)
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        return hashlib.sha256(client_key).digest(), hmac.digest(salted, b"Server Key", "sha256")

    def scram(self, header: str) -> tuple[int, dict[str, str]]:
        """One step of the exchange: (status, reply headers)."""
        scheme = header.split(" ", 1)[0].upper()
        params = _params(header)
        if scheme == "HELLO":
            if self.auth == "basic":
                return 401, {"WWW-Authenticate": "basic realm=haystack"}
            token = secrets.token_hex(8)
            self._handshakes[token] = {"user": _b64_decode(params.get("username", "")).decode()}
            return 401, {"WWW-Authenticate": f"SCRAM handshakeToken={token}, hash=SHA-256"}
        state = self._handshakes.get(params.get("handshakeToken", ""))
        if scheme != "SCRAM" or state is None:
            return 403, {}
        message = _b64_decode(params.get("data", "")).decode()
        if "client_first_bare" not in state:
            bare = message.removeprefix("n,,")
            fields = dict(part.split("=", 1) for part in bare.split(","))
            if fields.get("n") != self.user or state["user"] != self.user:
                return 403, {}
            nonce = fields["r"] + secrets.token_hex(12)
            server_first = f"r={nonce},s={_b64(self.salt)},i={self.iterations}"
            state.update(client_first_bare=bare, server_first=server_first, nonce=nonce)
            return 401, {"WWW-Authenticate": f"SCRAM handshakeToken={params['handshakeToken']}, hash=SHA-256, "
                                             f"data={_b64(server_first.encode()).rstrip('=')}"}
        without_proof, _, proof = message.rpartition(",p=")
        if f"r={state['nonce']}" not in without_proof.split(","):
            return 403, {}
        auth_message = f"{state['client_first_bare']},{state['server_first']},{without_proof}"
        stored_key, server_key = self._keys()
        signature = hmac.digest(stored_key, auth_message.encode(), "sha256")
        client_key = bytes(a ^ b for a, b in zip(_b64_decode(proof), signature, strict=False))
        if hashlib.sha256(client_key).digest() != stored_key:
            return 403, {}
        token = secrets.token_hex(16)
        server_signature = _b64(hmac.digest(server_key, auth_message.encode(), "sha256"))
        with self._lock:
            self.tokens.add(token)
            self.logins += 1
        return 200, {"Authentication-Info": f"authToken={token}, hash=SHA-256, "
                                            f"data={_b64(f'v={server_signature}'.encode()).rstrip('=')}"}

    def signed_in(self, header: str) -> bool:
        if self.auth == "none":
            return True
        if self.auth == "basic":
            return header == "Basic " + _b64(f"{self.user}:{self.password}".encode())
        return header.upper().startswith("BEARER") and _params(header).get("authToken") in self.tokens

    # ── the ops ─────────────────────────────────────────────────────────────────

    def read_grid(self, filter_text: str) -> hszinc.Grid:
        """The points whose tags match a Haystack filter, as hszinc's filter engine reads it."""
        grid = hszinc.Grid(version=hszinc.VER_3_0)
        for name in ("id", "dis", "point", "his", "kind", "unit", "tz", "navName", "spaceRef"):
            grid.column[name] = {}
        for point in self.points.values():
            row = {"id": hszinc.Ref(point.ref, point.dis), "dis": point.dis, "navName": point.dis,
                   "point": hszinc.MARKER, "his": hszinc.MARKER, "kind": "Number",
                   "unit": UNITS.get(point.kind, ""), "tz": "Copenhagen"}
            if point.room:
                row["spaceRef"] = hszinc.Ref(f"s:{point.room}", point.room)
            for tag in TAGS.get(point.kind, "").split():
                grid.column.setdefault(tag, {})
                row[tag] = hszinc.MARKER
            grid.append(row)
        with contextlib.redirect_stdout(io.StringIO()):   # hszinc prints each filter it compiles
            return grid.filter(filter_text)

    def history(self, point: HaystackPoint, start: datetime, end: datetime) -> tuple[np.ndarray, np.ndarray]:
        """(epoch seconds, values) at each whole minute in [start, end), none in the future."""
        newest = int(min(end, self.now()).timestamp())
        first = -(-int(start.timestamp()) // 60) * 60
        times = np.arange(first, newest, 60, dtype=np.int64)
        if point.ref in self.faults.empty:
            times = times[:0]
        return times, values(point.sim, times)

    def his_body(self, refs: list[str], start: datetime, end: datetime, mime: str) -> str:
        """One history (ts, val) or a batch (ts, v0, v1, …), as Zinc or JSON; written with numpy, as
        the AAU simulator's are, so the server takes little of the CPU the client is measured on."""
        series = [self.history(self.points[ref], start, end) for ref in refs]
        units = [UNITS.get(self.points[ref].kind, "") for ref in refs]
        names = ["val"] if len(refs) == 1 else [f"v{i}" for i in range(len(refs))]
        times = np.unique(np.concatenate([t for t, _ in series]))   # sorted instants, as a history is
        cells = []   # per series, its value at each instant or None
        for t, v in series:
            at = np.searchsorted(t, times).clip(max=max(len(t) - 1, 0))
            present = (t[at] == times) if len(t) else np.zeros(len(times), dtype=bool)
            cells.append([float(x) if ok else None for x, ok in zip(v[at] if len(t) else times, present, strict=True)])
        stamps = zinc_stamps(times)
        meta = f'id:@{refs[0]} ' if len(refs) == 1 else ""
        if mime == "zinc":
            header = [f'ver:"3.0" {meta}hisStart:{_zinc_utc(start)} hisEnd:{_zinc_utc(end)}', ",".join(["ts", *names])]
            rows = (",".join([stamp] + ["" if c[i] is None else zinc_number(c[i], u) for c, u in zip(cells, units)])
                    for i, stamp in enumerate(stamps))
            return "\n".join([*header, *rows]) + "\n"
        rows_json = []
        for i, stamp in enumerate(stamps):
            text, _, zone = stamp.partition(" ")
            row: dict[str, Any] = {"ts": f"t:{stamp}" if self.faults.haystack3_json else
                                   {"_kind": "dateTime", "val": text, "tz": zone}}
            for name, c, u in zip(names, cells, units, strict=True):
                if c[i] is not None:
                    row[name] = (f"n:{c[i]} {u}" if self.faults.haystack3_json else
                                 {"_kind": "number", "val": c[i], "unit": u})
            rows_json.append(row)
        grid = {"meta": {"ver": "3.0"}, "cols": [{"name": n} for n in ["ts", *names]], "rows": rows_json}
        return json.dumps(grid if self.faults.haystack3_json else {"_kind": "grid", **grid})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: str = "", content_type: str = "text/zinc; charset=utf-8",
                      headers: dict | None = None) -> None:
                send(self, status, body.encode(), content_type, headers)

            def do_GET(self) -> None:
                self._serve(b"")

            def do_POST(self) -> None:
                self._serve(self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def _serve(self, body: bytes) -> None:
                op = self.path.split("?")[0].rsplit("/", 1)[-1]
                with server._lock:
                    server.requests += 1
                time.sleep(server.faults.latency_s)
                authorization = self.headers.get("Authorization", "")
                if op == "about" and authorization and not authorization.upper().startswith(("BEARER", "BASIC")):
                    status, headers = server.scram(authorization)
                    self._send(status, "", headers=headers)
                    return
                if not server.signed_in(authorization):
                    self._send(401, "", headers={"WWW-Authenticate": "SCRAM" if server.auth == "scram" else "basic"})
                    return
                if body and self.headers.get("Content-Type", "") == server.faults.refused_content_type:
                    self._send(415, "the request's type is not one this server takes")
                    return
                with server._lock:   # a fault meets a signed-in request
                    fault = server.faults.next_requests.popleft() if server.faults.next_requests else None
                if fault == "slow":
                    time.sleep(server.faults.slow_s)
                if fault in ("500", "503"):
                    self._send(int(fault), "server error")
                    return
                if fault == "html":
                    self._send(200, "<html><body>Sign in</body></html>", "text/html")
                    return
                mime = "json" if "json" in self.headers.get("Accept", "") else "zinc"
                server.ops.append(op)
                try:
                    with server.codec_lock:   # hszinc's pyparsing grammar is not thread-safe
                        request = hszinc.parse(body.decode(), mode=hszinc.MODE_ZINC) if body else None
                    if op == "hisRead" and {row["id"].name for row in request} & server.faults.down:
                        self._send(503, "Service Unavailable", "text/plain")
                        return
                    reply = self._op(op, request, mime, fault)
                except (KeyError, ValueError) as exc:
                    reply = self._error(f"{type(exc).__name__}: {exc}", mime)
                self._send(200, reply, "application/json" if mime == "json" else "text/zinc; charset=utf-8")

            def _error(self, dis: str, mime: str, kind: str = "sys::Err") -> str:
                if mime == "json":
                    return json.dumps({"_kind": "grid", "meta": {"ver": "3.0", "err": {"_kind": "marker"},
                                                                 "errType": kind, "dis": dis}, "cols": [], "rows": []})
                return f'ver:"3.0" err dis:{json.dumps(dis)} errType:"{kind}"\nempty\n'   # a JSON string is a Zinc Str

            def _op(self, op: str, request: Any, mime: str, fault: str | None) -> str:
                if fault == "error_grid":
                    return self._error("sys::Err: the history store is offline", mime)
                if op == "about":
                    return 'ver:"3.0"\nserverName,productName,haystackVersion\n"loopback","esus test","4.0"\n'
                if op == "read":
                    with server.codec_lock:
                        grid = server.read_grid(request[0]["filter"])
                        return hszinc.dump(grid, mode=hszinc.MODE_ZINC) if mime == "zinc" else _json_points(grid)
                if op == "hisRead":
                    refs = [row["id"].name for row in request][:1 if server.faults.no_batch else None]
                    unknown = [ref for ref in refs if ref not in server.points]
                    if unknown:
                        return self._error(f"UnknownRecErr: @{unknown[0]}", mime, "sys::UnknownRecErr")
                    text = request.metadata.get("range") or request[0]["range"]
                    start, end = (_parse_zinc_utc(part) for part in str(text).split(","))
                    return server.his_body(refs, start, end, mime)
                return self._error(f"UnknownOpErr: {op}", mime, "sys::UnknownOpErr")

        return Handler


def _zinc_utc(t: datetime) -> str:
    return f"{t.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z UTC"


def zinc_stamps(times: np.ndarray) -> list[str]:
    """Epoch seconds as Zinc datetimes in Copenhagen time, each with its offset (which says the pass
    of a repeated hour): 2026-10-25T02:30:00+01:00 Copenhagen."""
    utc = times.astype("datetime64[s]")
    local = pd.to_datetime(times, unit="s", utc=True).tz_convert(DANISH_TIME).tz_localize(None).values
    wall = local.astype("datetime64[s]")
    offsets = (wall - utc).astype(np.int64)
    text = {o: f"{'+' if o >= 0 else '-'}{abs(o) // 3600:02d}:{abs(o) % 3600 // 60:02d}" for o in set(offsets.tolist())}
    return [f"{w}{text[o]} Copenhagen" for w, o in zip(np.datetime_as_string(wall, unit="s").tolist(),
                                                         offsets.tolist(), strict=True)]


def _parse_zinc_utc(text: str) -> datetime:
    stamp = text.strip().split(" ")[0].replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).astimezone(UTC)


def _json_points(grid: hszinc.Grid) -> str:
    """A point grid in Haystack 4 JSON (hszinc writes Haystack 3's)."""
    def kind(value: Any) -> Any:
        if value is hszinc.MARKER:
            return {"_kind": "marker"}
        if isinstance(value, hszinc.Ref):
            return {"_kind": "ref", "val": value.name, "dis": value.value}
        return value
    rows = [{name: kind(value) for name, value in row.items()} for row in grid]
    return json.dumps({"_kind": "grid", "meta": {"ver": "3.0"}, "cols": [{"name": n} for n in grid.column],
                       "rows": rows})
