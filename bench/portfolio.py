"""The central store at portfolio scale: many sites' esus lines in one InfluxDB 1.x (Debian's 1.6).

    .venv/bin/python bench/portfolio.py [--sites 1000] [--days 7] [--repeat 20]

1. Ingest: the telemetry module's own lines (tests/site_day.py: every measurement, at the cadence
   the service writes them) for each site and day up to now, the site tag varied, posted to /write
   by two clients (5,000-line requests, as the writer sends). Prints lines/s.
2. Disk: once the shards are cold and compacted, bytes per site-day and the site-year extrapolated.
3. Queries: every query of the portfolio dashboard, expanded as Grafana does with every site chosen
   (All), over the last hour and the last 24 hours: p50/p95 of `--repeat` runs each.
4. Reconnects: 1,000 writers lose the central server together for 10 minutes and retry with the
   writer's own backoff (esus.state.influx.retry_delay_s); prints the busiest second's share of sites.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from queue import Queue

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from esus.state.influx import BATCH_LINES, retry_delay_s  # noqa: E402
from esus.state.telemetry import line  # noqa: E402
from tests.grafana_macros import expand  # noqa: E402
from tests.influx1 import InfluxV1  # noqa: E402
from tests.site_day import site_day  # noqa: E402

TEMPLATE_SITE = "templatesite"
DATABASE = "esus"
WRITERS = 2


def template_days(end: datetime, days: int) -> list[str]:
    """One site's lines for each day up to `end`, each day one newline-joined text."""
    out = []
    for d in range(days, 0, -1):
        lines = site_day(TEMPLATE_SITE, end - timedelta(days=d), scale=1.0)
        out.append([text for text in lines if int(text.rsplit(" ", 1)[1]) <= end.timestamp() * 1000])
    return ["\n".join(day) for day in out]


def site_name(n: int) -> str:
    return f"site{n:04d}"


def ingest(influx: InfluxV1, days: list[str], sites: int) -> tuple[int, float]:
    """Every site's days through /write in BATCH_LINES requests by WRITERS threads: (lines, seconds)."""
    work: Queue[str | None] = Queue(maxsize=8)
    errors: list[str] = []

    def writer() -> None:
        while (body := work.get()) is not None:
            try:
                influx.write(DATABASE, [body])
            except RuntimeError as exc:
                errors.append(str(exc))
    threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    total, started = 0, time.perf_counter()
    day_lines = [text.split("\n") for text in days]
    for n in range(sites):
        for lines in day_lines:
            for i in range(0, len(lines), BATCH_LINES):
                chunk = "\n".join(lines[i:i + BATCH_LINES])
                work.put(chunk.replace(f"site={TEMPLATE_SITE}", f"site={site_name(n)}"))
                total += min(BATCH_LINES, len(lines) - i)
        if n % 100 == 99:
            print(f"  {n + 1} sites, {total:,} lines, {total / (time.perf_counter() - started):,.0f} lines/s",
                  flush=True)
    for _ in threads:
        work.put(None)
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} writes failed, first: {errors[0]}")
    return total, time.perf_counter() - started


def settle(influx: InfluxV1, timeout_s: float = 600) -> int:
    """Wait until the WAL has been written to TSM files and the size stops changing; the bytes."""
    last, stable_since, deadline = -1, time.monotonic(), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        wal = sum(p.stat().st_size for p in (influx.root / "wal").rglob("*.wal"))
        size = influx.disk_bytes()
        if size != last:
            last, stable_since = size, time.monotonic()
        elif wal == 0 or time.monotonic() - stable_since > 60:
            return size
        time.sleep(5)
    return last


def portfolio_queries() -> list[tuple[str, str, str | None]]:
    """(name, query, the panel's minimum interval) of each query of the portfolio board."""
    board = json.loads((ROOT / "grafana" / "dashboards" / "esus-portfolio.json").read_text())
    return [(f"{panel['title'][:40]} [{t['refId']}]", t["query"], panel.get("interval")) for panel in board["panels"]
            for t in panel["targets"]]


def live_minute(influx: InfluxV1, sites: int) -> int:
    """Every site writes its power now, as live sites do (ingest and settling took minutes)."""
    now = datetime.now(UTC)
    lines = [line("power", {"input_kw": 10.0 + n % 50}, now, None, site_name(n)) for n in range(sites)]
    influx.write(DATABASE, [text for text in lines if text])
    return int(now.timestamp() * 1000)


def time_queries(influx: InfluxV1, sites: int, end_ms: int, repeat: int) -> None:
    chosen = [site_name(n) for n in range(sites)]
    for window_h in (1, 24):
        start_ms = end_ms - window_h * 3_600_000
        print(f"\nportfolio queries, all {sites} sites, last {window_h} h: p50 / p95 of {repeat} runs (s), rows")
        for name, query, min_interval in portfolio_queries():
            text = expand(query, start_ms, end_ms, {"site": chosen}, min_interval=min_interval)
            times, rows = [], 0
            for _ in range(repeat):
                t0 = time.perf_counter()
                results = influx.query(text, DATABASE)
                times.append(time.perf_counter() - t0)
                rows = sum(len(s["values"]) for r in results for s in r.get("series", []))
            times.sort()
            p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
            print(f"  {name:<48} {statistics.median(times):6.3f} {p95:6.3f}  {rows}")


def reconnects(sites: int = 1000, outage_s: float = 600.0, seed: int = 1) -> tuple[int, float]:
    """Sites that lose the server at t=0 (each mid-way in its minute of sending) retry with the
    writer's backoff; the first attempt at or after `outage_s` succeeds. The busiest second."""
    rng = random.Random(seed)
    returns = []
    for _ in range(sites):
        t, failures = rng.uniform(0, 60), 0     # its next send after the server went away
        while t < outage_s:
            failures += 1
            t += max(1.0, retry_delay_s(failures, rng.uniform))   # and at least a second apart
        returns.append(int(t))
    busiest, count = Counter(returns).most_common(1)[0]
    return count, busiest - outage_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--index", choices=("inmem", "tsi1"), default="tsi1")
    args = parser.parse_args()

    count, after_s = reconnects()
    print(f"reconnects: 1000 writers back after a 10-minute outage; the busiest second ({after_s:+.0f} s after "
          f"the server returned) holds {count} sites = {count / 10:.1f} % (goal <= 5 %)")

    end = datetime.now(UTC).replace(second=0, microsecond=0)
    t0 = time.perf_counter()
    days = template_days(end, args.days)
    per_site = sum(text.count("\n") + 1 for text in days)
    print(f"\n{args.sites} sites x {args.days} days: {per_site:,} lines a site ({per_site / args.days:,.0f} a "
          f"site-day), {per_site * args.sites:,} in all (template built in {time.perf_counter() - t0:.1f} s)")
    with tempfile.TemporaryDirectory(prefix="esus-portfolio-") as tmp:
        influx = InfluxV1(Path(tmp), index=args.index, cold="10s", cold_full="30s").start()
        try:
            influx.create_database(DATABASE)
            total, seconds = ingest(influx, days, args.sites)
            print(f"ingest: {total:,} lines in {seconds:.0f} s = {total / seconds:,.0f} lines/s "
                  f"({WRITERS} clients, {BATCH_LINES}-line requests, index {args.index})")
            size = settle(influx)
            tsm = influx.disk_bytes("*.tsm")
            site_days = args.sites * args.days
            print(f"disk at rest: {size / 1e6:,.0f} MB = {size / site_days / 1e3:,.1f} kB per site-day = "
                  f"{size / site_days * 365 / 1e6:.1f} MB per site-year (goal <= 50 MB); of it the data "
                  f"(TSM) {tsm / site_days / 1e3:,.1f} kB per site-day, the rest the series index")
            time_queries(influx, args.sites, live_minute(influx, args.sites), args.repeat)
        finally:
            influx.stop()


if __name__ == "__main__":
    main()
