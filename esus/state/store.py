"""History store: time series, small state and the InfluxDB outbox in one SQLite file (WAL).

Series are kept as (series id, UTC epoch seconds, value) in a clustered primary key, so a range
read of one series is one index scan. Every write is a transaction with synchronous=FULL: a
`kill -9` or a power cut loses nothing that was committed. A sample and its InfluxDB line are
committed in one transaction (`esus.state.telemetry`), which is why the outbox lives in this file.
A file that SQLite cannot read is moved aside (never deleted) and a fresh one started.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from esus.state.files import set_aside
from esus.state.sqlite import CorruptStoreError, connect, connect_readonly, damage, integrity, transaction

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS samples (
    series INTEGER NOT NULL REFERENCES series(id),
    ts INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (series, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated INTEGER NOT NULL
);
"""

Rows = Mapping[str, Iterable[tuple[datetime | float, float]]]


def epoch_s(t: datetime | float | int) -> int:
    """UTC epoch seconds of an aware datetime (or a number already in epoch seconds)."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError("naive datetime: the store takes aware UTC times only")
        return int(t.timestamp())
    return int(t)


def _check(conn: sqlite3.Connection) -> None:
    result = integrity(conn)
    if result != "ok":
        raise CorruptStoreError(result)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise CorruptStoreError(f"schema version {version} is newer than this esus ({SCHEMA_VERSION})")


class HistoryStore:
    """Thread-safe; one connection per process. Other processes may open the same file to read."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._series: dict[str, int] = {}
        self._conn = connect_readonly(self.path) if readonly else self._open_or_replace()
        for sid, name in self._conn.execute("SELECT id, name FROM series"):
            self._series[name] = sid

    def _open_or_replace(self) -> sqlite3.Connection:
        conn = None
        try:
            why = damage(self.path)
            if why is not None and (why == "zero length" or why.startswith("the file is gone")):
                raise CorruptStoreError(why)   # SQLite would start afresh without a word
            conn = connect(self.path)
            _check(conn)
        except (sqlite3.DatabaseError, CorruptStoreError) as exc:
            if conn is not None:
                conn.close()
            set_aside(self.path, str(exc), "its samples, high-water marks and state, and the InfluxDB lines "
                                           "still waiting in it (samples come again from the BMS and the BAS)")
            conn = connect(self.path)
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def integrity(self, thorough: bool = False) -> str:
        """'ok', or what SQLite found damaged (thorough: the full integrity_check)."""
        with self._lock:
            return integrity(self._conn, thorough)

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction on this file (the outbox writes its lines in the same one)."""
        try:
            with transaction(self._conn, self._lock) as conn:
                yield conn
        except BaseException:
            with self._lock:   # series created in the rolled-back transaction are gone again
                self._series = dict((name, sid) for sid, name in self._conn.execute("SELECT id, name FROM series"))
            raise

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, for reads, held for this thread alone."""
        with self._lock:
            yield self._conn

    def _series_id(self, conn: sqlite3.Connection, name: str) -> int:
        sid = self._series.get(name)
        if sid is None:
            conn.execute("INSERT OR IGNORE INTO series(name) VALUES (?)", (name,))
            sid = conn.execute("SELECT id FROM series WHERE name = ?", (name,)).fetchone()[0]
            self._series[name] = sid
        return sid

    # -- time series ---------------------------------------------------------------------------

    def append(self, series: str, t: datetime | float, value: float) -> None:
        self.append_many({series: [(t, value)]})

    def append_many(self, rows: Rows) -> int:
        """Insert or overwrite samples of several series in one transaction; returns the count."""
        with self.transaction() as conn:
            return self.insert_samples(conn, rows)

    def insert_samples(self, conn: sqlite3.Connection, rows: Rows) -> int:
        """The inserts of `append_many`, inside a transaction the caller holds."""
        count = 0
        for name, samples in rows.items():
            sid = self._series_id(conn, name)
            batch = [(sid, epoch_s(t), float(v)) for t, v in samples]
            conn.executemany(
                "INSERT INTO samples(series, ts, value) VALUES (?, ?, ?) "
                "ON CONFLICT(series, ts) DO UPDATE SET value = excluded.value", batch)
            count += len(batch)
        return count

    def range(self, series: str, start: datetime | float, end: datetime | float) -> tuple[np.ndarray, np.ndarray]:
        """Samples with start <= t < end: (epoch seconds int64, values float64), oldest first."""
        sid = self._series.get(series) or self._lookup(series)
        if sid is None:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        with self._lock:
            rows = self._conn.execute(
                "SELECT ts, value FROM samples WHERE series = ? AND ts >= ? AND ts < ? ORDER BY ts",
                (sid, epoch_s(start), epoch_s(end))).fetchall()
        if not rows:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        data = np.array(rows, dtype=np.float64)
        return data[:, 0].astype(np.int64), data[:, 1]

    def latest(self, series: str) -> tuple[datetime, float] | None:
        sid = self._series.get(series) or self._lookup(series)
        if sid is None:
            return None
        with self._lock:
            row = self._conn.execute(
                "SELECT ts, value FROM samples WHERE series = ? ORDER BY ts DESC LIMIT 1", (sid,)).fetchone()
        return (datetime.fromtimestamp(row[0], UTC), row[1]) if row else None

    def span(self, series: str) -> tuple[datetime, datetime] | None:
        """Times of the first and the last sample of a series."""
        sid = self._series.get(series) or self._lookup(series)
        if sid is None:
            return None
        with self._lock:
            row = self._conn.execute("SELECT MIN(ts), MAX(ts) FROM samples WHERE series = ?", (sid,)).fetchone()
        if row is None or row[0] is None:
            return None
        return datetime.fromtimestamp(row[0], UTC), datetime.fromtimestamp(row[1], UTC)

    def series_names(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT name FROM series ORDER BY name")]

    def _lookup(self, name: str) -> int | None:
        with self._lock:
            row = self._conn.execute("SELECT id FROM series WHERE name = ?", (name,)).fetchone()
        if row:
            self._series[name] = row[0]
        return row[0] if row else None

    def prune(self, older_than: datetime) -> int:
        """Delete samples older than the cut-off, series by series (each an index range)."""
        cutoff, deleted = epoch_s(older_than), 0
        for name in self.series_names():
            with self.transaction() as conn:
                deleted += conn.execute("DELETE FROM samples WHERE series = ? AND ts < ?",
                                        (self._series_id(conn, name), cutoff)).rowcount
        return deleted

    # -- small state ---------------------------------------------------------------------------

    def set_state(self, key: str, value: Any, now: datetime | None = None) -> None:
        """Store a JSON-serialisable value under a key (shade positions, holds, marks...)."""
        stamp = epoch_s(now or datetime.now(UTC))
        with self.transaction() as conn:
            conn.execute("INSERT INTO state(key, value, updated) VALUES (?, ?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated = excluded.updated",
                         (key, json.dumps(value), stamp))

    def get_state(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def state_items(self, prefix: str) -> dict[str, Any]:
        with self._lock:
            rows = self._conn.execute("SELECT key, value FROM state WHERE key >= ? AND key < ?",
                                      (prefix, prefix + "\uffff")).fetchall()
        return {k: json.loads(v) for k, v in rows}

    def delete_state(self, key: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM state WHERE key = ?", (key,))
