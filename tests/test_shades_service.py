"""The shades in the service, over real BACnet (an independent client stack) and MockFactory pins:
BAS commands move a group and survive a restart without moving it; the hold, the mode and the
wind lockout are visible on the wire; the kill switch stops automation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import rusty_bacnet as rb
from gpiozero.pins.mock import MockFactory

from esus.parts.bacnet import BacnetBridge
from esus.runtime.clock import ManualClock
from esus.settings.config import load_settings
from esus.state.outbox import Outbox
from esus.parts.power import PowerInput
from esus.parts.shading import ShadesService
from esus.parts.weather import weather_service
from esus.state.store import HistoryStore
from esus.state.telemetry import Telemetry
from tests.bacnet_harness import free_udp_port, serving

NOW = datetime(2026, 6, 22, 8, 0, tzinfo=UTC)   # 10:00 local: sun on the south façade
SOUTH = 2


class PendingBms:
    """A BMS whose first poll since start has not answered yet (then `polls_done` = 1: it failed)."""

    def __init__(self) -> None:
        self.polls_done, self.listeners = 0, []
        self.points: list = []   # none listed yet: the rooms' readings are unknown too

    def sample(self, point, max_age):
        return None

    def value(self, point, max_age):
        return None


class Rig:
    def __init__(self, tmp_path: Path, factory: MockFactory, clock: ManualClock, bms=None) -> None:
        settings = load_settings({"ESUS_BACNET_ADDRESS": f"127.0.0.1/8:{free_udp_port()}",
                                  "ESUS_STATE_DIR": str(tmp_path / "state")}, demo=True)
        self.store = HistoryStore(settings.state_dir / "history.db")
        self.outbox = Outbox(self.store)
        telemetry = Telemetry(self.outbox, "t")
        power = PowerInput(telemetry, clock, min_kw=-50, max_kw=500, stale_after=timedelta(minutes=5))
        self.bridge = BacnetBridge(settings, power)
        self.shades = ShadesService(settings, self.store, self.bridge, bms, telemetry, clock,
                                    weather_service(settings, clock.now), pin_factory=factory)
        self.clock = clock

    def motor(self, group: int):
        return self.shades.coordinator.groups[group].motor

    async def run_for(self, seconds: float) -> None:
        coordinator = self.shades.coordinator
        end = self.clock.monotonic() + seconds
        while self.clock.monotonic() < end:
            coordinator.evaluate()
            await self.clock.advance(min(coordinator.next_deadline_s() or 1.0, end - self.clock.monotonic()))
        coordinator.evaluate()

    def close(self) -> None:
        self.shades.close()
        self.store.close()


def test_bas_command_hold_mode_and_restart_over_bacnet(tmp_path: Path) -> None:
    factory, clock = MockFactory(), ManualClock(NOW)

    async def first() -> None:
        rig = Rig(tmp_path, factory, clock)
        rig.shades.inputs = lambda: _calm(rig)           # no BMS here: a calm, fresh wind reading
        rig.shades.coordinator.inputs = rig.shades.inputs
        try:
            async with serving(device=rig.bridge.device) as s:
                await rig.shades.start()
                await rig.run_for(11 * 60)                 # the first-start lockout releases
                assert (await s.read("wind-lockout")).value == 0
                assert rig.motor(SOUTH).position_pct == 100                # automation: sun on the façade
                await s.write("shade-2-command", rb.PropertyValue.real(40.0), priority=8)
                await rig.run_for(1.5)
                assert rig.motor(SOUTH).up.value and not rig.motor(SOUTH).down.value
                await rig.run_for(120)
                assert abs(rig.motor(SOUTH).position_pct - 40) < 1
                assert (await s.read("shade-2-position")).value == pc(rig.motor(SOUTH).position_pct)
                assert (await s.read("shade-2-mode")).value == 2                      # bas
                rig.shades.coordinator.press(1, "down")                               # east: a wall switch
                await rig.run_for(1.0)
                assert (await s.read("shade-1-manual-override")).value == 1
                description = (await s.read("shade-1-manual-override", rb.PropertyIdentifier.DESCRIPTION)).value
                assert "held by the wall switch until 2026-06-22 12:13" in description
                assert (await s.read("shade-1-mode")).value == 3                      # manual
                await s.write("shade-automation-enable", rb.PropertyValue.enumerated(0), priority=8)
                await rig.run_for(60)
                assert rig.shades.coordinator.groups[3].decision.mode == "disabled"   # west: automation off
        finally:
            rig.close()

    async def restart() -> None:
        rig = Rig(tmp_path, factory, clock)
        rig.shades.inputs = lambda: _calm(rig)
        rig.shades.coordinator.inputs = rig.shades.inputs
        try:
            async with serving(device=rig.bridge.device) as s:
                assert abs(rig.motor(SOUTH).position_pct - 40) < 1           # position survived
                await rig.shades.start()
                assert (await s.read("shade-2-command")).value == 40.0      # the BAS's command survived
                await rig.run_for(30)
                for number in (1, 2, 3):
                    assert not rig.motor(number).up.value and not rig.motor(number).down.value
                assert (await s.read("shade-1-manual-override")).value == 1  # the hold survived
                assert (await s.read("shade-automation-enable")).value == 0
                await s.write("shade-2-command", rb.PropertyValue.null(), priority=8)   # relinquish
                await rig.run_for(2)
                assert rig.shades.coordinator.groups[SOUTH].decision.mode == "disabled"
        finally:
            rig.close()

    asyncio.run(first())
    asyncio.run(restart())


def test_wind_from_the_bms_retracts_and_shows_on_bacnet(tmp_path: Path) -> None:
    factory, clock = MockFactory(), ManualClock(NOW)

    async def scenario() -> None:
        rig = Rig(tmp_path, factory, clock)
        wind = [3.0]

        def inputs():
            base = _calm(rig)
            base.wind_mps = wind[0]
            return base
        rig.shades.coordinator.inputs = inputs
        try:
            async with serving(device=rig.bridge.device) as s:
                await rig.shades.start()
                await rig.run_for(11 * 60)
                assert rig.motor(SOUTH).position_pct > 90                     # automation lowered south
                wind[0] = 15.0
                await rig.run_for(3.0)
                assert rig.motor(SOUTH).up.value
                assert (await s.read("wind-lockout")).value == 1
                assert (await s.read("shade-2-mode")).value == 4                       # wind
                assert "15.0 m/s" in (await s.read("wind-lockout", rb.PropertyIdentifier.DESCRIPTION)).value
        finally:
            rig.close()

    asyncio.run(scenario())


def test_a_restart_waits_for_the_first_wind_reading_before_retracting(tmp_path: Path) -> None:
    """Down for longer than a wind reading stays fresh: the stored lockout state holds until the
    first BMS poll since the start has answered, so the restart alone moves nothing; a poll that
    brings no wind then retracts (unknown wind is wind)."""
    factory, clock = MockFactory(), ManualClock(NOW)

    async def first() -> None:
        rig = Rig(tmp_path, factory, clock)
        rig.shades.coordinator.inputs = lambda: _calm(rig)
        try:
            async with serving(device=rig.bridge.device):
                await rig.shades.start()
                await rig.run_for(11 * 60)
                assert rig.motor(SOUTH).position_pct == 100 and not rig.shades.coordinator.lockout.state.locked
        finally:
            rig.close()

    async def restart() -> None:
        await clock.advance(30 * 60)                  # killed; the last wind reading is now 30 minutes old
        bms = PendingBms()
        rig = Rig(tmp_path, factory, clock, bms)
        try:
            async with serving(device=rig.bridge.device):
                await rig.shades.start()
                await rig.run_for(60)
                assert not any(rig.motor(n).up.value or rig.motor(n).down.value for n in (1, 2, 3))
                assert rig.motor(SOUTH).position_pct == 100 and not rig.shades.coordinator.lockout.state.locked
                bms.polls_done = 1                    # the first poll failed: the wind is unknown
                await rig.run_for(2)
                assert rig.shades.coordinator.lockout.state.locked and rig.motor(SOUTH).up.value
        finally:
            rig.close()

    asyncio.run(first())
    asyncio.run(restart())


def _calm(rig: Rig):
    inputs = ShadesService.inputs(rig.shades)
    inputs.wind_mps, inputs.wind_at = 3.0, rig.clock.now()
    return inputs


def pc(value: float) -> float:
    import struct
    return struct.unpack("f", struct.pack("f", value))[0]
