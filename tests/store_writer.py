"""Helper process for the kill -9 test: writes batches and reports each commit on stdout."""

import sys
from datetime import UTC, datetime, timedelta

from esus.state.store import HistoryStore

path, start_batch = sys.argv[1], int(sys.argv[2])
store = HistoryStore(path)
t0 = datetime(2026, 1, 1, tzinfo=UTC)
batch = start_batch
while True:
    rows = [(t0 + timedelta(minutes=batch * 100 + i), float(batch * 100 + i)) for i in range(100)]
    store.append_many({"power.input_kw": rows, f"other.{batch % 7}": rows[:3]})
    store.set_state("writer.last_batch", batch)
    print(batch, flush=True)
    batch += 1
