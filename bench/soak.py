"""Soak: the end-to-end scene of tests/e2e/week.py (BAS, BMS with wind and an outage, occupant,
victoria-metrics going away for an hour, a kill -9 half-way) played for many simulated days.
Prints RSS at the start and end of each service process, CPU seconds per simulated day and as a
share of one core in real time, the BAS's read latency, the outbox's deepest backlog, and the
end-to-end checks.

    .venv/bin/python bench/soak.py [--days 30] [--speed 600]

Goals (issue 8): RSS growth < 10 MB over 30 days, steady RSS <= 250 MB, CPU <= 1 % of a core
averaged in real time (at 1x; at N x the same work is squeezed into 1/N of the time).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.checks import all_checks, figures, read_latency_ms  # noqa: E402
from tests.e2e.week import WATCHED, Week  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--speed", type=float, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        week = Week(Path(tmp), days=args.days, speed=args.speed)
        started = time.monotonic()
        week.play()
        real_s = time.monotonic() - started
        print(figures(week))
        for process in sorted({p for _, p, _ in week.obs.rss_mb}):
            rss = [mb for _, p, mb in week.obs.rss_mb if p == process]
            print(f"process {process}: RSS {rss[0]:.0f} MB at start, {rss[-1]:.0f} MB at the end, "
                  f"max {max(rss):.0f} MB over {len(rss)} hourly samples")
        cpu = sum(week.obs.cpu_s)
        simulated_real_s = args.days * 86400
        print(f"CPU: {cpu / args.days:.1f} s per simulated day = {100 * cpu / simulated_real_s:.3f} % of a core "
              f"at 1x (this run: {100 * cpu / real_s:.0f} % of a core at {args.speed:g}x)")
        median, p99 = read_latency_ms(week)
        print(f"BAS ReadPropertyMultiple of {len(WATCHED)} points: median {median:.1f} ms, p99 {p99:.1f} ms")
        depth = [v for key, samples in week.exported.items() if key[0] == "health_outbox_depth" for _, v in samples]
        print(f"outbox depth: max {max(depth, default=0):.0f} lines (the time-series server was down an hour)")
        for check in all_checks(week):
            print(check.line())


if __name__ == "__main__":
    main()
