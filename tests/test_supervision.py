"""A fault in one part is that part's fault: injected into each part of the running service, it is
logged once with the part's name, shown on the status line, in the doctor's file and on the BACnet
device (systemStatus and description, read by an independent stack), the part is retried, and the
device keeps answering; once the fault is gone the part recovers and the device is operational."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import rusty_bacnet as rb
from gpiozero.pins.mock import MockFactory

from bacnet_server.points import SHADE_MODES
from bms_wrapper.simulator import SimPoint, SimulatedBms
from esus.cli.doctor import check_service
from esus.runtime.clock import RealClock
from esus.service import Service
from esus.settings.config import example_site_path, load_settings
from tests.bacnet_harness import OT, PID, free_udp_port
from tests.test_demand_response_shed import in_loop
from tests.test_demand_response_ven import wait_until
from tests.tsdb import free_tcp_port

OPERATIONAL, NON_OPERATIONAL = 0, 4   # BACnetDeviceStatus
DEVICE_ID = 599


class Injected(RuntimeError):
    """The fault a test puts into a part."""


@dataclass
class Running:
    service: Service
    client: rb.BACnetClient
    address: str

    async def read(self, object_type: Any, instance: int, prop: Any = PID.PRESENT_VALUE) -> Any:
        return (await self.client.read_property(self.address, rb.ObjectIdentifier(object_type, instance),
                                                prop)).value

    async def system_status(self) -> int:
        return await self.read(OT.DEVICE, DEVICE_ID, PID.SYSTEM_STATUS)

    async def description(self) -> str:
        return await self.read(OT.DEVICE, DEVICE_ID, PID.DESCRIPTION)

    async def answers(self) -> bool:
        """The device answers a read of the power forecast point (BACnet keeps going)."""
        return isinstance(await self.read(OT.ANALOG_VALUE, 2), float)


def site_file(tmp: Path) -> Path:
    site = tmp / "site.toml"
    shutil.copy(example_site_path(), site)
    with site.open("a") as f:   # one shed action at a controller that is not there: demand response runs
        f.write('\n[demand_response]\n\n[[demand_response.actions]]\nname = "AHU-1"\n'
                'address = "127.0.0.1:9"\nobject = "analog-value,1"\nvalues = { 1 = 21.0 }\n')
    return site


@contextlib.asynccontextmanager
async def running_service(tmp_path: Path, prepare: Callable[[Service], None] = lambda s: None,
                          env: dict[str, str] | None = None) -> AsyncIterator[Running]:
    port = free_udp_port()
    settings0 = load_settings({"ESUS_SITE": str(site_file(tmp_path)), "ESUS_STATE_DIR": str(tmp_path / "state")},
                              demo=False)
    points = [SimPoint(int(p.point_id), p.source, p.kind) for p in settings0.site.bms.points]
    bms = SimulatedBms(points, "esus", "pw").start()
    settings = load_settings({
        "ESUS_SITE": str(site_file(tmp_path)), "ESUS_STATE_DIR": str(tmp_path / "state"),
        "ESUS_BACNET_ADDRESS": f"127.0.0.1/8:{port}", "ESUS_BACNET_DEVICE_ID": str(DEVICE_ID),
        "ESUS_WEATHER_URL": "off", "ESUS_BMS_URL": bms.url, "ESUS_BMS_USER": "esus", "ESUS_BMS_PASSWORD": "pw",
        "ESUS_INFLUX_URL": f"http://127.0.0.1:{free_tcp_port()}", "ESUS_INFLUX_TOKEN": "t",
        "ESUS_INFLUX_ORG": "o", "ESUS_INFLUX_BUCKET": "b", **(env or {})}, demo=False)
    service = Service(settings, RealClock(), pin_factory=MockFactory())
    service.supervisor.first_backoff_s = 0.05
    prepare(service)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await wait_until(lambda: service.bacnet.device.app is not None)
        async with rb.BACnetClient(interface="127.0.0.1", port=free_udp_port(),
                                   broadcast_address="127.255.255.255", apdu_timeout_ms=2000) as client:
            yield Running(service, client, f"127.0.0.1:{port}")
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        bms.stop()


def doctor_says(service: Service) -> str:
    return check_service(service.settings).line()


async def shows_fault(r: Running, part: str) -> None:
    """The part is named on the status line, in the doctor's check and on the BACnet device."""
    await wait_until(lambda: any(p.name == part for p in r.service.health.failing()))
    line = r.service.status_line(r.service.clock.now())
    assert f"FAULT {part}: " in line or f"; {part}: " in line, line
    assert part in doctor_says(r.service) and doctor_says(r.service).startswith("FAIL")
    assert await r.system_status() == NON_OPERATIONAL
    assert part in await r.description()
    assert await r.answers()


async def shows_recovery(r: Running, part: str) -> None:
    await wait_until(lambda: not any(p.name == part for p in r.service.health.failing()))
    if not r.service.health.failing():
        assert await r.system_status() == OPERATIONAL
        assert "FAULT" not in await r.description()
        assert doctor_says(r.service).startswith("ok")


def count_lines(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in record.getMessage() for record in caplog.records)


@pytest.mark.slow
@in_loop
async def test_a_shade_group_that_fails_goes_to_fault_alone_relays_off(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running_service(tmp_path) as r:
        shades = r.service.shades
        assert shades is not None
        east = shades.coordinator.groups[1]
        healthy_tick = east.motor.tick

        def broken_tick() -> None:   # a relay that closes on its own, as a welded contact would
            east.motor.down.on()
            raise Injected("the down relay did not release")

        east.motor.tick = broken_tick   # type: ignore[method-assign]
        shades.coordinator.wake.set()
        await shows_fault(r, "shade east")
        assert not east.motor.up.value and not east.motor.down.value
        assert await r.read(OT.MULTI_STATE_VALUE, 110) == SHADE_MODES.index("fault") + 1
        assert "Injected: the down relay did not release" in await r.read(OT.MULTI_STATE_VALUE, 110,
                                                                          PID.DESCRIPTION)
        others = [await r.read(OT.MULTI_STATE_VALUE, 100 + 10 * g) for g in (2, 3)]
        assert SHADE_MODES.index("fault") + 1 not in others
        for _ in range(3):                # evaluated again and again: said once
            shades.coordinator.wake.set()
            await asyncio.sleep(0.1)
        assert count_lines(caplog, "shade east: fault: Injected") == 1
        east.motor.tick = healthy_tick   # type: ignore[method-assign]
        shades.coordinator.wake.set()
        await shows_recovery(r, "shade east")
        assert await r.read(OT.MULTI_STATE_VALUE, 110) != SHADE_MODES.index("fault") + 1


def break_weather(service: Service) -> None:
    assert service.shades is not None

    def refresh() -> None:
        raise Injected("the weather source sent nonsense")

    service.weather.service.refresh = refresh  # type: ignore[method-assign,assignment]


@pytest.mark.slow
@in_loop
async def test_a_failing_weather_refresh_is_shown_and_the_rest_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running_service(tmp_path, break_weather) as r:
        await shows_fault(r, "weather")
        assert count_lines(caplog, "weather failed") == 1
        assert r.service.shades is not None
        assert all(g.decision.mode != "fault" for g in r.service.shades.coordinator.groups.values())


@pytest.mark.slow
@in_loop
async def test_a_crashing_bms_poll_is_shown_then_recovers(tmp_path: Path) -> None:
    calls = []

    def prepare(service: Service) -> None:
        assert service.bms is not None
        healthy = service.bms.poller.poll

        def poll(now: Any) -> Any:
            calls.append(now)
            if len(calls) == 1:
                raise Injected("a bug in the poller")
            return healthy(now)

        service.bms.poller.poll = poll  # type: ignore[method-assign]

    async with running_service(tmp_path, prepare) as r:
        await shows_fault(r, "bms")
        assert r.service.bms is not None
        await r.service.supervisor.once("bms", r.service.bms.poll(r.service.clock.now()))  # as the next tick
        await shows_recovery(r, "bms")


@pytest.mark.slow
@pytest.mark.parametrize("part", ["influxdb-writer", "demand-response"])
@in_loop
async def test_a_background_loop_that_crashes_is_restarted_with_backoff(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, part: str) -> None:
    crashes: list[float] = []

    def prepare(service: Service) -> None:
        if part == "influxdb-writer":
            assert service.writer is not None
            target, name = service.writer, "step"
        else:
            assert service.demand is not None
            target, name = service.demand.shedder, "reconcile"
        healthy = getattr(target, name)

        def broken(*args: Any) -> Any:
            crashes.append(asyncio.get_running_loop().time() if name == "reconcile" else 0.0)
            if len(crashes) <= 3:
                raise Injected(f"{part} broke")
            return healthy(*args)

        if name == "reconcile":
            async def broken_async() -> Any:
                result = broken()
                return await result if asyncio.iscoroutine(result) else result
            setattr(target, name, broken_async)
        else:
            setattr(target, name, broken)
        service.supervisor.healthy_after_s = 3.0   # longer than the writer's one second between requests

    async with running_service(tmp_path, prepare) as r:
        await shows_fault(r, part)
        await wait_until(lambda: len(crashes) > 3)
        assert r.service.supervisor.restarts[part] >= 3
        assert count_lines(caplog, f"{part} stopped (Injected: {part} broke)") == 1
        assert await r.answers()
        await shows_recovery(r, part)   # the fourth run keeps going: healthy after healthy_after_s


@in_loop
async def test_the_doctor_reads_the_health_a_stopped_service_left(tmp_path: Path) -> None:
    async with running_service(tmp_path, break_weather) as r:
        await shows_fault(r, "weather")
        settings = r.service.settings
    report = json.loads((settings.state_dir / "health.json").read_text())
    assert report["stopped"] is not None
    line = check_service(settings).line()
    assert line.startswith("ok") and "not running" in line, line


def test_a_part_that_returns_is_restarted_and_said_once(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    runs: list[int] = []

    async def finishes_early() -> None:
        runs.append(1)

    async def scenario() -> None:
        def prepare(service: Service) -> None:
            service.background["finishes-early"] = finishes_early

        async with running_service(tmp_path, prepare) as r:
            await wait_until(lambda: len(runs) >= 3)
            assert await r.answers()

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert count_lines(caplog, "finishes-early stopped (ended on its own)") == 1


@pytest.mark.parametrize("error", [sqlite3.OperationalError("database or disk is full"),
                                   OSError(errno.ENOSPC, "No space left on device")])
def test_a_full_disk_is_one_line_per_part_without_a_traceback(error: Exception,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """A full disk is the machine's condition: each part that meets it says so once, in one line that
    says what to do, and no traceback (the forecast, the status line and the shades' telemetry each
    logged one)."""
    from esus.runtime.clock import ManualClock
    from esus.runtime.supervisor import Health

    health = Health(ManualClock(datetime(2026, 6, 10, tzinfo=UTC)))
    with caplog.at_level(logging.WARNING):
        for part in ("forecast", "status", "shades-telemetry"):
            for _ in range(3):
                health.failed(part, error)
    assert len(caplog.records) == 3 and not any(r.exc_info for r in caplog.records)
    assert all("the disk is full: free space where the state directory is" in r.getMessage() for r in caplog.records)
