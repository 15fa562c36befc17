"""BMS backfill: 171 points x 1 and 7 days of 1-minute samples from the simulated API with 200 ms
latency per request (the reply is made within it, as a server's would be), esus (pooled keep-alive
session, 8 requests in flight, one request per point for up to 8 days, decoding off the request
slots) against the upstream approach (one request at a time, a new connection each).
Both list the points first, as each does before its backfill. Two baselines:
- "upstream": what the upstream wrapper (falkecarlsen/esus-tmv23, bms_api_build_aau_dk_v1.py) did
  with each reply: `pd.read_json`, then `pd.concat` onto everything fetched so far;
- "sequential": the same requests, decoded by esus's own code: the floor of any one-at-a-time client.
Beside them, the same points and days from a Project Haystack server (tests/haystack_server.py, the
same 200 ms per request, SCRAM sign-in, Zinc), read by esus's Haystack adapter one point per hisRead
and 8 points per hisRead (Haystack 4's batch read).
The simulated servers run in their own processes; each case runs in a fresh process, whose peak RSS
is reported. Prints wall time, speed-up and peak memory of each.

    .venv/bin/python bench/bms_backfill.py [--days 1 7] [--skip-upstream] [--skip-haystack] [--handshake-ms 200]

With --handshake-ms, a new connection also costs that long before its first request is read (the
TCP and TLS set-up round trips of a real network, which loopback does not have): the cost that
keep-alive saves and the upstream paid on every request.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import multiprocessing
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bms_wrapper.adapters import AauBmsV1  # noqa: E402
from bms_wrapper.haystack import Haystack, HaystackAuth  # noqa: E402
from bms_wrapper.poller import PointRef, backfill, resolve_points  # noqa: E402
from bms_wrapper.samples import normalise  # noqa: E402
from bms_wrapper.simulator import DANISH_TIME, Faults, SimPoint, SimulatedBms  # noqa: E402
from bms_wrapper.transport import BasicAuth, Transport  # noqa: E402

KINDS = ["temperature", "co2", "setpoint_heating", "irradiance", "wind_speed"]
POINTS = [SimPoint(10_000 + i, f"/bench/point_{i}", KINDS[i % len(KINDS)]) for i in range(171)]


def esus_way(url: str, start: datetime, end: datetime) -> int:
    adapter = AauBmsV1(Transport(url, BasicAuth("esus", "pw"), max_in_flight=8))
    configured = [PointRef(str(p.externallogid), p.source, "r", p.kind) for p in POINTS]
    refs, _ = resolve_points(configured, adapter.list_points())
    count = 0
    for _, samples in backfill(adapter, refs, start, end):
        count += len(samples)  # a CSV writer or the store would take them here, then let them go
    adapter.transport.close()
    return count


def haystack_way(url: str, start: datetime, end: datetime, batch: bool = True) -> int:
    """The same points from a Project Haystack server: SCRAM sign-in, then hisRead in Zinc, 8 points
    per request where `batch` (Haystack 4's batch read), else one point per request."""
    adapter = Haystack(Transport(url, HaystackAuth(url, "esus", "pw"), max_in_flight=8))
    adapter.batch_reads = batch
    configured = [PointRef(f"p:bench:{p.externallogid}", p.source, "r", p.kind) for p in POINTS]
    refs, _ = resolve_points(configured, adapter.list_points())
    count = 0
    for _, samples in backfill(adapter, refs, start, end):
        count += len(samples)
    adapter.transport.close()
    return count


def _one_at_a_time(url: str, start: datetime, end: datetime, decode: Callable[[str, str], int]) -> int:
    """One request per point, sequential, a new connection each, after the point list."""
    requests.get(f"{url}/api/v1/metadata", auth=("esus", "pw")).json()
    count = 0
    params = {"starttime": start.astimezone(DANISH_TIME).strftime("%Y-%m-%d %H:%M:%S"),
              "endtime": end.astimezone(DANISH_TIME).strftime("%Y-%m-%d %H:%M:%S")}
    for point in POINTS:
        reply = requests.get(f"{url}/api/v1/trenddata", params={**params, "externallogid": point.externallogid},
                             auth=("esus", "pw"), headers={"Connection": "close"})
        count = decode(reply.text, str(point.externallogid))
    return count


def upstream_way(url: str, start: datetime, end: datetime) -> int:
    """As the upstream wrapper did with each reply: read_json, then concat onto all so far."""
    import pandas as pd  # imported by run_case before the clock starts; only this case's memory counts it
    frames = pd.DataFrame()

    def decode(text: str, _: str) -> int:
        nonlocal frames
        frames = pd.concat([frames, pd.read_json(StringIO(text), orient="records")])
        return len(frames)
    return _one_at_a_time(url, start, end, decode)


def sequential_way(url: str, start: datetime, end: datetime) -> int:
    count = 0

    def decode(text: str, point: str) -> int:
        nonlocal count
        count += len(normalise(json.loads(text), point, "", DANISH_TIME))
        return count
    return _one_at_a_time(url, start, end, decode)


def serve(port: int, handshake_s: float) -> None:
    faults = Faults(latency_s=0.2, handshake_s=handshake_s)
    SimulatedBms(POINTS, "esus", "pw", faults=faults, port=port).start().thread.join()


def serve_haystack(port: int) -> None:
    from tests.haystack_server import HaystackFaults, HaystackPoint, HaystackServer

    points = [HaystackPoint(f"p:bench:{p.externallogid}", p.source, p.kind, p.externallogid) for p in POINTS]
    server = HaystackServer(points, "esus", "pw", faults=HaystackFaults(latency_s=0.2), port=port).start()
    threading.Event().wait()
    server.stop()


def run_case(name: str, url: str, days: float, end: datetime, queue: multiprocessing.Queue) -> None:
    fn = {"esus": esus_way, "upstream": upstream_way, "sequential": sequential_way, "haystack-batch": haystack_way,
          "haystack": functools.partial(haystack_way, batch=False)}[name]
    if name == "upstream":
        importlib.import_module("pandas")
    started = time.perf_counter()
    count = fn(url, end - timedelta(days=days), end)
    queue.put((time.perf_counter() - started, count, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def measure(name: str, url: str, days: float, end: datetime) -> tuple[float, int, float]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=run_case, args=(name, url, days, end, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=float, nargs="+", default=[1, 7])
    parser.add_argument("--skip-upstream", action="store_true")
    parser.add_argument("--skip-haystack", action="store_true")
    parser.add_argument("--handshake-ms", type=float, default=0.0)
    args = parser.parse_args()
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    port, haystack_port = free_port(), free_port()
    spawn = multiprocessing.get_context("spawn")
    server = spawn.Process(target=serve, args=(port, args.handshake_ms / 1000), daemon=True)
    haystack_server = spawn.Process(target=serve_haystack, args=(haystack_port,), daemon=True)
    server.start()
    haystack_server.start()
    url, haystack_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{haystack_port}/api/demo"
    time.sleep(3)
    try:
        print(f"{len(POINTS)} points, 200 ms latency per request, {args.handshake_ms:g} ms more per new connection, "
              "simulated BMS in its own process")
        for days in args.days:
            t_esus, n_esus, m_esus = measure("esus", url, days, end)
            line = f"{days:g} day(s): esus {t_esus:6.1f} s for {n_esus:,} samples, peak RSS {m_esus:4.0f} MB"
            if not args.skip_upstream:
                for baseline in ("upstream", "sequential"):
                    t_base, _, m_base = measure(baseline, url, days, end)
                    line += (f"\n    {baseline:<14} {t_base:6.1f} s, peak RSS {m_base:4.0f} MB: "
                             f"esus is {t_base / t_esus:4.1f}x faster")
            if not args.skip_haystack:
                for way in ("haystack", "haystack-batch"):
                    t_way, n_way, m_way = measure(way, haystack_url, days, end)
                    line += (f"\n    {way:<14} {t_way:6.1f} s for {n_way:,} samples, peak RSS {m_way:4.0f} MB: "
                             f"{t_way / t_esus:4.2f}x the AAU adapter's time")
            print(line, flush=True)
    finally:
        server.terminate()
        haystack_server.terminate()


if __name__ == "__main__":
    main()
