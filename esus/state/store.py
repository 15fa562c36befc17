"""History store: time series and small state in one SQLite file (WAL).

Series are kept as (series id, UTC epoch seconds, value) in a clustered primary key, so a range
read of one series is one index scan. Every write is a transaction with synchronous=FULL: a
`kill -9` or a power cut loses nothing that was committed. A file that SQLite cannot read is moved
aside (never deleted) and a fresh one started.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

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
CREATE TABLE IF NOT EXISTS relay (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    line TEXT NOT NULL
);
"""


def epoch_s(t: datetime | float | int) -> int:
    """UTC epoch seconds of an aware datetime (or a number already in epoch seconds)."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError("naive datetime: the store takes aware UTC times only")
        return int(t.timestamp())
    return int(t)


class CorruptStoreError(Exception):
    pass


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _integrity(conn: sqlite3.Connection, thorough: bool = False) -> str:
    """'ok', or SQLite's description of the first damage found."""
    row = conn.execute("PRAGMA integrity_check" if thorough else "PRAGMA quick_check").fetchone()
    return row[0] if row else "no answer from the integrity check"


def _check(conn: sqlite3.Connection) -> None:
    result = _integrity(conn)
    if result != "ok":
        raise CorruptStoreError(result)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise CorruptStoreError(f"schema version {version} is newer than this esus ({SCHEMA_VERSION})")


def move_aside(path: Path, stamp: datetime | None = None) -> Path:
    """Rename a database and its WAL/SHM files to `<name>.corrupt-<time>`; returns the new path."""
    suffix = f".corrupt-{(stamp or datetime.now(UTC)).strftime('%Y%m%dT%H%M%SZ')}"
    target = path.with_name(path.name + suffix)
    for extra in ("", "-wal", "-shm"):
        source = path.with_name(path.name + extra)
        if source.exists():
            source.rename(path.with_name(path.name + suffix + extra))
    return target


class HistoryStore:
    """Thread-safe; one connection per process. Other processes may open the same file to read."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._series: dict[str, int] = {}
        if readonly:
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30,
                                         isolation_level=None, check_same_thread=False)
        else:
            self._conn = self._open_or_replace()
        for sid, name in self._conn.execute("SELECT id, name FROM series"):
            self._series[name] = sid
        self.identity: str = self.get_state("store.identity") or ""
        if not self.identity and not readonly:  # a fresh file: its relay ids start again at 1
            self.identity = uuid.uuid4().hex
            self.set_state("store.identity", self.identity)

    def _open_or_replace(self) -> sqlite3.Connection:
        conn = None
        try:
            conn = _connect(self.path)
            _check(conn)
        except (sqlite3.DatabaseError, CorruptStoreError) as exc:
            if conn is not None:
                conn.close()
            moved = move_aside(self.path)
            log.warning("history store %s could not be read (%s); moved it to %s and started a "
                        "fresh one. Keep the old file for inspection or delete it.", self.path, exc, moved)
            conn = _connect(self.path)
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def integrity(self, thorough: bool = False) -> str:
        """'ok', or what SQLite found damaged (thorough: the full integrity_check)."""
        with self._lock:
            return _integrity(self._conn, thorough)

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

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

    def append_many(self, rows: Mapping[str, Iterable[tuple[datetime | float, float]]],
                    relay: Iterable[str] = ()) -> int:
        """Insert or overwrite samples of several series in one transaction; returns the count.

        `relay` (the samples' telemetry lines) is committed in the same transaction, to be moved to
        the outbox afterwards (`relayed`, `forget_relayed`): the two files cannot share a
        transaction, and a kill between two commits must not keep a sample and lose its line."""
        count = 0
        with self._transaction() as conn:
            for name, samples in rows.items():
                sid = self._series_id(conn, name)
                batch = [(sid, epoch_s(t), float(v)) for t, v in samples]
                conn.executemany(
                    "INSERT INTO samples(series, ts, value) VALUES (?, ?, ?) "
                    "ON CONFLICT(series, ts) DO UPDATE SET value = excluded.value", batch)
                count += len(batch)
            conn.executemany("INSERT INTO relay(line) VALUES (?)", [(text,) for text in relay])
        return count

    def relayed(self, after_id: int, limit: int = 10_000) -> list[tuple[int, str]]:
        """Relay lines with id > after_id, oldest first: (id, line)."""
        with self._lock:
            return self._conn.execute("SELECT id, line FROM relay WHERE id > ? ORDER BY id LIMIT ?",
                                      (after_id, limit)).fetchall()

    def forget_relayed(self, up_to_id: int) -> None:
        """Drop relay lines the outbox has committed (its mark says up to which id)."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM relay WHERE id <= ?", (up_to_id,))

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
            with self._transaction() as conn:
                deleted += conn.execute("DELETE FROM samples WHERE series = ? AND ts < ?",
                                        (self._series_id(conn, name), cutoff)).rowcount
        return deleted

    # -- small state ---------------------------------------------------------------------------

    def set_state(self, key: str, value: Any, now: datetime | None = None) -> None:
        """Store a JSON-serialisable value under a key (shade positions, holds, marks...)."""
        stamp = epoch_s(now or datetime.now(UTC))
        with self._transaction() as conn:
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
        with self._transaction() as conn:
            conn.execute("DELETE FROM state WHERE key = ?", (key,))
