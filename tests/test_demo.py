"""Demo: the real meter replayed by weekday and time, written once a minute through the power input."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from esus.runtime.clock import ManualClock, settle
from esus.demo import LOOP_MINUTES, DemoBas, MeterReplay, seed_history
from esus.state.outbox import Outbox
from esus.parts.power import POWER_SERIES, PowerInput, PowerValueError
from esus.state.store import HistoryStore
from esus.state.telemetry import Telemetry

CPH = ZoneInfo("Europe/Copenhagen")


@pytest.fixture(scope="module")
def replay() -> MeterReplay:
    return MeterReplay(CPH)


def test_replay_keeps_weekday_and_time_of_day(replay: MeterReplay) -> None:
    # 2022-07-04 was a Monday; 2026-11-23 is a Monday. 10:17 local in both.
    monday = datetime(2026, 11, 23, 10, 17, tzinfo=CPH)
    index = replay.index(monday)
    source = replay.start + timedelta(minutes=index)
    assert source.weekday() == 0 and (source.hour, source.minute) == (10, 17)
    assert replay.kw_at(monday + timedelta(weeks=8)) == replay.kw_at(monday)
    assert 2.0 < replay.kw_at(monday) < 45.0


def test_replay_has_a_working_day_shape(replay: MeterReplay) -> None:
    day = datetime(2026, 11, 24, tzinfo=CPH)  # a Tuesday
    night = [replay.kw_at(day + timedelta(hours=3, minutes=m)) for m in range(60)]
    afternoon = [replay.kw_at(day + timedelta(hours=14, minutes=m)) for m in range(60)]
    assert sum(afternoon) > 1.5 * sum(night)


def test_replay_covers_a_dst_night(replay: MeterReplay) -> None:
    start = datetime(2026, 10, 24, 22, tzinfo=UTC)
    values = [replay.kw_at(start + timedelta(minutes=m)) for m in range(6 * 60)]
    assert all(math.isfinite(v) for v in values)
    assert 0 <= replay.index(start) < LOOP_MINUTES


def make_power(tmp_path: Path, clock: ManualClock) -> PowerInput:
    telemetry = Telemetry(Outbox(HistoryStore(tmp_path / "h.db")), "t")
    return PowerInput(telemetry, clock, min_kw=-10, max_kw=100, stale_after=timedelta(minutes=5))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -11.0, 100.5, "12", None, True, [1.0]])
def test_power_input_rejects_bad_values_and_keeps_nothing(tmp_path: Path, bad: object) -> None:
    power = make_power(tmp_path, ManualClock(datetime(2026, 1, 1, tzinfo=UTC)))
    power.write(5.0)
    with pytest.raises(PowerValueError):
        power.write(bad)
    assert power.last_value == 5.0 and power.rejected == 1
    assert power.store.range(POWER_SERIES, 0, 2**40)[1].tolist() == [5.0]


def test_power_goes_stale_and_recovers(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    power = make_power(tmp_path, clock)
    assert power.is_stale()
    power.write(-3.5)  # net meters can be negative
    assert not power.is_stale()
    clock.jump(5 * 60 + 1)
    assert power.is_stale()
    power.write(4.0)
    assert not power.is_stale()
    reopened = PowerInput(power.telemetry, clock, min_kw=0, max_kw=1, stale_after=timedelta(minutes=5))
    assert reopened.last_value == 4.0 and not reopened.is_stale()


def test_seed_history_fills_only_missing_minutes(tmp_path: Path, replay: MeterReplay) -> None:
    now = datetime(2026, 11, 22, 12, 0, 30, tzinfo=UTC)
    with HistoryStore(tmp_path / "h.db") as store:
        assert seed_history(store, replay, now, days=2) == 2 * 1440  # up to the last whole minute
        assert seed_history(store, replay, now, days=2) == 0
        assert seed_history(store, replay, now + timedelta(minutes=10), days=2) == 10


def test_demo_bas_writes_once_a_minute(tmp_path: Path, replay: MeterReplay) -> None:
    clock = ManualClock(datetime(2026, 11, 23, 9, 0, 30, tzinfo=UTC))
    power = make_power(tmp_path, clock)

    async def write(kw: float) -> None:
        power.write(kw)

    async def scenario() -> None:
        task = asyncio.get_running_loop().create_task(DemoBas(replay, write, clock).run())
        await settle()
        for _ in range(10):
            await clock.advance(60)
        task.cancel()

    asyncio.run(scenario())
    ts, values = power.store.range(POWER_SERIES, 0, 2**40)
    assert power.writes == 10 and ts.size == 10
    assert all(t % 60 == 2 for t in ts.tolist())
    assert values[0] == replay.kw_at(datetime(2026, 11, 23, 9, 1, 2, tzinfo=UTC))


def test_a_demo_that_ran_ahead_resumes_where_it_got_to(tmp_path: Path) -> None:
    from esus.demo import resume_time
    from esus.settings.config import load_settings

    settings = load_settings({"ESUS_STATE_DIR": str(tmp_path / "state")}, demo=True)
    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    assert resume_time(settings, now) is None                             # nothing kept yet
    with HistoryStore(tmp_path / "state" / "history.db") as store:
        store.append(POWER_SERIES, now - timedelta(minutes=1), 3.0)
    assert resume_time(settings, now) is None                             # a demo at real time: nothing to resume
    with HistoryStore(tmp_path / "state" / "history.db") as store:
        store.append(POWER_SERIES, now + timedelta(hours=5), 3.0)         # --speed 60 ran five hours ahead
    assert resume_time(settings, now) == now + timedelta(hours=5, minutes=1)
