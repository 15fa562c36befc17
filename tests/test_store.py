"""History store: round trips, range reads, retention, corruption handling, kill -9 at any moment."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from esus.state.store import HistoryStore

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def minutes(n: int, start: datetime = T0) -> list[tuple[datetime, float]]:
    return [(start + timedelta(minutes=i), float(i)) for i in range(n)]


def test_range_reads_are_half_open_and_ordered(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.db") as store:
        store.append_many({"a": list(reversed(minutes(100))), "b": minutes(5)})
        ts, values = store.range("a", T0 + timedelta(minutes=10), T0 + timedelta(minutes=20))
        assert ts.dtype == np.int64 and values.dtype == np.float64
        assert values.tolist() == [float(i) for i in range(10, 20)]
        assert np.all(np.diff(ts) == 60)
        assert store.range("missing", T0, T0 + timedelta(days=1))[0].size == 0
        assert store.latest("a") == (T0 + timedelta(minutes=99), 99.0)
        assert store.series_names() == ["a", "b"]


def test_writing_the_same_time_twice_keeps_one_sample_the_last(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.db") as store:
        store.append("p", T0, 1.0)
        store.append("p", T0, 2.0)
        store.append_many({"p": minutes(3)})
        _, values = store.range("p", T0, T0 + timedelta(hours=1))
        assert values.tolist() == [0.0, 1.0, 2.0]


def test_naive_times_are_refused(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.db") as store, pytest.raises(ValueError, match="naive"):
        store.append("p", datetime(2026, 1, 1), 1.0)


def test_data_and_state_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with HistoryStore(path) as store:
        store.append_many({"p": minutes(10)})
        store.set_state("shade.east", {"position": 42.5, "hold_until": None})
        store.set_state("bms.hwm.6023", "2026-03-01T00:00:00+00:00")
    with HistoryStore(path) as store:
        assert store.range("p", T0, T0 + timedelta(days=1))[1].size == 10
        assert store.get_state("shade.east") == {"position": 42.5, "hold_until": None}
        assert store.get_state("nothing", "default") == "default"
        assert store.state_items("bms.hwm.") == {"bms.hwm.6023": "2026-03-01T00:00:00+00:00"}
        store.delete_state("shade.east")
        assert store.get_state("shade.east") is None


def test_prune_keeps_the_recent_part_of_every_series(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.db") as store:
        store.append_many({"a": minutes(1000), "b": minutes(10)})
        deleted = store.prune(T0 + timedelta(minutes=500))
        assert deleted == 500 + 10
        ts, _ = store.range("a", T0, T0 + timedelta(days=10))
        assert ts.size == 500 and ts[0] == int((T0 + timedelta(minutes=500)).timestamp())


def test_ninety_days_of_minutes_read_back_whole(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.db") as store:
        store.append_many({"power.input_kw": minutes(90 * 1440), "other": minutes(90 * 1440)})
        ts, values = store.range("power.input_kw", T0, T0 + timedelta(days=90))
        assert ts.size == 90 * 1440 and values[-1] == 90 * 1440 - 1


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "history.db"
    path.write_bytes(b"this is not sqlite" * 100)
    (tmp_path / "keep-me.txt").write_text("unrelated")
    with HistoryStore(path) as store:
        store.append("p", T0, 1.0)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("history.db.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not sqlite")
    assert (tmp_path / "keep-me.txt").exists()
    assert "history.db is damaged" in caplog.text and "moved it to" in caplog.text


def test_a_damaged_database_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with HistoryStore(path) as store:
        store.append_many({f"s{i}": minutes(2000) for i in range(5)})
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    for offset in range(4096 * 3, len(data) - 4096, 4096 * 5):  # scribble over interior pages
        data[offset + 8: offset + 400] = os.urandom(392)
    path.write_bytes(bytes(data))
    with HistoryStore(path) as store:
        assert store.series_names() == []
    assert any(p.name.startswith("history.db.corrupt-") for p in tmp_path.iterdir())


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_no_committed_row(tmp_path: Path) -> None:
    """A writer process is killed mid-write again and again; every batch it reported is there."""
    path = tmp_path / "history.db"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    writer = [sys.executable, str(Path(__file__).parent / "store_writer.py"), str(path)]
    rng = random.Random(7)
    committed, next_batch = [], 0
    for _ in range(8):
        process = subprocess.Popen(writer + [str(next_batch)], stdout=subprocess.PIPE, text=True, env=env)
        first = process.stdout.readline()  # wait until it writes at all
        assert first.strip(), "writer did not start"
        time.sleep(rng.uniform(0.0, 0.4))
        process.send_signal(signal.SIGKILL)
        output = first + process.stdout.read()
        process.wait()
        reported = [int(line) for line in output.split()]
        committed.extend(reported)
        next_batch = reported[-1] + 1 if reported else next_batch
        with HistoryStore(path) as store:
            assert store.integrity(thorough=True) == "ok"
            ts, values = store.range("power.input_kw", 0, 2**40)
            present = set(values.astype(int).tolist())
            for batch in committed:
                assert all(batch * 100 + i in present for i in range(100)), f"batch {batch} lost"
            last = store.get_state("writer.last_batch")
            assert last is not None and last >= committed[-1]
    assert not any(p.name.startswith("history.db.corrupt-") for p in tmp_path.iterdir())
    assert len(committed) > 8
