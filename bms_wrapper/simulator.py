"""A simulated AAU BMS API v1 on a real HTTP server (loopback), for the demo, the tests and the
benchmark. Values are deterministic functions of time, so any window can be asked for; faults
(latency, timeouts, 401, 429 with Retry-After, 503, login page, malformed JSON, error bodies,
duplicates, shuffled and partial windows, API lag, clock skew) are switched on per test."""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

DANISH_TIME = ZoneInfo("Europe/Copenhagen")


@dataclass(frozen=True)
class SimPoint:
    externallogid: int
    source: str
    kind: str


@dataclass
class Faults:
    latency_s: float = 0.0
    handshake_s: float = 0.0   # a new connection's extra round trip (TCP/TLS set-up) before its first request
    #: "timeout", "401", "429", "500", "503", "html", "empty", "malformed", "error_body", and the hostile ones:
    #: "trickle" (a byte every trickle_s), "silent" (accepts, never answers), "flood" (flood_mb of JSON,
    #: chunked, no length), "huge" (declares flood_mb in Content-Length)
    next_requests: deque = field(default_factory=deque)
    trickle_s: float = 1.0
    flood_mb: float = 50.0
    forced: dict = field(default_factory=dict)   # point id -> the value it reads (a broken sensor)
    duplicates: bool = False
    shuffled: bool = False
    partial: bool = False          # drop the middle third of every window
    lag: timedelta = timedelta(0)  # the newest samples the API has are this old
    skew: timedelta = timedelta(0)  # the BMS clock runs this far ahead
    tzinfo: str = "name"           # "name", "offset" or "none" in timestamp_tzinfo
    down_points: set = field(default_factory=set)  # these ids answer 503
    wind_mps: float | None = None  # force the wind reading


def _noise(point: int, minute: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-noise in [-0.5, 0.5) per point and minute."""
    return ((minute * 2654435761 + point * 40503) % 1000) / 1000 - 0.5


def values(point: SimPoint, times_s: np.ndarray, faults: Faults | None = None) -> np.ndarray:
    """Simulated readings of a point at whole minutes (UTC epoch seconds), vectorised."""
    local = pd.to_datetime(times_s, unit="s", utc=True).tz_convert(DANISH_TIME)
    hour = np.asarray(local.hour + local.minute / 60, dtype=float)
    minute = times_s // 60
    working = (np.asarray(local.day_of_week) < 5) & (hour >= 8) & (hour < 17)
    kind, source, n = point.kind, point.source.lower(), len(times_s)
    if faults is not None and point.externallogid in faults.forced:
        return np.full(n, float(faults.forced[point.externallogid]))
    summer = np.maximum(0.0, np.cos(2 * np.pi * (np.asarray(local.day_of_year) - 200) / 365))  # 0 Oct-Apr, 1 in July
    # rooms: heated to ~21.5 °C in winter; free-running and warm, near the cooling setpoint, in summer
    if kind == "temperature":
        return np.round(21.5 + 2.5 * summer + 1.5 * np.sin(2 * np.pi * (hour - 9) / 24)
                        + 0.2 * _noise(point.externallogid, minute), 2)
    if kind in ("setpoint_heating", "setpoint_cooling"):
        return np.full(n, 21.0 if kind == "setpoint_heating" else 24.0)
    if kind == "co2":
        return np.round(420 + 380 * working + 30 * _noise(point.externallogid, minute), 1)
    if kind == "irradiance":
        peak = 9.0 if "east" in source else 16.5 if "west" in source else 12.5
        season = 0.55 + 0.45 * np.cos(2 * np.pi * (np.asarray(local.day_of_year) - 172) / 365)
        shape = np.maximum(0.0, np.cos(np.pi * (hour - peak) / 9))
        return np.round(750 * season * shape ** 1.5, 1)
    if kind == "wind_speed":
        if faults is not None and faults.wind_mps is not None:
            return np.full(n, faults.wind_mps)
        return np.round(np.maximum(0.0, 4 + 3 * np.sin(minute / 300) + _noise(point.externallogid, minute)), 2)
    return np.zeros(n)


def send(handler: BaseHTTPRequestHandler, status: int, data: bytes, content_type: str,
         headers: dict | None = None) -> None:
    """A whole answer with its length (a keep-alive connection needs it)."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(data)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client killed mid-request is no error here
            super().handle_error(request, client_address)


class SimulatedBms:
    def __init__(self, points: list[SimPoint], user: str = "esus", password: str = "esus-demo",
                 faults: Faults | None = None, host: str = "127.0.0.1", port: int = 0,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC), bearer_token: str | None = None) -> None:
        self.points = {p.externallogid: p for p in points}
        self.now = now
        self.bearer_token = bearer_token  # when set, "Bearer <token>" is accepted too
        self.faults = faults or Faults()
        self.credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.requests = 0
        self.concurrent = self.max_concurrent = 0
        self._lock = threading.Lock()
        self.stopping = threading.Event()   # ends the hostile faults' handlers
        self.server = _Server((host, port), self._handler())
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SimulatedBms:
        self.thread = threading.Thread(target=self.server.serve_forever, name="simulated-bms", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def reply_body(self, point: SimPoint, start: datetime, end: datetime, now: datetime) -> str:
        """The trenddata JSON for one point and window, written directly: a real BMS runs on its own
        machine, so the simulator must not steal much CPU from the client it is measured against."""
        f = self.faults
        newest = int(min(end, now - f.lag).timestamp())
        first = -(-int(start.timestamp()) // 60) * 60  # the first whole minute at or after start
        times = np.arange(first, newest + 1, 60, dtype=np.int64)
        if times.size == 0:
            return "[]"
        local = pd.to_datetime(times + int(f.skew.total_seconds()), unit="s", utc=True).tz_convert(DANISH_TIME)
        wall = local.tz_localize(None).values.astype("datetime64[s]")
        stamps = np.strings.replace(np.datetime_as_string(wall, unit="s"), "T", " ").tolist()
        if f.tzinfo == "offset":
            zones = [f'"{z[:3]}:{z[3:]}"' for z in local.strftime("%z")]
        else:
            zones = ['"Europe/Copenhagen"' if f.tzinfo == "name" else "null"] * len(times)
        ident = point.externallogid
        out = [f'{{"externallogid": {ident}, "timestamp": "{t}", "timestamp_tzinfo": {z}, "value": {v!r}}}'
               for t, z, v in zip(stamps, zones, values(point, times, f).tolist(), strict=True)]
        if f.partial and len(out) > 3:
            third = len(out) // 3
            out = out[:third] + out[2 * third:]
        if f.duplicates:
            out = out + out[::7]
        if f.shuffled:
            for i in range(0, len(out) - 1, 2):  # neighbours swapped: out of order, passes of a DST hour kept
                out[i], out[i + 1] = out[i + 1], out[i]
        return "[" + ", ".join(out) + "]"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        bms = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                if bms.faults.handshake_s:
                    time.sleep(bms.faults.handshake_s)

            def _send(self, status: int, body: str, content_type: str = "application/json",
                      headers: dict | None = None) -> None:
                data = body.encode()
                remaining = self.reply_due - time.monotonic()  # the reply was made within the latency, as a server does
                if remaining > 0:
                    time.sleep(remaining)
                send(self, status, data, content_type, headers)

            def do_GET(self) -> None:
                self.reply_due = time.monotonic() + bms.faults.latency_s
                with bms._lock:
                    bms.requests += 1
                    bms.concurrent += 1
                    bms.max_concurrent = max(bms.max_concurrent, bms.concurrent)
                    fault = bms.faults.next_requests.popleft() if bms.faults.next_requests else None
                try:
                    self._serve(fault)
                finally:
                    with bms._lock:
                        bms.concurrent -= 1

            def _hostile(self, fault: str) -> None:
                """Answers as a broken or hostile server does; ends when the client gives up."""
                if fault == "silent":
                    bms.stopping.wait(600)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                size = int(bms.faults.flood_mb * 2**20)
                if fault == "trickle":
                    self.send_header("Content-Length", "100000")
                elif fault == "huge":
                    self.send_header("Content-Length", str(size))
                else:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                record = b'{"externallogid": 1, "timestamp": "2026-06-10 12:00:00", "value": 1.0}, '
                sent = 0
                while not bms.stopping.is_set() and sent < size:
                    if fault == "trickle":
                        self.wfile.write(b"[")
                        self.wfile.flush()
                        sent += 1
                        bms.stopping.wait(bms.faults.trickle_s)
                    else:
                        block = b"[" + record * 8000 if sent == 0 else record * 8000
                        self.wfile.write(block if fault == "huge" else b"%x\r\n%s\r\n" % (len(block), block))
                        sent += len(block)
                self.close_connection = True

            def _serve(self, fault: str | None) -> None:
                if fault == "timeout":
                    time.sleep(3)
                    return self._send(200, "[]")
                if fault in ("trickle", "silent", "flood", "huge"):
                    try:
                        return self._hostile(fault)
                    except OSError:   # the client hung up: what it should do
                        self.close_connection = True
                        return None
                allowed = {f"Basic {bms.credentials}"} | ({f"Bearer {bms.bearer_token}"} if bms.bearer_token else set())
                if self.headers.get("Authorization") not in allowed or fault == "401":
                    return self._send(401, '{"detail": "Unauthorized"}', headers={"WWW-Authenticate": "Basic"})
                if fault == "429":
                    return self._send(429, '{"detail": "slow down"}', headers={"Retry-After": "1"})
                if fault in ("500", "503"):
                    return self._send(int(fault), "Service Unavailable", "text/plain")
                if fault == "html":
                    return self._send(200, "<!DOCTYPE html><html><form>Log in</form></html>", "text/html")
                if fault == "empty":
                    return self._send(200, "")
                if fault == "malformed":
                    return self._send(200, '[{"externallogid": 1, "timestamp": ')
                if fault == "error_body":
                    return self._send(200, '{"error": "database connection lost"}')
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/api/v1/metadata":
                    return self._send(200, json.dumps([{"externallogid": p.externallogid, "source": p.source}
                                                       for p in bms.points.values()]))
                if url.path != "/api/v1/trenddata":
                    return self._send(404, '{"detail": "Not Found"}')
                try:
                    point = bms.points[int(query["externallogid"])]
                    start = datetime.fromisoformat(query["starttime"]).replace(tzinfo=DANISH_TIME)
                    end = datetime.fromisoformat(query["endtime"]).replace(tzinfo=DANISH_TIME)
                except (KeyError, ValueError):
                    return self._send(422, '{"detail": "bad parameters"}')
                if point.externallogid in bms.faults.down_points:
                    return self._send(503, "Service Unavailable", "text/plain")
                return self._send(200, bms.reply_body(point, start, end, bms.now()))

        return Handler
