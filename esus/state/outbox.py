"""Durable outbox: InfluxDB line-protocol lines wait in SQLite until the server has taken them.

influxdb-client keeps unsent points in memory, so an outage or a restart loses them. Here every
line is committed to disk before anyone tries to send it, sent oldest first, and deleted only
after a 2xx. Lines the server refuses as malformed (400/422) move to a dead-letter table with the
server's message. The outbox is bounded: past `max_lines` the oldest are dropped, and counted.

The tables live in the history store's file, so a sample and its line are one transaction
(`put(..., with_samples=...)`): one commit, and nothing lost or sent twice between two files.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from esus.state.files import set_aside
from esus.state.sqlite import damage
from esus.state.store import HistoryStore

log = logging.getLogger(__name__)

TABLES = (
    "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS outbox_dead (id INTEGER PRIMARY KEY, line TEXT NOT NULL, status INTEGER NOT NULL, "
    "message TEXT NOT NULL, at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS outbox_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)
DEFAULT_MAX_LINES = 2_000_000  # about 250 MB of SQLite at typical esus line lengths


@dataclass(frozen=True)
class Batch:
    first_id: int
    last_id: int
    ids: list[int]
    lines: list[str]


def _bump(conn: sqlite3.Connection, name: str, by: int) -> None:
    conn.execute("INSERT INTO outbox_counters(name, value) VALUES (?, ?) "
                 "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, by))


class Outbox:
    def __init__(self, store: HistoryStore, max_lines: int = DEFAULT_MAX_LINES) -> None:
        self.store, self.max_lines = store, max_lines
        with store.transaction() as conn:
            for table in TABLES:
                conn.execute(table)
        with store.reading() as conn:
            self._depth = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        self._last_drop_warning = 0.0
        self.on_put: Callable[[], None] | None = None   # told after lines are committed (the writer)

    @property
    def depth(self) -> int:
        return self._depth

    def counter(self, name: str) -> int:
        with self.store.reading() as conn:
            row = conn.execute("SELECT value FROM outbox_counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def put(self, lines: list[str], with_samples: Callable[[sqlite3.Connection], object] | None = None) -> None:
        """Commit lines to disk (one transaction); drop the oldest beyond the bound, counting them.

        `with_samples(conn)` writes, in the same transaction, the samples the lines describe."""
        if not lines and with_samples is None:
            return
        with self.store.transaction() as conn:
            if with_samples is not None:
                with_samples(conn)
            conn.executemany("INSERT INTO outbox(line) VALUES (?)", [(line,) for line in lines])
            excess = self._depth + len(lines) - self.max_lines
            if excess > 0:
                conn.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,))
                _bump(conn, "dropped", excess)
        self._depth += len(lines) - max(0, excess)
        if lines and self.on_put is not None:
            self.on_put()
        if excess > 0 and time.monotonic() - self._last_drop_warning > 60:
            self._last_drop_warning = time.monotonic()
            log.warning("InfluxDB outbox is full (%d lines): dropped the %d oldest; %d dropped in all. "
                        "Is InfluxDB reachable? See `esus doctor`.", self.max_lines, excess, self.counter("dropped"))

    def oldest(self, limit: int) -> Batch | None:
        with self.store.reading() as conn:
            rows = conn.execute("SELECT id, line FROM outbox ORDER BY id LIMIT ?", (limit,)).fetchall()
        if not rows:
            return None
        return Batch(rows[0][0], rows[-1][0], [r[0] for r in rows], [r[1] for r in rows])

    def delete(self, ids: list[int]) -> None:
        """Remove lines the server accepted."""
        with self.store.transaction() as conn:
            if ids == list(range(ids[0], ids[-1] + 1)):
                removed = conn.execute("DELETE FROM outbox WHERE id BETWEEN ? AND ?", (ids[0], ids[-1])).rowcount
            else:
                removed = sum(conn.execute("DELETE FROM outbox WHERE id = ?", (i,)).rowcount for i in ids)
            _bump(conn, "sent", removed)
        self._depth -= removed

    def bury(self, ids: list[int], lines: list[str], status: int, message: str) -> None:
        """Move lines the server refused as invalid to the dead-letter table, with its message."""
        now = int(time.time())
        with self.store.transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO outbox_dead(id, line, status, message, at) VALUES (?, ?, ?, ?, ?)",
                             [(i, line, status, message[:2000], now) for i, line in zip(ids, lines, strict=True)])
            removed = sum(conn.execute("DELETE FROM outbox WHERE id = ?", (i,)).rowcount for i in ids)
            _bump(conn, "dead", removed)
        self._depth -= removed

    def dead_letters(self, limit: int = 100) -> list[tuple[str, int, str]]:
        with self.store.reading() as conn:
            return conn.execute("SELECT line, status, message FROM outbox_dead ORDER BY id LIMIT ?",
                                (limit,)).fetchall()

    def take_over(self, old: Path) -> int:
        """Move a release-0.1 outbox file's waiting lines, dead letters and counters in here, with
        the lines a kill left in the history file's relay table that had not reached it; returns
        the number of lines taken. One transaction, so a kill during it takes them over again at
        the next start, never twice."""
        lost = "the InfluxDB lines waiting in it (they are not sent)"
        why = damage(old)
        if why is not None:
            set_aside(old, why, lost)
            return 0
        try:
            taken = self._take_over(old if old.exists() else None)
        except sqlite3.DatabaseError as exc:
            set_aside(old, str(exc), lost)
            return 0
        for extra in ("", "-wal", "-shm"):
            old.with_name(old.name + extra).unlink(missing_ok=True)
        if taken:
            log.info("took over %d waiting InfluxDB lines from %s and the relay into %s (the outbox is now "
                     "one file with the history)", taken, old.name, self.store.path.name)
        return taken

    def _take_over(self, old: Path | None) -> int:
        with self.store.reading() as conn:
            relay = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'relay'").fetchone() is not None
            if old is None and not relay:
                return 0
            if conn.execute("SELECT 1 FROM state WHERE key = 'outbox.taken_over'").fetchone() and not relay:
                return 0   # taken over before a kill that left the old file behind
            if old is not None:   # ATTACH cannot run inside a transaction
                conn.execute("ATTACH DATABASE ? AS old", (str(old),))
            try:
                with self.store.transaction():
                    taken = self._copy(conn, old is not None, relay)
            finally:
                if old is not None:
                    conn.execute("DETACH DATABASE old")
        self._depth += taken
        return taken

    def _copy(self, conn: sqlite3.Connection, attached: bool, relay: bool) -> int:
        tables = {name for (name,) in conn.execute("SELECT name FROM old.sqlite_master WHERE type = 'table'")} \
            if attached else set()
        before = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        if "lines" in tables:
            conn.execute("INSERT INTO outbox(line) SELECT line FROM old.lines ORDER BY id")
        if "dead" in tables:
            conn.execute("INSERT INTO outbox_dead(line, status, message, at) "
                         "SELECT line, status, message, at FROM old.dead ORDER BY id")
        if "counters" in tables:
            for name, value in conn.execute("SELECT name, value FROM old.counters").fetchall():
                _bump(conn, name, value)
        if relay:   # the lines past the old outbox's mark had not reached it
            identity = conn.execute("SELECT value FROM state WHERE key = 'store.identity'").fetchone()
            mark = None
            if identity and "marks" in tables:
                mark = conn.execute("SELECT value FROM old.marks WHERE name = ?",
                                    (f"relay.{json.loads(identity[0])}",)).fetchone()
            conn.execute("INSERT INTO outbox(line) SELECT line FROM relay WHERE id > ? ORDER BY id",
                         (mark[0] if mark else 0,))
            conn.execute("DROP TABLE relay")
            conn.execute("DELETE FROM state WHERE key = 'store.identity'")
        conn.execute("INSERT OR REPLACE INTO state(key, value, updated) VALUES ('outbox.taken_over', 'true', ?)",
                     (int(datetime.now(UTC).timestamp()),))
        return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] - before)
