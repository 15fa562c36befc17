"""Samples kept in the history store reach the outbox exactly once, whatever instant a kill lands on:
a sample and its line are one transaction in one file (esus.state.telemetry). A state directory of
release 0.1 (history.db with a relay table, outbox.db with lines waiting) is taken over at start
with nothing lost and nothing twice."""

from __future__ import annotations

import os
import random
import sqlite3
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from esus.state.outbox import Outbox
from esus.state.sqlite import move_aside
from esus.state.store import HistoryStore
from esus.state.telemetry import IntervalEnds, Telemetry, line

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SERIES = "power.input_kw"


def open_telemetry(state: Path) -> Telemetry:
    return Telemetry(Outbox(HistoryStore(state / "history.db")), "t")


def close(telemetry: Telemetry) -> None:
    telemetry.outbox.store.close()
    telemetry.store.close()


def keep(telemetry: Telemetry, n: int) -> None:
    at = T0 + timedelta(minutes=n)
    telemetry.keep({SERIES: [(at, float(n))]}, [line("power", {"input_kw": float(n)}, at, None, "t")])


def outbox_times(outbox: Outbox) -> list[int]:
    """Epoch seconds of every power line waiting in the outbox, duplicates included."""
    batch = outbox.oldest(10**9)
    return [int(text.rsplit(" ", 1)[1]) // 1000 for text in batch.lines] if batch else []


def stored_times(store: HistoryStore) -> list[int]:
    return store.range(SERIES, 0, 2**40)[0].tolist()


def test_a_sample_and_its_line_are_one_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    telemetry = open_telemetry(tmp_path)
    keep(telemetry, 0)
    commits = []
    real = telemetry.store.transaction

    def counted():  # type: ignore[no-untyped-def]
        commits.append(1)
        return real()
    monkeypatch.setattr(telemetry.store, "transaction", counted)
    keep(telemetry, 1)
    assert len(commits) == 1
    close(telemetry)


def test_a_failure_inside_the_transaction_keeps_neither(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    telemetry = open_telemetry(tmp_path)
    keep(telemetry, 0)

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed after the sample, before its line")
    monkeypatch.setattr(telemetry.store, "insert_samples", lambda conn, rows: (real_insert(conn, rows), killed()))
    real_insert = HistoryStore.insert_samples.__get__(telemetry.store)
    with pytest.raises(KeyboardInterrupt):
        keep(telemetry, 1)
    monkeypatch.undo()
    assert stored_times(telemetry.store) == outbox_times(telemetry.outbox) == [T0.timestamp()]
    assert telemetry.outbox.depth == 1
    keep(telemetry, 2)   # the connection is usable again (the transaction was rolled back)
    assert stored_times(telemetry.store) == outbox_times(telemetry.outbox) == [T0.timestamp(), T0.timestamp() + 120]
    close(telemetry)


def release_01_state(state: Path, waiting: int, relayed_not_taken: int, taken_not_forgotten: int) -> None:
    """What release 0.1 left after a kill: lines waiting in outbox.db, and in history.db's relay
    table lines the outbox had taken (up to its mark) and lines it had not."""
    state.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(state / "outbox.db") as old:
        old.executescript("""
            CREATE TABLE lines (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL);
            CREATE TABLE dead (id INTEGER PRIMARY KEY, line TEXT NOT NULL, status INTEGER NOT NULL,
                               message TEXT NOT NULL, at INTEGER NOT NULL);
            CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            CREATE TABLE marks (name TEXT PRIMARY KEY, value INTEGER NOT NULL);""")
        old.executemany("INSERT INTO lines(line) VALUES (?)",
                        [(line("power", {"input_kw": float(n)}, T0 + timedelta(minutes=n), None, "t"),)
                         for n in range(waiting + taken_not_forgotten)])
        old.execute("INSERT INTO dead VALUES (1, 'bad line', 400, 'unparsable', 0)")
        old.execute("INSERT INTO counters VALUES ('sent', 500), ('dead', 1)")
        old.execute("INSERT INTO marks VALUES ('relay.abc', ?)", (taken_not_forgotten,))
    with sqlite3.connect(state / "history.db") as history:
        history.execute("CREATE TABLE relay (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL)")
        history.execute("CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated INTEGER NOT NULL)")
        history.execute("INSERT INTO state VALUES ('store.identity', '\"abc\"', 0)")
        first = waiting
        history.executemany("INSERT INTO relay(id, line) VALUES (?, ?)",
                            [(i + 1, line("power", {"input_kw": float(n)}, T0 + timedelta(minutes=n), None, "t"))
                             for i, n in enumerate(range(first, first + taken_not_forgotten + relayed_not_taken))])


def test_a_release_01_state_directory_is_taken_over_with_nothing_lost_or_twice(tmp_path: Path) -> None:
    release_01_state(tmp_path, waiting=5, relayed_not_taken=3, taken_not_forgotten=2)
    telemetry = open_telemetry(tmp_path)
    assert telemetry.outbox.take_over(tmp_path / "outbox.db") == 10
    expected = [int(T0.timestamp()) + 60 * n for n in range(10)]
    assert outbox_times(telemetry.outbox) == expected and telemetry.outbox.depth == 10
    assert telemetry.outbox.dead_letters() == [("bad line", 400, "unparsable")]
    assert telemetry.outbox.counter("sent") == 500
    assert not (tmp_path / "outbox.db").exists()
    with telemetry.store.reading() as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'relay'").fetchone() is None
    assert telemetry.outbox.take_over(tmp_path / "outbox.db") == 0
    close(telemetry)


def test_a_kill_after_the_take_over_committed_takes_nothing_twice(tmp_path: Path) -> None:
    release_01_state(tmp_path, waiting=4, relayed_not_taken=1, taken_not_forgotten=0)
    old_file = (tmp_path / "outbox.db").read_bytes()
    telemetry = open_telemetry(tmp_path)
    assert telemetry.outbox.take_over(tmp_path / "outbox.db") == 5
    (tmp_path / "outbox.db").write_bytes(old_file)   # killed after the commit, before the old file went
    assert telemetry.outbox.take_over(tmp_path / "outbox.db") == 0
    assert outbox_times(telemetry.outbox) == [int(T0.timestamp()) + 60 * n for n in range(5)]
    assert not (tmp_path / "outbox.db").exists()
    close(telemetry)


def test_a_damaged_old_outbox_is_moved_aside_and_the_service_starts(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "outbox.db").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    telemetry = open_telemetry(tmp_path)
    assert telemetry.outbox.take_over(tmp_path / "outbox.db") == 0
    assert "outbox.db is damaged" in caplog.text and not (tmp_path / "outbox.db").exists()
    assert list(tmp_path.glob("outbox.db.corrupt-*"))
    keep(telemetry, 0)
    close(telemetry)


@pytest.mark.slow
def test_kill_9_at_random_moments_keeps_every_sample_line_exactly_once(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    writer = [sys.executable, str(Path(__file__).parent / "telemetry_writer.py"), str(tmp_path)]
    rng = random.Random(11)
    reported: list[int] = []
    for _ in range(10):
        start = max(reported, default=-1) + 1
        process = subprocess.Popen(writer + [str(start + 1000)], stdout=subprocess.PIPE, text=True, env=env)
        first = process.stdout.readline()
        assert first.strip(), "writer did not start"
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        reported += [int(n) for n in (first + process.stdout.read()).split()]
        process.wait()
        telemetry = open_telemetry(tmp_path)
        stored, sent = stored_times(telemetry.store), outbox_times(telemetry.outbox)
        close(telemetry)
        assert sorted(sent) == stored, f"{len(set(stored) - set(sent))} missing, {len(sent) - len(set(sent))} twice"
        expected = {int(T0.timestamp()) + 60 * n for n in reported}
        assert expected <= set(stored), "a sample reported kept is not in the store"
    assert len(reported) > 20


def test_each_interval_end_is_said_once_and_none_at_the_first_tick() -> None:
    ends = IntervalEnds()
    t0 = datetime(2026, 6, 22, 12, 7, 30, tzinfo=UTC)
    said = [ends.ended(t0 + timedelta(seconds=s)) for s in range(0, 3600, 20)]
    assert [t for t in said if t is not None] == [datetime(2026, 6, 22, 12, q, tzinfo=UTC) for q in (15, 30, 45)] + \
        [datetime(2026, 6, 22, 13, 0, tzinfo=UTC)]
    # a stalled process said the last end it missed, once
    assert ends.ended(t0 + timedelta(hours=3)) == datetime(2026, 6, 22, 15, 0, tzinfo=UTC)
    assert ends.ended(t0 + timedelta(hours=3, seconds=1)) is None
