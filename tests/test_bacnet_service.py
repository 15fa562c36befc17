"""The esus side of BACnet: BAS power writes are kept, and stale power shows as a fault everywhere."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import rusty_bacnet as rb

from esus.parts.bacnet import BacnetBridge
from esus.runtime.clock import ManualClock
from esus.settings.config import load_settings
from esus.state.outbox import Outbox
from esus.parts.power import POWER_SERIES, PowerInput
from esus.state.store import HistoryStore
from esus.state.telemetry import Telemetry
from tests.bacnet_harness import PID, Session, bits, free_udp_port, serving


def make_bridge(tmp_path: Path) -> tuple[BacnetBridge, ManualClock]:
    settings = load_settings({"ESUS_BACNET_ADDRESS": f"127.0.0.1/8:{free_udp_port()}",
                              "ESUS_STATE_DIR": str(tmp_path / "state"), "ESUS_BACNET_DEVICE_ID": "599"},
                             demo=True)
    clock = ManualClock(datetime(2026, 6, 1, 10, tzinfo=UTC))
    telemetry = Telemetry(Outbox(HistoryStore(tmp_path / "h.db")), "t")
    power = PowerInput(telemetry, clock, min_kw=-50, max_kw=500, stale_after=timedelta(minutes=5))
    return BacnetBridge(settings, power), clock


async def fault_flag(s: Session, name: str) -> bool:
    return bits(await s.read(name, PID.STATUS_FLAGS))[1]


def test_power_writes_are_kept_and_staleness_faults_every_derived_point(tmp_path: Path) -> None:
    bridge, clock = make_bridge(tmp_path)

    async def scenario() -> None:
        async with serving(device=bridge.device) as s:
            bridge.refresh_power_health()
            assert (await s.read("input-power-meter", PID.RELIABILITY)).value == 1  # no-sensor: never written
            assert await fault_flag(s, "one-hour-future-power")
            await s.write("input-power-meter", rb.PropertyValue.real(42.5), priority=10)
            assert bridge.power.last_value == 42.5
            assert not await fault_flag(s, "input-power-meter")
            bridge.publish("one-hour-future-power", 40.0)
            bridge.publish("model-rmse", 1.2)
            assert not await fault_flag(s, "one-hour-future-power")

            clock.jump(5 * 60 + 1)  # the BAS stopped writing
            assert bridge.refresh_power_health()
            assert (await s.read("input-power-meter", PID.RELIABILITY)).value == 12  # communication-failure
            for name in ("input-power-meter", "one-hour-future-power", "one-hour-future-power-upper",
                         "power-rate-of-change", "high-load-conditions", "low-load-conditions"):
                assert await fault_flag(s, name), name
            assert not await fault_flag(s, "model-rmse")  # not derived from live power
            bridge.publish("one-hour-future-power", 41.0)  # a value computed while stale stays faulted
            assert await fault_flag(s, "one-hour-future-power")

            await s.write("input-power-meter", rb.PropertyValue.real(43.0), priority=10)  # recovers at once
            assert not await fault_flag(s, "input-power-meter")
            assert not await fault_flag(s, "one-hour-future-power")
            assert await fault_flag(s, "power-rate-of-change")  # still no value: no-sensor, not a number
            await s.write("input-power-meter", rb.PropertyValue.null(), priority=10)  # BAS relinquishes
            assert (await s.read("input-power-meter", PID.RELIABILITY)).value == 1  # no-sensor: no source
            assert await fault_flag(s, "one-hour-future-power")
            _, kept = bridge.power.store.range(POWER_SERIES, 0, 2**40)
            assert kept.tolist() == [42.5, 43.0]
    asyncio.run(scenario())
