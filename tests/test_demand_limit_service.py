"""Demand limiting in the service: the billing period's peak from the record, the level from the
interval's projection on BACnet, the shedder shared with demand response (the stronger request
wins, a lapsed one is released), a restart that takes the level up, and bad settings refused."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from demand_response.actions import ShedAction
from demand_response.ledger import Event, Ledger
from demand_response.shedder import Shedder, SlotReading
from esus.parts.bacnet import BacnetBridge
from esus.parts.demand_limit import DemandLimitService
from esus.parts.power import POWER_SERIES, PowerInput
from esus.runtime.clock import ManualClock
from esus.settings.config import example_site_path, load_settings
from esus.settings.errors import SettingsError
from esus.state.outbox import Outbox
from esus.state.store import HistoryStore
from esus.state.telemetry import Telemetry
from tests.bacnet_harness import free_udp_port
from tests.test_demand_response_shed import in_loop

#: a Tuesday, 14:00 in Copenhagen
NOW = datetime(2026, 6, 23, 12, 0, tzinfo=UTC)
COPENHAGEN = ZoneInfo("Europe/Copenhagen")

ACTIONS = '''
[[demand_response.actions]]
name = "AHU-1 supply air setpoint"
address = "192.168.1.21"
object = "analog-value,12"
values = { 1 = 22.0, 2 = 23.0, 3 = 24.0 }

[[demand_response.actions]]
name = "Corridor lighting off"
address = "192.168.1.40"
object = "binary-output,7"
values = { 2 = "inactive" }
'''


def site(tmp: Path, limit: str, actions: str = ACTIONS) -> Path:
    path = tmp / "site.toml"
    shutil.copy(example_site_path(), path)
    with path.open("a") as f:
        f.write(actions + "\n[demand_limit]\n" + limit + "\n")
    return path


class Scene:
    """The part on a store with a week of an office's power, a manual clock and a BACnet device
    that is not started (published values are read from its objects)."""

    def __init__(self, tmp: Path, limit: str, days: int = 7, now: datetime = NOW, actions: str = ACTIONS,
                 shedder: Shedder | None = None) -> None:
        self.settings = load_settings({"ESUS_SITE": str(site(tmp, limit, actions)),
                                       "ESUS_BACNET_ADDRESS": f"127.0.0.1/8:{free_udp_port()}",
                                       "ESUS_STATE_DIR": str(tmp / "state")}, demo=False)
        self.store = HistoryStore(self.settings.state_dir / "history.db")
        if self.store.latest(POWER_SERIES) is None:
            start = now - timedelta(days=days)
            minutes = np.arange(days * 1440)
            local_hour = (minutes / 60 + now.astimezone(COPENHAGEN).hour) % 24
            kw = 10 + 20 * ((local_hour > 7) & (local_hour < 17)) + np.sin(minutes / 7.0)
            self.store.append_many({POWER_SERIES: [(start.timestamp() + 60 * m, float(v))
                                                   for m, v in zip(minutes, kw, strict=True)]})
        self.clock = ManualClock(now)
        power = PowerInput(Telemetry(Outbox(self.store), "t"), self.clock, min_kw=-50, max_kw=500,
                           stale_after=timedelta(minutes=5))
        self.bacnet = BacnetBridge(self.settings, power)
        self.part = DemandLimitService(self.settings, self.store, self.bacnet, self.clock, None, shedder,
                                       lambda: None)

    def value(self, name: str) -> Any:
        return self.bacnet.device.present_value(name)

    async def minute(self, kw: float) -> None:
        """One minute of the building at `kw`, then the part's tick."""
        for second in range(0, 60, 20):
            self.store.append(POWER_SERIES, self.clock.now() + timedelta(seconds=second), kw)
        self.clock.jump(60)
        await self.part.minute_tick(self.clock.now())

    async def __aenter__(self) -> Scene:
        await self.bacnet.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.bacnet.close()

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def scene(tmp_path: Path):
    made: list[Scene] = []

    def make(limit: str, **kwargs: Any) -> Scene:
        made.append(Scene(tmp_path, limit, **kwargs))
        return made[-1]
    yield make
    for s in made:
        s.close()


def test_the_periods_peak_comes_from_the_record(scene) -> None:
    s = scene("act = false", days=16)
    s.part.learn(NOW)
    assert s.part.period == datetime(2026, 6, 1, tzinfo=s.part.tz)
    assert s.part.peak is not None
    peak_kw, at = s.part.peak
    assert 30.0 < peak_kw < 31.0          # 30 kW by day, with a ripple of 1 kW
    assert 7 <= at.astimezone(s.part.tz).hour < 17
    assert s.part.floor_kw is None
    asyncio.run(s.part.learn_floor(NOW))   # in a process of its own, as each night
    assert s.part.floor_kw is not None and s.part.floor_kw < peak_kw   # the flexibility could have held it lower


@in_loop
async def test_the_level_rises_a_stage_a_minute_over_a_fixed_target_and_falls_after_the_dwell(scene) -> None:
    async with scene("act = false\ntarget_kw = 25.0\ndwell_minutes = 3") as s:
        s.part.learn(NOW)
        levels = []
        for _ in range(8):
            await s.minute(40.0)
            levels.append(int(s.value("dl-level")) - 1)
        assert levels[:3] == [1, 2, 3] and levels[-1] == 3
        assert float(s.value("dl-target")) == pytest.approx(25.0)
        assert float(s.value("dl-projected")) > 25.0
        assert "level 3" in s.part.status(s.clock.now())
        for _ in range(40):
            await s.minute(5.0)
        assert int(s.value("dl-level")) == 1     # normal again, one level a dwell
        assert s.part.last["reason"].startswith("normal")


@in_loop
async def test_the_first_minute_reads_the_record_before_it_judges(scene) -> None:
    async with scene("act = false") as s:
        assert not s.part.ready and s.part.peak is None
        await s.minute(10.0)
        assert s.part.ready and s.part.peak is not None and s.part.last["reason"]
        s.part.floor_kw, s.part.period = None, s.clock.now() - timedelta(hours=3)   # a new site's first day
        await s.minute(50.0)
        assert s.part.last["reason"].startswith("level 0: no target yet") and s.part.last["target_kw"] is None


@in_loop
async def test_no_shed_while_the_bound_stays_under_the_peak_already_set(scene) -> None:
    async with scene("act = false") as s:
        s.part.learn(NOW)
        assert s.part.peak is not None
        for _ in range(30):
            await s.minute(s.part.peak[0] * 0.6)
        assert int(s.value("dl-level")) == 1
        assert float(s.value("dl-target")) >= s.part.peak[0]


@in_loop
async def test_a_restart_takes_the_level_and_the_days_allowance_up(scene, tmp_path: Path) -> None:
    async with scene("act = false\ntarget_kw = 25.0") as s:
        s.part.learn(NOW)
        for _ in range(4):
            await s.minute(40.0)
        used = s.part.limiter.used_min
        again = DemandLimitService(s.settings, s.store, s.bacnet, s.clock, None, None, lambda: None)
        assert again.limiter.level == 3 and again.limiter.used_min == used
        s.clock.jump(3600)
        later = DemandLimitService(s.settings, s.store, s.bacnet, s.clock, None, None, lambda: None)
        assert later.limiter.level == 0     # an hour on, the record of the level is too old to act on


@in_loop
async def test_the_doctor_says_what_was_decided_last_and_why(scene, tmp_path: Path) -> None:
    from esus.cli.doctor import check_demand_limit

    async with scene("act = false\ntarget_kw = 25.0") as s:
        assert "no decision yet" in check_demand_limit(s.settings).line()
        s.part.learn(NOW)
        for _ in range(3):
            await s.minute(40.0)
        line = check_demand_limit(s.settings).line()
    assert line.startswith("ok   limit") and "publishes dl-level only" in line
    assert "level 3:" in line and "target 25.0 kW" in line and "3 min shed today of 180" in line
    plain = load_settings({"ESUS_STATE_DIR": str(tmp_path / "plain")}, demo=True)
    assert "not configured" in check_demand_limit(plain).line()


class MemoryWriter:
    def __init__(self) -> None:
        self.slots: dict[str, object] = {}

    async def write(self, action: ShedAction, value: Any) -> None:
        self.slots[action.name] = value

    async def read_back(self, action: ShedAction) -> SlotReading:
        return SlotReading(self.slots.get(action.name))


@in_loop
async def test_demand_response_and_demand_limiting_share_the_shedder_the_stronger_request_wins(
        tmp_path: Path) -> None:
    now = [1000.0]
    actions = [ShedAction("ahu", "192.168.1.21", "analog-value,12", {1: 22.0, 2: 23.0, 3: 24.0}),
               ShedAction("lights", "192.168.1.40", "binary-output,7", {2: "inactive"})]
    writer = MemoryWriter()
    ledger = Ledger(tmp_path / "dr.db")
    shedder = Shedder(actions, ledger, writer, stage_delay_s=0, clock=lambda: now[0])
    shedder.put_event(Event("e1", 1, 900.0, 5000.0))
    shedder.limit(2, 1200.0, frozenset({"ahu"}))
    await shedder.reconcile()
    assert writer.slots == {"ahu": 23.0}                  # the limiter's 2 beats the event's 1; lights follow the event
    shedder.limit(3, 1200.0)
    await shedder.reconcile()
    assert writer.slots == {"ahu": 24.0, "lights": "inactive"}
    now[0] = 1300.0                                        # the limiter stopped asking: its request lapses
    await shedder.reconcile()
    assert writer.slots == {"ahu": 22.0, "lights": None}
    now[0] = 6000.0
    await shedder.reconcile()
    assert writer.slots == {"ahu": None, "lights": None}
    ledger.close()


@in_loop
async def test_acting_hands_the_level_to_the_shedder_for_the_actions_named(tmp_path: Path, scene) -> None:
    writer = MemoryWriter()
    ledger = Ledger(tmp_path / "dr.db")
    clock_now = [NOW.timestamp()]
    actions = [ShedAction("AHU-1 supply air setpoint", "192.168.1.21", "analog-value,12", {1: 22.0, 2: 23.0}),
               ShedAction("Corridor lighting off", "192.168.1.40", "binary-output,7", {2: "inactive"})]
    shedder = Shedder(actions, ledger, writer, stage_delay_s=0, clock=lambda: clock_now[0])
    async with scene('act = true\ntarget_kw = 25.0\nactions = ["AHU-1 supply air setpoint"]', shedder=shedder) as s:
        s.part.learn(NOW)
        for _ in range(2):
            await s.minute(40.0)
            clock_now[0] = s.clock.now().timestamp()
            await shedder.reconcile()
        assert writer.slots == {"AHU-1 supply air setpoint": 23.0}
        ledger.close()


@pytest.mark.parametrize(("limit", "says"), [
    ("interval_minutes = 20", "interval_minutes"),
    ("target_kw = -5", "target_kw"),
    ('act = true\nactions = ["Chiller"]', "'Chiller', which is not a shed action"),
    ("shed_pct = [10, 5, 15]", "three rising percentages"),
])
def test_bad_settings_are_refused_at_start_with_one_line(tmp_path: Path, limit: str, says: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"ESUS_SITE": str(site(tmp_path, limit)), "ESUS_STATE_DIR": str(tmp_path / "state")},
                      demo=False)
    message = str(caught.value)
    assert says in message and "\n" not in message and "demand_limit" in message


def test_acting_without_shed_actions_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="act = false to publish the level only"):
        load_settings({"ESUS_SITE": str(site(tmp_path, "act = true", actions="")), "ESUS_STATE_DIR": str(tmp_path / "s")},
                      demo=False)


def test_the_points_exist_only_with_demand_limiting(scene, tmp_path: Path) -> None:
    s = scene("act = false\ninterval_minutes = 30")
    names = {p.name for p in s.bacnet.points}
    assert {"dl-level", "dl-target", "dl-headroom", "dl-period-peak", "dl-projected"} <= names
    assert "30-minute" in next(p.description for p in s.bacnet.points if p.name == "dl-period-peak")
    plain = load_settings({"ESUS_BACNET_ADDRESS": f"127.0.0.1/8:{free_udp_port()}",
                           "ESUS_STATE_DIR": str(tmp_path / "plain")}, demo=True)
    from esus.parts.bacnet import site_points
    assert not any(p.name.startswith("dl-") for p in site_points(plain))
