"""The override ledger: events as the VTN sent them, and what esus has written to each point.

Every write is recorded here before it goes out, and every outcome after, in SQLite (committed at
once), so that a process killed in the middle of an event knows on start-up exactly which slots it
may have written and must release."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from demand_response.actions import ShedAction, Value
from demand_response.baseline import Baseline
from demand_response.delivered import EventSummary

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT NOT NULL, interval INTEGER NOT NULL, level INTEGER NOT NULL, start_s REAL NOT NULL,
    end_s REAL NOT NULL, cancelled INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (event_id, interval));
CREATE TABLE IF NOT EXISTS overrides (
    action TEXT PRIMARY KEY, value TEXT, state TEXT NOT NULL, until_s REAL, attempts INTEGER NOT NULL,
    error TEXT, updated_s REAL NOT NULL, address TEXT NOT NULL, object_id TEXT NOT NULL, property TEXT NOT NULL,
    priority INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS operator_releases (action TEXT PRIMARY KEY, until_s REAL NOT NULL);
CREATE TABLE IF NOT EXISTS baselines (event_id TEXT PRIMARY KEY, body TEXT NOT NULL, frozen_s REAL NOT NULL);
CREATE TABLE IF NOT EXISTS summaries (event_id TEXT PRIMARY KEY, body TEXT NOT NULL, end_s REAL NOT NULL);
"""
#: event summaries kept for the page and the one who asks
SUMMARIES_KEPT = 50

# An override's state: writing (recorded; the write may or may not have reached the device, as
# after a kill in between), active (acknowledged), lost (acknowledged once, but the slot no longer
# holds it: the controller restarted, or another writer took the slot; written again), failed (not
# taken; retried while the event lasts), releasing (NULL not yet acknowledged; retried until it is),
# released (the slot is NULL again).
#: Columns added after the first release, with their definitions: added to an older ledger at open.
ADDED_COLUMNS = {"lost": "INTEGER NOT NULL DEFAULT 0", "lost_s": "REAL", "outranked_by": "INTEGER"}


@dataclass(frozen=True)
class Event:
    """One interval of an OpenADR event: a signal level from start_s to end_s (epoch seconds)."""
    event_id: str
    level: int
    start_s: float
    end_s: float
    cancelled: bool = False
    interval: int = 0

    def active_at(self, now_s: float) -> bool:
        return not self.cancelled and self.start_s <= now_s < self.end_s


@dataclass(frozen=True)
class Override:
    action: str
    value: Value | None
    state: str
    until_s: float | None
    attempts: int
    error: str | None
    updated_s: float
    slot: ShedAction  # the point and priority written, kept so it can be released whatever the site file says now
    lost: int = 0                  # times the controller was found not to hold it (re-written each time)
    lost_s: float | None = None    # when it was last found lost
    outranked_by: int | None = None   # a higher priority (lower number) that holds the point: the shed does nothing


class Ledger:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)  # autocommit: each change is durable at once
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        have = {row[1] for row in self.db.execute("PRAGMA table_info(overrides)")}
        for column, definition in ADDED_COLUMNS.items():
            if column not in have:
                self.db.execute(f"ALTER TABLE overrides ADD COLUMN {column} {definition}")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (esus's one SQLite idiom)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- events ------------------------------------------------------------------------------

    def put_event(self, intervals: list[Event]) -> None:
        """An event as the VTN sent it last: its intervals replace any it had (a modification)."""
        with self._transaction():
            for event_id in {e.event_id for e in intervals}:
                self.db.execute("DELETE FROM events WHERE event_id = ?", (event_id,))
            self.db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                                [(e.event_id, e.interval, e.level, e.start_s, e.end_s, int(e.cancelled))
                                 for e in intervals])

    def cancel_event(self, event_id: str) -> bool:
        return self.db.execute("UPDATE events SET cancelled = 1 WHERE event_id = ?", (event_id,)).rowcount > 0

    def events(self) -> list[Event]:
        rows = self.db.execute("SELECT event_id, level, start_s, end_s, cancelled, interval FROM events "
                               "ORDER BY start_s")
        return [Event(e, lvl, a, b, bool(c), i) for e, lvl, a, b, c, i in rows]

    def forget_events_before(self, end_s: float) -> None:
        self.db.execute("DELETE FROM events WHERE end_s < ?", (end_s,))
        self.db.execute("DELETE FROM operator_releases WHERE until_s < ?", (end_s,))

    # -- overrides ---------------------------------------------------------------------------

    def begin(self, action: ShedAction, value: Value | None, until_s: float | None, now_s: float) -> None:
        """Before a write goes out: the shed value, or None for a release (a NULL write)."""
        state = "writing" if value is not None else "releasing"
        self.db.execute(
            "INSERT INTO overrides (action, value, state, until_s, attempts, error, updated_s, address, object_id, "
            "property, priority) VALUES (?, ?, ?, ?, 1, NULL, ?, ?, ?, ?, ?) ON CONFLICT(action) DO UPDATE SET "
            "value = excluded.value, state = excluded.state, until_s = excluded.until_s, "
            "updated_s = excluded.updated_s, address = excluded.address, object_id = excluded.object_id, "
            "property = excluded.property, priority = excluded.priority, "
            "attempts = CASE WHEN overrides.state IN ('active', 'lost', 'released') THEN 1 "
            "ELSE overrides.attempts + 1 END",
            (action.name, json.dumps(value), state, until_s, now_s, action.address, action.object_id,
             action.property, action.priority))

    def succeeded(self, action: str, now_s: float) -> None:
        self.db.execute("UPDATE overrides SET state = CASE state WHEN 'releasing' THEN 'released' ELSE 'active' END, "
                        "outranked_by = CASE state WHEN 'releasing' THEN NULL ELSE outranked_by END, "
                        "attempts = 0, error = NULL, updated_s = ? WHERE action = ?", (now_s, action))

    def failed(self, action: str, error: str, now_s: float) -> None:
        """A shed write that failed is 'failed'; a release that failed stays 'releasing'."""
        self.db.execute("UPDATE overrides SET state = CASE state WHEN 'releasing' THEN 'releasing' ELSE 'failed' END, "
                        "error = ?, updated_s = ? WHERE action = ?", (error, now_s, action))

    def lost(self, action: str, now_s: float) -> None:
        """The controller does not hold what it acknowledged: to be written again."""
        self.db.execute("UPDATE overrides SET state = 'lost', lost = lost + 1, lost_s = ?, updated_s = ? "
                        "WHERE action = ? AND state = 'active'", (now_s, now_s, action))

    def outranked(self, action: str, priority: int | None) -> None:
        """Another writer holds the point at a higher priority (None: no longer)."""
        self.db.execute("UPDATE overrides SET outranked_by = ? WHERE action = ?", (priority, action))

    def extend(self, action: str, until_s: float | None) -> None:
        self.db.execute("UPDATE overrides SET until_s = ? WHERE action = ?", (until_s, action))

    def overrides(self) -> dict[str, Override]:
        rows = self.db.execute("SELECT action, value, state, until_s, attempts, error, updated_s, address, "
                               "object_id, property, priority, lost, lost_s, outranked_by FROM overrides "
                               "ORDER BY rowid")
        return {a: Override(a, json.loads(v), s, u, n, e, t, ShedAction(a, addr, obj, {}, prop, prio), lost, lost_s,
                            outranked)
                for a, v, s, u, n, e, t, addr, obj, prop, prio, lost, lost_s, outranked in rows}

    # -- baselines and summaries -------------------------------------------------------------

    def put_baseline(self, baseline: Baseline, now_s: float) -> None:
        body = {"event_id": baseline.event_id, "start_s": baseline.start_s, "forecast_kw": baseline.forecast_kw,
                "standard_kw": baseline.standard_kw, "method": baseline.method}
        self.db.execute("INSERT OR REPLACE INTO baselines VALUES (?, ?, ?)", (baseline.event_id, json.dumps(body),
                                                                            now_s))

    def baselines(self) -> dict[str, Baseline]:
        """The frozen baselines of events not yet summarised."""
        out = {}
        for event_id, body in self.db.execute("SELECT event_id, body FROM baselines"):
            b = json.loads(body)
            out[event_id] = Baseline(b["event_id"], b["start_s"], tuple(b["forecast_kw"]), tuple(b["standard_kw"]),
                                     b["method"])
        return out

    def put_summary(self, summary: EventSummary) -> None:
        """The event's outcome, replacing its baseline (one transaction: never both, never neither)."""
        with self._transaction():
            self.db.execute("INSERT OR REPLACE INTO summaries VALUES (?, ?, ?)",
                            (summary.event_id, json.dumps(summary.to_dict()), summary.end_s))
            self.db.execute("DELETE FROM baselines WHERE event_id = ?", (summary.event_id,))
            self.db.execute("DELETE FROM summaries WHERE event_id NOT IN (SELECT event_id FROM summaries "
                            "ORDER BY end_s DESC LIMIT ?)", (SUMMARIES_KEPT,))

    def summaries(self, limit: int = 10) -> list[EventSummary]:
        rows = self.db.execute("SELECT body FROM summaries ORDER BY end_s DESC LIMIT ?", (limit,))
        return [EventSummary.from_dict(json.loads(body)) for (body,) in rows]

    # -- operator releases -------------------------------------------------------------------

    def release_by_operator(self, action: str, until_s: float) -> None:
        self.db.execute("INSERT OR REPLACE INTO operator_releases VALUES (?, ?)", (action, until_s))

    def operator_released(self, now_s: float) -> set[str]:
        return {a for (a,) in self.db.execute("SELECT action FROM operator_releases WHERE until_s > ?", (now_s,))}
