"""Durable outbox: InfluxDB line-protocol lines wait in SQLite until the server has taken them.

influxdb-client keeps unsent points in memory, so an outage or a restart loses them. Here every
line is committed to disk before anyone tries to send it, sent oldest first, and deleted only
after a 2xx. Lines the server refuses as malformed (400/422) move to a dead-letter table with the
server's message. The outbox is bounded: past `max_lines` the oldest are dropped, and counted.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS lines (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dead (id INTEGER PRIMARY KEY, line TEXT NOT NULL, status INTEGER NOT NULL,
                                 message TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS marks (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
DEFAULT_MAX_LINES = 2_000_000  # about 250 MB of SQLite at typical esus line lengths


@dataclass(frozen=True)
class Batch:
    first_id: int
    last_id: int
    ids: list[int]
    lines: list[str]


class Outbox:
    def __init__(self, path: Path, max_lines: int = DEFAULT_MAX_LINES) -> None:
        self.path, self.max_lines = Path(path), max_lines
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        self._depth = self._conn.execute("SELECT COUNT(*) FROM lines").fetchone()[0]
        self._last_drop_warning = 0.0

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @property
    def depth(self) -> int:
        return self._depth

    def counter(self, name: str) -> int:
        with self._lock:
            row = self._conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def _bump(self, name: str, by: int) -> None:
        self._conn.execute("INSERT INTO counters(name, value) VALUES (?, ?) "
                           "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, by))

    def mark(self, name: str) -> int:
        """How far a source's lines have been taken (0 if never): see `put`."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM marks WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def put(self, lines: list[str], mark: tuple[str, int] | None = None) -> None:
        """Commit lines to disk (one transaction); drop the oldest beyond the bound, counting them.

        `mark` (name, value) is committed with the lines, so a source that hands over its lines
        from another file can tell after a kill which of them arrived."""
        if not lines:
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("INSERT INTO lines(line) VALUES (?)", [(line,) for line in lines])
            if mark is not None:
                self._conn.execute("INSERT INTO marks(name, value) VALUES (?, ?) "
                                   "ON CONFLICT(name) DO UPDATE SET value = excluded.value", mark)
            self._depth += len(lines)
            excess = self._depth - self.max_lines
            if excess > 0:
                self._conn.execute("DELETE FROM lines WHERE id IN (SELECT id FROM lines ORDER BY id LIMIT ?)",
                                   (excess,))
                self._bump("dropped", excess)
                self._depth -= excess
            self._conn.execute("COMMIT")
        if excess > 0 and time.monotonic() - self._last_drop_warning > 60:
            self._last_drop_warning = time.monotonic()
            log.warning("InfluxDB outbox is full (%d lines): dropped the %d oldest; %d dropped in all. "
                        "Is InfluxDB reachable? See `esus doctor`.", self.max_lines, excess, self.counter("dropped"))

    def oldest(self, limit: int) -> Batch | None:
        with self._lock:
            rows = self._conn.execute("SELECT id, line FROM lines ORDER BY id LIMIT ?", (limit,)).fetchall()
        if not rows:
            return None
        return Batch(rows[0][0], rows[-1][0], [r[0] for r in rows], [r[1] for r in rows])

    def delete(self, ids: list[int]) -> None:
        """Remove lines the server accepted."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            if ids == list(range(ids[0], ids[-1] + 1)):
                removed = self._conn.execute("DELETE FROM lines WHERE id BETWEEN ? AND ?",
                                             (ids[0], ids[-1])).rowcount
            else:
                removed = sum(self._conn.execute("DELETE FROM lines WHERE id = ?", (i,)).rowcount for i in ids)
            self._bump("sent", removed)
            self._conn.execute("COMMIT")
            self._depth -= removed

    def bury(self, ids: list[int], lines: list[str], status: int, message: str) -> None:
        """Move lines the server refused as invalid to the dead-letter table, with its message."""
        now = int(time.time())
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("INSERT OR REPLACE INTO dead(id, line, status, message, at) VALUES (?, ?, ?, ?, ?)",
                                   [(i, line, status, message[:2000], now) for i, line in zip(ids, lines, strict=True)])
            removed = sum(self._conn.execute("DELETE FROM lines WHERE id = ?", (i,)).rowcount for i in ids)
            self._bump("dead", removed)
            self._conn.execute("COMMIT")
            self._depth -= removed

    def dead_letters(self, limit: int = 100) -> list[tuple[str, int, str]]:
        with self._lock:
            return self._conn.execute("SELECT line, status, message FROM dead ORDER BY id LIMIT ?",
                                      (limit,)).fetchall()
