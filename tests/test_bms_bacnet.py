"""The BACnet source's own cases, against bacpypes3 controllers on loopback: in the service's event
loop through its device (as the service runs it), a controller offline at start and learnt when it
answers, a present value stamped with the poll's time, a TrendLog of something else ignored."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from bacpypes3.basetypes import DeviceObjectPropertyReference
from bacpypes3.primitivedata import ObjectIdentifier

from bacnet_server.client import BacnetClient
from bms_wrapper.bacnet import BacnetSource, parse_point
from bms_wrapper.simulator import SimPoint, values
from esus.parts.bms import BmsService, series_name
from esus.parts.bms_sources import ClientReads, make_adapter, on_loop, service_context
from esus.runtime.clock import ManualClock
from esus.settings.config import load_settings
from esus.state.outbox import Outbox
from esus.state.store import HistoryStore
from esus.state.telemetry import Telemetry
from tests.bacnet_controllers import Controller, ControllerPoint
from tests.bacnet_harness import free_udp_port
from tests.bms_servers import SITE

NOW = datetime(2026, 6, 10, 12, 0, 30, tzinfo=UTC)
CPH = ZoneInfo("Europe/Copenhagen")
ROOM, WIND = SimPoint(6397, "Rum 1.213 temperature", "temperature"), SimPoint(6428, "Wind", "wind_speed")


def controller(clock: ManualClock, point: SimPoint, trend_logs: bool, port: int | None = None) -> Controller:
    return Controller(1000 + point.externallogid % 1000, port or free_udp_port(),
                      [ControllerPoint(f"analog-input,{point.externallogid}", point.source, point)], trend_logs,
                      clock.now)


def site(tmp_path: Path, points: dict[str, str]) -> Path:
    """The example site with only these BACnet points (id -> kind), and the shades' wind point the first."""
    text = SITE.read_text().replace('api = "aau-v1"', 'api = "bacnet"').replace("timeout_s = 10 ", "timeout_s = 2 ")
    first = re.search(r"^\[\[bms\.points\]\]", text, flags=re.M).start()
    text = re.sub(r"^\[\[bms\.points\]\]\n(?:[a-z_]+ = .*\n)+\n?", "", text, flags=re.M)
    blocks = "".join(f'[[bms.points]]\nid = "{i}"\nsource = "{i}"\nroom = "1.213"\nkind = "{kind}"\n\n'
                     for i, kind in points.items())
    text = text[:first] + blocks + text[first:]
    text = text.replace("wind_point = 6428", f'wind_point = "{next(iter(points))}"')
    text = re.sub(r"^irradiance_point = .*\n", "", text, flags=re.M)
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def test_in_the_service_loop_through_its_device_with_one_controller_offline_at_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The poll's threads hand each request to the loop that runs the device (service_context), a
    controller that does not answer is one line and its points fail; when it answers it is learnt and
    its TrendLog back-fills the time it was away."""
    clock = ManualClock(NOW)
    wind, room = controller(clock, WIND, trend_logs=False), controller(clock, ROOM, trend_logs=True)
    wind_id, room_id = f"{wind.address} analog-input,6428", f"{room.address} analog-input,6397"
    settings = load_settings({"ESUS_SITE": str(site(tmp_path, {wind_id: "wind_speed", room_id: "temperature"})),
                              "ESUS_STATE_DIR": str(tmp_path / "state")})

    async def scene() -> None:
        wind.start()   # the room's controller is off
        device = BacnetClient.own_device(f"127.0.0.1/8:{free_udp_port()}", 599, "esus").application()
        store = HistoryStore(settings.state_dir / "history.db")
        service = BmsService(settings, store, Telemetry(Outbox(store), "TMV23"), clock,
                             make_adapter(settings, context=service_context(settings, lambda: device, clock.now)))
        with caplog.at_level(logging.INFO):
            await service.poll(clock.now())
            minute = np.array([int(NOW.timestamp()) // 60 * 60])
            assert service.value(wind_id) == pytest.approx(values(WIND, minute)[0], rel=1e-6)   # a BACnet Real
            assert service.last_report.failures.keys() == {room_id}
            assert caplog.text.count(f"BACnet controller {room.address}: ") == 1
            clock.jump(600)
            room.start()                                     # back, ten minutes later
            await service.poll(clock.now())
        assert not service.last_report.failures
        times = store.range(series_name(room_id), 0, 2**40)[0]
        assert times.size == 24 * 60 and times[-1] == int(clock.now().timestamp()) // 60 * 60   # a day back
        assert store.range(series_name(wind_id), 0, 2**40)[0].size == 2   # one reading a poll
        service.close()
        store.close()
        device.close()
        wind.stop()
        room.stop()

    asyncio.run(scene())


def test_a_present_value_is_stamped_with_the_poll_and_only_inside_the_window() -> None:
    clock = ManualClock(NOW)

    async def scene() -> None:
        wind = controller(clock, WIND, trend_logs=False).start()
        client = BacnetClient.own_device(f"127.0.0.1/8:{free_udp_port()}", 599, "esus", timeout_s=2)
        source = BacnetSource([f"{wind.address} analog-input,6428"], ClientReads(client),
                              on_loop(asyncio.get_running_loop(), 5), local_tz=CPH, now=clock.now)
        point = f"{wind.address} analog-input,6428"
        samples = await asyncio.to_thread(source.read_history, point, NOW - timedelta(hours=8), NOW + timedelta(1), "m/s")
        assert [(s.time, s.unit) for s in samples] == [(NOW.replace(microsecond=0), "m/s")]
        assert await asyncio.to_thread(source.read_history, point, NOW - timedelta(hours=8), NOW) == []
        assert source.controllers[wind.address].trend_logs == {}
        client.close()
        wind.stop()

    asyncio.run(scene())


def test_a_trend_log_of_another_property_or_object_is_not_taken_for_the_point() -> None:
    clock = ManualClock(NOW)

    async def scene() -> None:
        room = controller(clock, ROOM, trend_logs=True).start()
        log = room.app.get_object_id(ObjectIdentifier("trend-log,1"))
        client = BacnetClient.own_device(f"127.0.0.1/8:{free_udp_port()}", 599, "esus", timeout_s=2)
        point = f"{room.address} analog-input,6397"
        for logged in (DeviceObjectPropertyReference(objectIdentifier=("analog-input", 6397),
                                                     propertyIdentifier="status-flags"),
                       DeviceObjectPropertyReference(objectIdentifier=("analog-input", 1),
                                                     propertyIdentifier="present-value")):
            log.logDeviceObjectProperty = logged
            source = BacnetSource([point], ClientReads(client), on_loop(asyncio.get_running_loop(), 5),
                                  local_tz=CPH, now=clock.now)
            samples = await asyncio.to_thread(source.read_history, point, NOW - timedelta(hours=1), NOW + timedelta(1))
            assert len(samples) == 1 and room.read_ranges == 0   # the present value, not a log
        client.close()
        room.stop()

    asyncio.run(scene())


@pytest.mark.parametrize("text", ["192.168.1.30", "analog-input,3", "192.168.1.30 analog input 3", "6397"])
def test_a_point_id_that_names_no_object_is_one_line(text: str) -> None:
    with pytest.raises(ValueError, match="expected '<address> <object-type>,<instance>'"):
        parse_point(text)
    assert parse_point("192.168.1.30:47809  analog-value,12") == ("192.168.1.30:47809", "analog-value,12")
