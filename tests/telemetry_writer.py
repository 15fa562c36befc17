"""Helper process for the outbox kill -9 test: keeps power samples the way the service does and
reports each one on stdout once `keep` has returned."""

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from esus.state.outbox import Outbox
from esus.state.store import HistoryStore
from esus.state.telemetry import Telemetry, line

state, start = Path(sys.argv[1]), int(sys.argv[2])
telemetry = Telemetry(Outbox(HistoryStore(state / "history.db")), "t")
t0 = datetime(2026, 1, 1, tzinfo=UTC)
n = start
while True:
    at = t0 + timedelta(minutes=n)
    telemetry.keep({"power.input_kw": [(at, float(n))]}, [line("power", {"input_kw": float(n)}, at, None, "t")])
    print(n, flush=True)
    n += 1
