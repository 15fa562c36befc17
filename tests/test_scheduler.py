"""Scheduler: aligned ticks, DST nights in Copenhagen, no drift and no pile-up after a stall."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esus.runtime.clock import ManualClock, settle
from esus.runtime.scheduler import DailyAt, Every, Scheduler, ticks_between

CPH = ZoneInfo("Europe/Copenhagen")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_every_minute_and_five_minutes_with_offset() -> None:
    assert Every(60).next_after(utc(2026, 1, 1, 10, 0, 0)) == utc(2026, 1, 1, 10, 1, 0)
    assert Every(60).next_after(utc(2026, 1, 1, 10, 0, 59, 999999)) == utc(2026, 1, 1, 10, 1, 0)
    assert Every(300, 7).next_after(utc(2026, 1, 1, 10, 0, 7)) == utc(2026, 1, 1, 10, 5, 7)
    assert Every(300, 7).next_after(utc(2026, 1, 1, 10, 0, 6)) == utc(2026, 1, 1, 10, 0, 7)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
       st.sampled_from([60, 300, 900]), st.integers(0, 59))
def test_every_is_strictly_after_aligned_and_within_one_period(t: datetime, period: int, offset: int) -> None:
    tick = Every(period, offset).next_after(t)
    assert t < tick <= t + timedelta(seconds=period)
    assert (tick.timestamp() - offset) % period == 0
    assert tick.astimezone(CPH).minute % (period // 60) == 0  # local marks too


def test_midnight_on_dst_nights_in_copenhagen() -> None:
    midnight = DailyAt(time(0, 0), CPH)
    # spring forward 2026-03-29 02:00 -> 03:00: the day is 23 hours long
    first = midnight.next_after(utc(2026, 3, 28, 12))
    second = midnight.next_after(first)
    assert first.astimezone(CPH).replace(tzinfo=None) == datetime(2026, 3, 29, 0, 0)
    assert second.astimezone(CPH).replace(tzinfo=None) == datetime(2026, 3, 30, 0, 0)
    assert second - first == timedelta(hours=23)
    # fall back 2026-10-25 03:00 -> 02:00: 25 hours
    first = midnight.next_after(utc(2026, 10, 24, 12))
    second = midnight.next_after(first)
    assert second - first == timedelta(hours=25)
    assert second.astimezone(CPH).hour == 0


def test_daily_at_a_repeated_and_a_skipped_local_time() -> None:
    at_0230 = DailyAt(time(2, 30), CPH)
    # 02:30 happens twice on 2026-10-25: run once, at the first (CEST, UTC+2)
    ticks = [at_0230.next_after(utc(2026, 10, 24, 12))]
    ticks.append(at_0230.next_after(ticks[0]))
    assert ticks[0] == utc(2026, 10, 25, 0, 30)
    assert ticks[1] == utc(2026, 10, 26, 1, 30)
    # 02:30 does not exist on 2026-03-29: it runs once that day, an hour late (03:30 CEST)
    tick = at_0230.next_after(utc(2026, 3, 28, 12))
    assert tick == utc(2026, 3, 29, 1, 30)
    assert tick.astimezone(CPH).hour == 3


@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)))
def test_daily_midnight_is_always_local_midnight_within_25_hours(t: datetime) -> None:
    tick = DailyAt(time(0, 0), CPH).next_after(t)
    local = tick.astimezone(CPH)
    assert (local.hour, local.minute) == (0, 0)
    assert t < tick <= t + timedelta(hours=25)


def test_ticks_between() -> None:
    assert ticks_between(Every(60), utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 10)) == 9


def run_scheduler(clock: ManualClock, scheduler: Scheduler) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(scheduler.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_thousand_ticks_do_not_drift() -> None:
    async def scenario() -> list[datetime]:
        clock = ManualClock(utc(2026, 3, 28, 20, 0, 33))
        seen: list[datetime] = []

        async def job(due: datetime) -> None:
            seen.append(clock.now())
            await clock.sleep(0.7)  # each run takes some time

        scheduler = Scheduler(clock)
        scheduler.add("minute", Every(60), job)
        task = run_scheduler(clock, scheduler)
        await settle()
        for _ in range(1000):
            await clock.advance(60)
        await stop(task)
        return seen

    seen = asyncio.run(scenario())
    assert len(seen) == 1000
    assert all(t.second == 0 and t.microsecond == 0 for t in seen)
    assert all(b - a == timedelta(minutes=1) for a, b in zip(seen, seen[1:]))


def test_a_stall_runs_once_late_then_realigns_without_pile_up() -> None:
    async def scenario() -> tuple[list[datetime], list[datetime], Scheduler]:
        clock = ManualClock(utc(2026, 1, 1, 12, 0, 30))
        dues: list[datetime] = []
        runs: list[datetime] = []

        async def job(due: datetime) -> None:
            dues.append(due)
            runs.append(clock.now())

        scheduler = Scheduler(clock)
        scheduler.add("five-minute", Every(300, 10), job)
        task = run_scheduler(clock, scheduler)
        await settle()
        await clock.advance(300)          # one normal tick at 12:05:10
        clock.jump(47 * 60)               # the process stalls for 47 minutes
        await clock.advance(0)
        await clock.advance(600)
        await stop(task)
        return dues, runs, scheduler

    dues, runs, scheduler = asyncio.run(scenario())
    assert dues[0] == utc(2026, 1, 1, 12, 5, 10)
    assert dues[1] == utc(2026, 1, 1, 12, 10, 10) and runs[1] == utc(2026, 1, 1, 12, 52, 30)  # once, late
    assert dues[2:] == [utc(2026, 1, 1, 12, 55, 10), utc(2026, 1, 1, 13, 0, 10)]               # realigned
    stats = scheduler.jobs[0].stats
    assert stats.skipped == 8 and stats.max_lag_s == pytest.approx(42 * 60 + 20)


def test_slow_job_skips_ticks_and_does_not_block_other_jobs() -> None:
    async def scenario() -> tuple[list[datetime], list[datetime]]:
        clock = ManualClock(utc(2026, 1, 1, 0, 0, 0, ))
        slow_runs: list[datetime] = []
        fast_runs: list[datetime] = []

        async def slow(due: datetime) -> None:
            slow_runs.append(due)
            await clock.sleep(150)  # takes 2.5 periods

        async def fast(due: datetime) -> None:
            fast_runs.append(due)

        scheduler = Scheduler(clock)
        scheduler.add("slow", Every(60), slow)
        scheduler.add("fast", Every(60, 30), fast)
        task = run_scheduler(clock, scheduler)
        await settle()
        for _ in range(10):
            await clock.advance(60)
        await stop(task)
        return slow_runs, fast_runs

    slow_runs, fast_runs = asyncio.run(scenario())
    assert len(fast_runs) == 10
    assert [t.minute for t in slow_runs] == [1, 4, 7, 10]


def test_a_failing_job_keeps_its_schedule(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> Scheduler:
        clock = ManualClock(utc(2026, 1, 1))

        async def broken(due: datetime) -> None:
            raise RuntimeError("boom")

        scheduler = Scheduler(clock)
        scheduler.add("broken", Every(60), broken)
        task = run_scheduler(clock, scheduler)
        await settle()
        for _ in range(3):
            await clock.advance(60)
        await stop(task)
        return scheduler

    scheduler = asyncio.run(scenario())
    stats = scheduler.jobs[0].stats
    assert (stats.runs, stats.failures) == (0, 3)
    assert "broken failed for the tick at 2026-01-01T00:01:00+00:00 (RuntimeError: boom)" in caplog.text
    assert caplog.text.count("RuntimeError: boom") == 2, "one line and one traceback for the same cause"
    assert scheduler.health.summary() == "FAULT broken: RuntimeError: boom"


def test_a_job_that_fails_then_works_is_said_to_recover_once(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> Scheduler:
        clock = ManualClock(utc(2026, 1, 1))
        outcomes = iter([RuntimeError("one"), RuntimeError("one"), OSError("disk full"), None, None])

        async def flaky(due: datetime) -> None:
            outcome = next(outcomes)
            if outcome is not None:
                raise outcome

        scheduler = Scheduler(clock)
        scheduler.add("flaky", Every(60), flaky)
        task = run_scheduler(clock, scheduler)
        await settle()
        for _ in range(5):
            await clock.advance(60)
        await stop(task)
        return scheduler

    with caplog.at_level(logging.INFO, logger="esus.runtime.supervisor"):
        scheduler = asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == "esus.runtime.supervisor"]
    assert len(lines) == 3, lines   # the first cause, the change of cause, the recovery
    assert "(RuntimeError: one)" in lines[0] and "(OSError: disk full)" in lines[1]
    assert lines[2].startswith("flaky recovered after 180 s")
    assert scheduler.health.summary() == ""


def test_midnight_job_through_a_dst_week() -> None:
    async def scenario() -> list[datetime]:
        clock = ManualClock(utc(2026, 3, 26, 12))
        runs: list[datetime] = []

        async def nightly(due: datetime) -> None:
            runs.append(clock.now().astimezone(CPH))

        scheduler = Scheduler(clock)
        scheduler.add("midnight", DailyAt(time(0, 0), CPH), nightly)
        task = run_scheduler(clock, scheduler)
        await settle()
        for _ in range(7 * 24):
            await clock.advance(3600)
        await stop(task)
        return runs

    runs = asyncio.run(scenario())
    assert [r.day for r in runs] == [27, 28, 29, 30, 31, 1, 2]
    assert all((r.hour, r.minute) == (0, 0) for r in runs)


def test_processes_on_one_anchored_timeline_agree_after_the_wall_clock_is_adjusted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """At 600x one second of NTP slew is ten simulated minutes: a process started after it must
    still read the same simulated time as one started before (the end-to-end scene's BAS, BMS and
    the service are such processes)."""
    import esus.runtime.clock as clock_module
    from esus.runtime.clock import AcceleratedClock

    wall = [1_000_000.0]
    monkeypatch.setattr(clock_module.time, "time", lambda: wall[0])
    start = datetime(2026, 6, 14, 19, 0, tzinfo=UTC)
    early = AcceleratedClock(600, start, anchor_unix_s=1_000_030.0)
    assert early.now() == start - timedelta(seconds=30 * 600)     # before the anchor: before the start
    wall[0] += 31.0                                                # 30 s of set-up, and 1 s of slew
    late = AcceleratedClock(600, start, anchor_unix_s=1_000_030.0)
    assert early.now() == late.now() == start + timedelta(seconds=600)
    wall[0] -= 0.5                                                 # a step back: time stands still, never reverses
    assert early.now() == start + timedelta(seconds=600)


def test_an_anchored_clock_is_not_moved_by_history_that_lies_ahead_of_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The end-to-end service started before the anchor found seeded history ahead of its clock,
    jumped to it and ran ten simulated minutes ahead of the BMS all its life (its wind went stale)."""
    import esus.runtime.clock as clock_module
    from esus.runtime.clock import AcceleratedClock

    monkeypatch.setattr(clock_module.time, "time", lambda: 1_000_000.0)
    start = datetime(2026, 6, 14, 19, 0, tzinfo=UTC)
    anchored = AcceleratedClock(600, start, anchor_unix_s=1_000_001.0)
    anchored.resume_after(start - timedelta(minutes=2))
    assert anchored.now() == start - timedelta(seconds=600)
    demo = AcceleratedClock(600, start)                            # a fast demo restarted: it does move on
    demo.resume_after(start + timedelta(hours=1))
    assert demo.now() > start + timedelta(hours=1)
