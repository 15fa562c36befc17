"""History store figures: write rate, and range reads of 90 days of 1-minute data.

Prints medians of several runs; compare figures within one run (the machine is shared).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from esus.state.outbox import Outbox  # noqa: E402
from esus.state.store import HistoryStore  # noqa: E402
from esus.state.telemetry import Telemetry, line  # noqa: E402

DAYS, SERIES = 90, 20
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore(Path(tmp) / "h.db")
        rows = [(T0 + timedelta(minutes=i), float(i % 997)) for i in range(DAYS * 1440)]
        start = time.perf_counter()
        for s in range(SERIES):
            store.append_many({f"series.{s}": rows})
        bulk = time.perf_counter() - start
        print(f"bulk insert: {SERIES} series x {len(rows)} rows in {bulk:.1f} s "
              f"({SERIES * len(rows) / bulk:,.0f} rows/s)")

        singles = []
        for i in range(200):
            t = time.perf_counter()
            store.append("live.power", T0 + timedelta(minutes=i), 1.0)
            singles.append(time.perf_counter() - t)
        print(f"one-sample commit (synchronous=FULL): median {statistics.median(singles) * 1e3:.2f} ms")

        # what a power write costs in the service: the sample and its InfluxDB line, one commit
        telemetry = Telemetry(Outbox(store), "bench")
        kept = []
        for i in range(200):
            at = T0 + timedelta(minutes=i)
            t = time.perf_counter()
            telemetry.keep({"kept.power": [(at, 1.0)]}, [line("power", {"input_kw": 1.0}, at, None, "bench")])
            kept.append(time.perf_counter() - t)
        print(f"one kept sample (sample + its line, one commit): median {statistics.median(kept) * 1e3:.2f} ms, "
              f"{statistics.median(kept) / statistics.median(singles):.1f}x the plain commit")

        for label, days in (("90 days", 90), ("30 days", 30), ("1 day", 1), ("15 minutes", 15 / 1440)):
            times = []
            for _ in range(7):
                t = time.perf_counter()
                ts, _ = store.range("series.7", T0 + timedelta(days=DAYS - days), T0 + timedelta(days=DAYS))
                times.append(time.perf_counter() - t)
            print(f"range read {label:>10}: {ts.size:>7} rows, median {statistics.median(times) * 1e3:8.2f} ms")
        store.close()
        print(f"file size: {(Path(tmp) / 'h.db').stat().st_size / 1e6:.0f} MB "
              f"for {SERIES * len(rows):,} samples")


if __name__ == "__main__":
    main()
