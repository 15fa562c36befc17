"""One way to use SQLite in esus: how a file is opened, checked, moved aside when damaged, and
how a transaction is written (BEGIN IMMEDIATE, COMMIT, or ROLLBACK on any exception)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path


class CorruptStoreError(Exception):
    pass


def connect(path: Path) -> sqlite3.Connection:
    """Autocommit mode (transactions are explicit), WAL, and synchronous=FULL: a `kill -9` or a
    power cut loses nothing that was committed."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def connect_readonly(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None,
                           check_same_thread=False)


@contextmanager
def transaction(conn: sqlite3.Connection, lock: threading.RLock | threading.Lock) -> Iterator[sqlite3.Connection]:
    """Everything inside is committed together, or nothing is (any exception rolls back)."""
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def integrity(conn: sqlite3.Connection, thorough: bool = False) -> str:
    """'ok', or SQLite's description of the first damage found."""
    row = conn.execute("PRAGMA integrity_check" if thorough else "PRAGMA quick_check").fetchone()
    return row[0] if row else "no answer from the integrity check"


def damage(path: Path) -> str | None:
    """What is wrong with an SQLite file, or None when it reads as a database should (or is not there
    at all). A file deleted while in use, its WAL and SHM left, counts as damaged; so does a
    zero-length file: SQLite would take it for a new, empty database, and
    whatever it held would be lost without a word."""
    if not path.exists():
        left = [extra for extra in ("-wal", "-shm") if path.with_name(path.name + extra).exists()]
        if left:   # SQLite would meet them as a new database's and refuse with "disk I/O error"
            kinds = " and ".join(extra[1:].upper() for extra in left)
            return f"the file is gone but its {kinds} file is left (deleted while in use?)"
        return None
    if path.stat().st_size == 0 and not path.with_name(path.name + "-wal").exists():
        return "zero length"
    try:
        conn = connect_readonly(path)
        try:
            result = integrity(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if result == "ok" else result


def move_aside(path: Path, stamp: datetime | None = None) -> Path:
    """Rename a database and its WAL/SHM files to `<name>.corrupt-<time>`; returns the new path."""
    suffix = f".corrupt-{(stamp or datetime.now(UTC)).strftime('%Y%m%dT%H%M%S%fZ')}"
    target = path.with_name(path.name + suffix)
    for extra in ("", "-wal", "-shm"):
        source = path.with_name(path.name + extra)
        if source.exists():
            source.rename(path.with_name(path.name + suffix + extra))
    return target
