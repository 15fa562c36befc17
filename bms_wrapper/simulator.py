"""A simulated AAU BMS API v1 on a real HTTP server (loopback), for the demo, the tests and the
benchmark. Values are deterministic functions of time, so any window can be asked for; faults
(latency, timeouts, 401, 429 with Retry-After, 503, login page, malformed JSON, error bodies,
duplicates, shuffled and partial windows, API lag, clock skew) are switched on per test."""

from __future__ import annotations

import base64
import json
import math
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

DANISH_TIME = ZoneInfo("Europe/Copenhagen")


@dataclass(frozen=True)
class SimPoint:
    externallogid: int
    source: str
    kind: str


@dataclass
class Faults:
    latency_s: float = 0.0
    next_requests: deque = field(default_factory=deque)  # "timeout", "401", "429", "503", "html", ...
    duplicates: bool = False
    shuffled: bool = False
    partial: bool = False          # drop the middle third of every window
    lag: timedelta = timedelta(0)  # the newest samples the API has are this old
    skew: timedelta = timedelta(0)  # the BMS clock runs this far ahead
    tzinfo: str = "name"           # "name", "offset" or "none" in timestamp_tzinfo
    down_points: set = field(default_factory=set)  # these ids answer 503
    wind_mps: float | None = None  # force the wind reading


def _noise(point: int, minute: int) -> float:
    return (zlib.crc32(f"{point}:{minute}".encode()) % 1000) / 1000 - 0.5


def value_at(point: SimPoint, t: datetime, faults: Faults | None = None) -> float:
    """The simulated reading of a point at a whole minute (UTC)."""
    local = t.astimezone(DANISH_TIME)
    hour = local.hour + local.minute / 60
    minute = int(t.timestamp() // 60)
    working = local.weekday() < 5 and 8 <= hour < 17
    kind, source = point.kind, point.source.lower()
    if kind == "temperature":
        return round(21.5 + 1.5 * math.sin(2 * math.pi * (hour - 9) / 24) + 0.2 * _noise(point.externallogid, minute), 2)
    if kind == "setpoint_heating":
        return 21.0
    if kind == "setpoint_cooling":
        return 24.0
    if kind == "co2":
        return round(420 + (380 if working else 0) + 30 * _noise(point.externallogid, minute), 1)
    if kind == "irradiance":
        peak = 9.0 if "east" in source else 16.5 if "west" in source else 12.5
        season = 0.55 + 0.45 * math.cos(2 * math.pi * (local.timetuple().tm_yday - 172) / 365)
        shape = max(0.0, math.cos(math.pi * (hour - peak) / 9))
        return round(750 * season * shape ** 1.5, 1)
    if kind == "wind_speed":
        if faults is not None and faults.wind_mps is not None:
            return faults.wind_mps
        return round(max(0.0, 4 + 3 * math.sin(minute / 300) + _noise(point.externallogid, minute)), 2)
    return 0.0


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
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SimulatedBms:
        self.thread = threading.Thread(target=self.server.serve_forever, name="simulated-bms", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def records(self, point: SimPoint, start: datetime, end: datetime, now: datetime) -> list[dict]:
        f = self.faults
        newest = min(end, now - f.lag)
        t = (start.astimezone(UTC) + timedelta(seconds=59)).replace(second=0, microsecond=0)
        out = []
        while t <= newest:
            local = (t + f.skew).astimezone(DANISH_TIME)
            if f.tzinfo == "offset":
                tz_text = local.strftime("%z")
                tz_text = tz_text[:3] + ":" + tz_text[3:]
            else:
                tz_text = "Europe/Copenhagen" if f.tzinfo == "name" else None
            out.append({"externallogid": point.externallogid, "timestamp": local.strftime("%Y-%m-%d %H:%M:%S"),
                        "timestamp_tzinfo": tz_text, "value": value_at(point, t, f)})
            t += timedelta(minutes=1)
        if f.partial and len(out) > 3:
            third = len(out) // 3
            out = out[:third] + out[2 * third:]
        if f.duplicates:
            out = out + out[::7]
        if f.shuffled:
            for i in range(0, len(out) - 1, 2):  # neighbours swapped: out of order, passes of a DST hour kept
                out[i], out[i + 1] = out[i + 1], out[i]
        return out

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        bms = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: str, content_type: str = "application/json",
                      headers: dict | None = None) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
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

            def _serve(self, fault: str | None) -> None:
                if bms.faults.latency_s:
                    time.sleep(bms.faults.latency_s)
                if fault == "timeout":
                    time.sleep(3)
                    return self._send(200, "[]")
                allowed = {f"Basic {bms.credentials}"} | ({f"Bearer {bms.bearer_token}"} if bms.bearer_token else set())
                if self.headers.get("Authorization") not in allowed or fault == "401":
                    return self._send(401, '{"detail": "Unauthorized"}', headers={"WWW-Authenticate": "Basic"})
                if fault == "429":
                    return self._send(429, '{"detail": "slow down"}', headers={"Retry-After": "1"})
                if fault == "503":
                    return self._send(503, "Service Unavailable", "text/plain")
                if fault == "html":
                    return self._send(200, "<!DOCTYPE html><html><form>Log in</form></html>", "text/html")
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
                records = bms.records(point, start, end, bms.now())
                return self._send(200, json.dumps(records))

        return Handler
