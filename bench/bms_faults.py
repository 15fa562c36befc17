"""A BMS that misbehaves: how long one request takes and how much memory it costs, per fault.

Each case runs in a fresh process (so its peak RSS is its own) against the simulated BMS on
127.0.0.1 with the fault switched on; the request uses the service's defaults (30-s deadline,
4-MB limit, 10-s socket timeout) unless --deadline-s says otherwise. Prints one row per case:
wall time of the request, RSS before, peak RSS growth, and what the transport said.

    python bench/bms_faults.py            # every case
    python bench/bms_faults.py trickle    # one
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bms_wrapper.adapters import AauBmsV1  # noqa: E402
from bms_wrapper.simulator import SimPoint, SimulatedBms  # noqa: E402
from bms_wrapper.transport import BasicAuth, BmsError, Transport  # noqa: E402

CASES = ["normal", "trickle", "silent", "flood", "huge", "500", "401", "malformed", "empty"]
POINT = SimPoint(6397, "Rum 1.213/TRU01_Rum Temp", "temperature")
WEEK = (datetime(2026, 6, 3, 12, tzinfo=UTC), datetime(2026, 6, 10, 12, tzinfo=UTC))


def rss_mb() -> float:
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    return float("nan")


def one_case(case: str, deadline_s: float) -> dict:
    server = SimulatedBms([POINT], "esus", "pw").start()
    server.faults.trickle_s = 1.0
    if case != "normal":
        server.faults.next_requests.extend([case] * 10)
    transport = Transport(server.url, BasicAuth("esus", "pw"), read_timeout_s=10.0, deadline_s=deadline_s)
    adapter = AauBmsV1(transport)
    before = rss_mb()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    try:
        said = f"{len(adapter.read_history(str(POINT.externallogid), *WEEK))} samples"
    except BmsError as exc:
        said = f"{exc.cause}: {exc}"
    took = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    transport.close()
    server.stop()
    return {"case": case, "seconds": took, "rss_mb": before, "peak_growth_mb": max(0.0, peak - peak_before),
            "said": said}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="*", default=CASES, help=f"any of {', '.join(CASES)} (default: all)")
    parser.add_argument("--deadline-s", type=float, default=30.0, help="the request deadline (default 30)")
    parser.add_argument("--one", help=argparse.SUPPRESS)   # the child process's case
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_case(args.one, args.deadline_s)))
        return
    print(f"{'case':<10} {'request s':>9} {'RSS MB':>7} {'peak +MB':>8}  what the transport said")
    for case in args.cases:
        out = subprocess.run([sys.executable, __file__, "--one", case, "--deadline-s", str(args.deadline_s)],
                             capture_output=True, text=True, check=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        print(f"{row['case']:<10} {row['seconds']:>9.2f} {row['rss_mb']:>7.0f} {row['peak_growth_mb']:>8.1f}  "
              f"{row['said'][:110]}")


if __name__ == "__main__":
    main()
