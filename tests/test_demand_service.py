"""Demand response inside the running service: a VTN event on loopback sheds a bacpypes3
controller's point through esus's own BACnet device, the dr-* points show it to the BAS (read by
an independent stack), and a clean stop releases the override."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import aiohttp
import pytest
import rusty_bacnet as rb
from gpiozero.pins.mock import MockFactory

from bacpypes3.basetypes import PriorityValue

from demand_response.passwords import hash_password
from esus.runtime.clock import RealClock
from esus.settings.config import example_site_path, load_settings
from esus.service import Service, StartupError
from esus.state.files import StateFiles
from tests.bacnet_harness import OT, PID, free_udp_port
from tests.dr_targets import start_target
from tests.oadr_vtn import Vtn
from tests.tsdb import free_tcp_port
from tests.test_demand_response_shed import in_loop
from tests.test_demand_response_ven import wait_until


PASSWORD_HASH = hash_password("correct horse battery")


def site_with_action(tmp: Path, address: str, own_address: str) -> Path:
    site = tmp / "site.toml"
    shutil.copy(example_site_path(), site)
    with site.open("a") as f:
        f.write(f'''
[demand_response]
stage_delay_s = 0.1

[[demand_response.actions]]
name = "AHU-1 supply air setpoint"
address = "{address}"
object = "analog-value,1"
values = {{ 1 = 21.0, 2 = 22.0 }}

[[demand_response.actions]]
name = "Lower the east shades"
address = "{own_address}"
object = "analog-value,111"
values = {{ 2 = 100.0 }}
''')
    return site


@pytest.mark.slow
@in_loop
async def test_a_vtn_event_sheds_through_the_service_shows_on_bacnet_and_a_clean_stop_releases(
        tmp_path: Path) -> None:
    vtn = await Vtn().start()
    target = start_target(721)
    port, page_port = free_udp_port(), free_tcp_port()
    site = site_with_action(tmp_path, target.address, f"127.0.0.1:{port}")
    settings = load_settings({
        "ESUS_SITE": str(site), "ESUS_BACNET_ADDRESS": f"127.0.0.1/8:{port}",
        "ESUS_STATE_DIR": str(tmp_path / "state"), "ESUS_WEATHER_URL": "off",
        "ESUS_OADR_VTN_URL": vtn.url, "ESUS_OADR_VEN_NAME": "tmv23", "ESUS_DR_PAGE_ADDRESS": f"127.0.0.1:{page_port}",
        "ESUS_DR_PAGE_USER": "operator", "ESUS_DR_PAGE_PASSWORD_HASH": PASSWORD_HASH}, demo=False)
    service = Service(settings, RealClock(), pin_factory=MockFactory())
    stop = asyncio.Event()
    running = asyncio.create_task(service.run(stop))
    try:
        await wait_until(lambda: service.demand is not None and service.demand.ven.registered, 20)
        vtn.add_event(level=2, starts_in_s=0, duration_s=600)
        await wait_until(lambda: target.slot("analog-value,1", 10) == 22.0)
        await wait_until(lambda: service.bacnet.device.commanded("shade-1-command") == 100.0)  # a shade group joins
        async with rb.BACnetClient(interface="127.0.0.1", port=free_udp_port(),
                                   broadcast_address="127.255.255.255", apdu_timeout_ms=2000) as bas:
            esus = f"127.0.0.1:{port}"

            async def read(object_type: rb.ObjectType, instance: int) -> object:
                return (await bas.read_property(esus, rb.ObjectIdentifier(object_type, instance),
                                                PID.PRESENT_VALUE)).value
            for _ in range(100):
                if await read(OT.BINARY_VALUE, 5) == 1:
                    break
                await asyncio.sleep(0.1)
            assert await read(OT.BINARY_VALUE, 5) == 1                    # dr-event-active
            assert await read(OT.MULTI_STATE_VALUE, 1) == 3               # dr-signal-level: high
            assert 500 < await read(OT.ANALOG_VALUE, 9) <= 600            # dr-event-end, seconds
        assert "DR level 2 until" in service.status_line(service.clock.now())
        # and in InfluxDB's outbox (no server configured here, so the lines wait there)
        shed_lines = lambda: [text for text in service.outbox.oldest(100_000).lines  # noqa: E731
                              if text.startswith("dr_override,") and "shed=1" in text]
        await wait_until(lambda: {"AHU-1\\ supply\\ air\\ setpoint", "Lower\\ the\\ east\\ shades"} <=
                         {text.split("action=")[1].split(",site=")[0] for text in shed_lines()}, 20)
        summary = [text for text in service.outbox.oldest(100_000).lines if text.startswith("demand_response,")]
        assert any("event_active=1" in text and "signal_level=2" in text and "overrides_shed=2" in text
                   for text in summary), summary[-3:]
        async with aiohttp.ClientSession() as web, web.get(f"http://127.0.0.1:{page_port}/") as reply:
            assert reply.status == 200 and reply.url.path == "/login"      # the operator page, behind a login
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)
        target_slot = target.slot("analog-value,1", 10)
        target.close()
        await vtn.stop()
    assert target_slot is None                                            # released at the clean stop


@in_loop
async def test_an_operator_page_address_in_use_stops_the_start_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = load_settings({
            "ESUS_BACNET_ADDRESS": f"127.0.0.1/8:{free_udp_port()}", "ESUS_STATE_DIR": str(tmp_path / "state"),
            "ESUS_WEATHER_URL": "off", "ESUS_DR_PAGE_ADDRESS": f"127.0.0.1:{taken.getsockname()[1]}",
            "ESUS_DR_PAGE_USER": "operator", "ESUS_DR_PAGE_PASSWORD_HASH": PASSWORD_HASH}, demo=True)
        service = Service(settings, RealClock(), pin_factory=MockFactory())
        with pytest.raises(StartupError, match=r"the operator page cannot listen on 127\.0\.0\.1:\d+ .*"
                                               "set ESUS_DR_PAGE_ADDRESS"):
            await service.run(asyncio.Event())


def test_the_password_hash_command_reads_stdin_and_refuses_a_short_password(monkeypatch, capsys) -> None:
    import io

    from demand_response.passwords import verify_password
    from esus.cli.main import main

    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert main(["dr", "hash-password"]) == 0
    assert verify_password("correct horse battery", capsys.readouterr().out.strip())
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["dr", "hash-password"]) != 0
    assert "at least 10 characters" in capsys.readouterr().err


@in_loop
async def test_doctor_reads_every_shed_point_and_names_the_one_that_does_not_answer(tmp_path: Path) -> None:
    from esus.cli.dr_check import probe

    target = start_target(741)
    try:
        async with Vtn() as vtn:
            site = site_with_action(tmp_path, target.address, f"127.0.0.1:{free_udp_port()}")  # the second: nobody
            settings = load_settings({"ESUS_SITE": str(site), "ESUS_STATE_DIR": str(tmp_path / "state"),
                                      "ESUS_OADR_VTN_URL": vtn.url, "ESUS_OADR_VEN_NAME": "tmv23"}, demo=False)
            problems, found = await probe(settings, 1.0)
            assert found[0] == f"VTN 127.0.0.1:{vtn.port} reachable" and found[1] == "1 of 2 shed points answer"
            silent = settings.site.demand_response.actions[1].address
            assert problems == [f"'Lower the east shades': {silent} analog-value,111 present-value: no answer "
                                "within 1 s: check the address, object and property"]
        problems, _ = await probe(settings, 1.0)                     # the VTN is gone
        assert problems[0].startswith(f"VTN 127.0.0.1:{vtn.port} cannot be reached")
    finally:
        target.close()


def test_doctor_says_demand_response_is_off_when_nothing_is_configured(tmp_path: Path) -> None:
    from esus.cli.doctor import check_demand_response

    settings = load_settings({"ESUS_STATE_DIR": str(tmp_path / "state")}, demo=True)
    check = check_demand_response(settings)
    assert check.ok and "not configured" in check.detail


def test_the_sun_is_on_the_east_facade_in_the_morning_and_off_it_in_the_evening(tmp_path: Path) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from esus.runtime.clock import ManualClock
    from esus.parts.demand import DemandService

    settings = load_settings({"ESUS_STATE_DIR": str(tmp_path / "state")}, demo=True)
    clock = ManualClock(datetime(2026, 6, 22, 7, 0, tzinfo=ZoneInfo("Europe/Copenhagen")))
    demand = DemandService(settings, None, None, clock)  # type: ignore[arg-type] - only the geometry is asked
    try:
        assert demand.sun_on("east") and not demand.sun_on("west")
        clock.jump(11 * 3600)                                               # 18:00
        assert not demand.sun_on("east") and demand.sun_on("west")
    finally:
        demand.close()


@in_loop
async def test_with_a_modbus_meter_the_vtn_is_told_its_reading_and_doctor_reads_it(tmp_path: Path) -> None:
    from esus.runtime.clock import RealClock as Clock
    from esus.parts.demand import DemandService
    from esus.cli.dr_check import probe
    from tests.test_demand_response_meter import meter_server, registers

    async with meter_server(registers(37.25, "float32"), unit=1) as port:
        site = tmp_path / "site.toml"
        shutil.copy(example_site_path(), site)
        with site.open("a") as f:
            f.write(f'\n[demand_response]\nmeter = "modbus"\n\n[demand_response.modbus]\nhost = "127.0.0.1"\n'
                    f'port = {port}\nregister_address = 0\npoll_s = 1\n')
        settings = load_settings({"ESUS_SITE": str(site), "ESUS_STATE_DIR": str(tmp_path / "state"),
                                  "ESUS_OADR_VTN_URL": "http://127.0.0.1:9/vtn", "ESUS_OADR_VEN_NAME": "tmv23"},
                                 demo=False)
        problems, found = await probe(settings, 1.0)
        assert found == ["Modbus meter reads 37.25 kW"] and problems[0].startswith("VTN 127.0.0.1:9 cannot be reached")
        demand = DemandService(settings, None, None, Clock())  # type: ignore[arg-type] - the meter is all it needs
        reading = asyncio.create_task(demand.meter.run())
        try:
            await wait_until(lambda: demand.power_kw() is not None, 10)
            assert demand.power_kw() == 37.25
        finally:
            reading.cancel()
            demand.close()


def test_demand_response_is_logged_on_change_and_once_a_minute_with_the_failing_controller_named(
        tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from demand_response.ledger import Event, Override
    from demand_response.shedder import ShedState
    from esus.runtime.clock import ManualClock
    from esus.parts.demand import DemandService
    from esus.state.outbox import Outbox
    from esus.state.store import HistoryStore
    from esus.state.telemetry import Telemetry

    site = site_with_action(tmp_path, "127.0.0.1:47809", "127.0.0.1:47810")
    settings = load_settings({"ESUS_SITE": str(site), "ESUS_STATE_DIR": str(tmp_path / "state")}, demo=False)
    clock = ManualClock(datetime(2026, 6, 22, 12, 0, tzinfo=UTC))
    telemetry = Telemetry(Outbox(HistoryStore(tmp_path / "history.db")), "tmv23")
    demand = DemandService(settings, None, None, clock, telemetry)  # type: ignore[arg-type] - only logging is asked
    demand.power_kw = lambda: 41.5  # type: ignore[method-assign]
    ahu, shades = demand.actions
    now = clock.now().timestamp()
    event = Event("e1", 2, now - 60, now + 540)
    state = ShedState(2, now + 540, [event], {
        ahu.name: Override(ahu.name, 22.0, "active", now + 540, 1, None, now, ahu),
        shades.name: Override(shades.name, 100.0, "failed", now + 540, 3, "no answer from 127.0.0.1:47810", now,
                              shades)})

    def lines() -> list[str]:
        batch = telemetry.outbox.oldest(1000)
        return batch.lines if batch else []
    try:
        demand._record(state, now, None)
        first = lines()
        assert len(first) == 3
        assert first[0].startswith("demand_response,site=tmv23 ") and "event_active=1" in first[0] \
            and "signal_level=2" in first[0] and "overrides_shed=1" in first[0] \
            and "overrides_failing=1" in first[0] and "report_kw=41.5" in first[0] and "seconds_to_end=540" in first[0]
        assert "shed=1" in first[1] and "failing=0" in first[1] and 'reason=""' in first[1]
        assert "shed=0" in first[2] and "failing=1" in first[2]
        assert 'reason="no answer from 127.0.0.1:47810"' in first[2]
        demand._record(state, now + 10, None)        # nothing changed, within the minute: nothing logged
        assert len(lines()) == 3
        demand._record(state, now + 60, None)        # once a minute even without a change
        assert len(lines()) == 6
        ended = ShedState(0, None, [], {})
        demand._record(ended, now + 61, None)             # a change is logged at once
        assert len(lines()) == 9 and "event_active=0" in lines()[6] and "seconds_to_end=0" in lines()[6]
    finally:
        demand.close()
        telemetry.outbox.store.close()
        telemetry.store.close()


@in_loop
async def test_a_damaged_ledger_mid_event_releases_what_it_can_no_longer_account_for(tmp_path: Path) -> None:
    """The ledger said which slots esus holds; with it damaged, every shed point is released once
    (a NULL where nothing is held changes nothing), so no override is left on a controller for ever."""
    target = start_target(731)
    port = free_udp_port()
    site = site_with_action(tmp_path, target.address, f"127.0.0.1:{port}")
    settings = load_settings({"ESUS_SITE": str(site), "ESUS_BACNET_ADDRESS": f"127.0.0.1/8:{port}",
                              "ESUS_STATE_DIR": str(tmp_path / "state"), "ESUS_WEATHER_URL": "off"}, demo=False)
    target.objects["analog-value,1"].priorityArray[9] = PriorityValue(real=22.0)   # an earlier run's shed
    ledger = StateFiles(settings.state_dir).demand_response
    ledger.parent.mkdir(parents=True, exist_ok=True)
    ledger.write_bytes(b"SQLite format 3\x00" + bytes(4000))                        # and its record damaged
    service = Service(settings, RealClock(), pin_factory=MockFactory())
    stop = asyncio.Event()
    running = asyncio.create_task(service.run(stop))
    try:
        await wait_until(lambda: target.slot("analog-value,1", 10) is None, 20)
        # the ledger records the release once the controller's answer is processed, a moment later
        await wait_until(lambda: service.demand.ledger.overrides()["AHU-1 supply air setpoint"].state == "released",
                         10)
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)
        target.close()
    assert list(ledger.parent.glob("demand-response.db.corrupt-*"))
