"""Samples kept in the history store reach the outbox exactly once, whatever instant a kill lands on.

The store and the outbox are two SQLite files, which cannot share a transaction: the samples'
lines are committed with the samples and handed to the outbox with a mark (esus.state.telemetry)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from esus.state.outbox import Outbox
from esus.state.store import HistoryStore, move_aside
from esus.state.telemetry import Telemetry, line

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SERIES = "power.input_kw"


def open_telemetry(state: Path) -> Telemetry:
    return Telemetry(Outbox(state / "outbox.db"), "t", HistoryStore(state / "history.db"))


def close(telemetry: Telemetry) -> None:
    telemetry.outbox.close()
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


def test_a_kill_between_the_store_and_the_outbox_loses_no_line(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    telemetry = open_telemetry(tmp_path)
    keep(telemetry, 0)

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed after the store's commit")
    monkeypatch.setattr(telemetry.outbox, "put", killed)
    with pytest.raises(KeyboardInterrupt):
        keep(telemetry, 1)
    monkeypatch.undo()
    assert stored_times(telemetry.store) == [T0.timestamp(), T0.timestamp() + 60]
    assert outbox_times(telemetry.outbox) == [T0.timestamp()]
    close(telemetry)

    restarted = open_telemetry(tmp_path)
    assert restarted.relay() == 1
    assert outbox_times(restarted.outbox) == stored_times(restarted.store)
    assert restarted.relay() == 0
    close(restarted)


def test_a_kill_after_the_outbox_took_the_lines_sends_nothing_twice(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    telemetry = open_telemetry(tmp_path)

    def killed(up_to_id: int) -> None:
        if up_to_id > 0:  # the outbox has committed line 1
            raise KeyboardInterrupt("killed before the store forgot its relayed lines")
    monkeypatch.setattr(telemetry.store, "forget_relayed", killed)
    with pytest.raises(KeyboardInterrupt):
        keep(telemetry, 0)
    monkeypatch.undo()
    close(telemetry)

    restarted = open_telemetry(tmp_path)
    assert restarted.relay() == 0
    keep(restarted, 1)
    assert outbox_times(restarted.outbox) == stored_times(restarted.store) == [T0.timestamp(), T0.timestamp() + 60]
    assert restarted.store.relayed(0) == []  # nothing left behind to grow the file
    close(restarted)


def test_a_fresh_history_file_is_relayed_from_its_own_start(tmp_path: Path) -> None:
    """A store moved aside starts its line ids at 1 again: the old file's mark must not hide them."""
    telemetry = open_telemetry(tmp_path)
    for n in range(3):
        keep(telemetry, n)
    close(telemetry)
    move_aside(tmp_path / "history.db")
    restarted = open_telemetry(tmp_path)
    keep(restarted, 3)
    assert outbox_times(restarted.outbox) == [T0.timestamp() + 60 * n for n in range(4)]
    close(restarted)


@pytest.mark.slow
def test_kill_9_at_random_moments_keeps_every_sample_line_exactly_once(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    writer = [sys.executable, str(Path(__file__).parent / "relay_writer.py"), str(tmp_path)]
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
        telemetry.relay()  # what the service does at start
        stored, sent = stored_times(telemetry.store), outbox_times(telemetry.outbox)
        close(telemetry)
        assert sorted(sent) == stored, f"{len(set(stored) - set(sent))} missing, {len(sent) - len(set(sent))} twice"
        expected = {int(T0.timestamp()) + 60 * n for n in reported}
        assert expected <= set(stored), "a sample reported kept is not in the store"
    assert len(reported) > 20
