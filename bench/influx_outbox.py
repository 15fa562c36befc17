"""Outbox figures: the cost of committing a line, points per second drained to a local
time-series server (victoria-metrics, InfluxDB's /api/v2/write), and memory against depth.

    .venv/bin/python bench/influx_outbox.py [--points N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from esus.state.influx import InfluxWriter  # noqa: E402
from esus.state.outbox import Outbox  # noqa: E402
from esus.service import resident_mb  # noqa: E402
from esus.state.telemetry import line  # noqa: E402
from tests.test_influx import sender_for  # noqa: E402
from tests.tsdb import VictoriaMetrics  # noqa: E402


def make_lines(n: int) -> list[str]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return [line("bms", {"value": 20.0 + (i % 50) / 10}, t0 + timedelta(seconds=i),
                 tags={"point": str(6000 + i % 171), "room": "1.213", "kind": "temperature", "unit": "C"},
                 site="TMV23") for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=300_000)
    args = parser.parse_args()
    lines = make_lines(args.points)
    with tempfile.TemporaryDirectory() as tmp:
        outbox = Outbox(HistoryStore(Path(tmp) / "outbox.db"))
        rss_empty = resident_mb()
        started = time.perf_counter()
        for i in range(0, len(lines), 60):  # as the service does: a minute's worth per commit
            outbox.put(lines[i:i + 60])
        put_s = time.perf_counter() - started
        single = time.perf_counter()
        for text in lines[:500]:
            outbox.put([text])
        single_s = (time.perf_counter() - single) / 500
        rss_full = resident_mb()
        print(f"enqueue: {len(lines) / put_s:,.0f} lines/s in 60-line commits "
              f"({put_s / len(lines) * 1e6:.1f} us per line); a single-line commit {single_s * 1e3:.2f} ms")
        print(f"memory: {rss_empty:.0f} MB with an empty outbox, {rss_full:.0f} MB with {outbox.depth:,} lines "
              f"waiting ({(Path(tmp) / 'outbox.db').stat().st_size / 1e6:.0f} MB on disk)")
        server = VictoriaMetrics(Path(tmp) / "vm").start()
        try:
            writer = InfluxWriter(outbox, sender_for(server.url).send, clock=None)
            depth = outbox.depth
            started = time.perf_counter()
            peak = rss_full
            while writer.step():
                peak = max(peak, resident_mb() or 0)
            drain_s = time.perf_counter() - started
            print(f"drain to the server: {depth:,} points in {drain_s:.1f} s = {depth / drain_s:,.0f} points/s "
                  f"(batches of {writer.batch_lines}); peak RSS while draining {peak:.0f} MB")
            stored = sum(len(v) for v in server.export('{__name__="bms_value"}').values())
            print(f"server holds {stored:,} distinct points (expected {len(lines):,})")
        finally:
            server.stop()
            outbox.store.close()


if __name__ == "__main__":
    main()
