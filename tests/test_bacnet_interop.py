"""The device as a BAS workstation sees it, through an independent stack (rusty-bacnet) over UDP."""

from __future__ import annotations

import asyncio
import math
import socket

import pytest
import rusty_bacnet as rb

from bacnet_server.app import BacnetDevice, BacnetStartError, DeviceIdentity
from bacnet_server.points import Access
from tests.bacnet_harness import (
    DEVICE_ID, INVALID_DATA_TYPE, OT, PID, TABLE, UNKNOWN_OBJECT, VALUE_OUT_OF_RANGE, WRITE_ACCESS_DENIED,
    bits, free_udp_port, oid, serving,
)

DEVICE = rb.ObjectIdentifier(OT.DEVICE, DEVICE_ID)
REAL, NULL = rb.PropertyValue.real, rb.PropertyValue.null


def run(coro):
    return asyncio.run(coro)


def test_who_is_directed_and_broadcast_get_i_am() -> None:
    async def scenario() -> None:
        async with serving() as s:
            await s.client.who_is_directed(s.address)
            for _ in range(50):
                found = [d.object_identifier for d in await s.client.discovered_devices()]
                if found:
                    break
                await asyncio.sleep(0.05)
            assert found == [DEVICE]
            # a local broadcast Who-Is, as a workstation on the same subnet sends it
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                raw.bind(("127.0.0.1", free_udp_port()))
                raw.setblocking(False)
                raw.sendto(bytes.fromhex("810b0008" "0100" "1008"), ("127.255.255.255", s.device.identity.port))
                reply = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(raw, 1500), 3)
            # BVLC unicast, NPDU, unconfirmed I-Am with our device identifier
            instance_tag = bytes.fromhex("c4") + ((8 << 22) | DEVICE_ID).to_bytes(4, "big")
            assert reply[:2] == b"\x81\x0a" and b"\x10\x00" + instance_tag in reply
    run(scenario())


def test_device_object_tells_the_truth() -> None:
    async def scenario() -> None:
        async with serving() as s:
            read = lambda prop: s.client.read_property(s.address, DEVICE, prop)  # noqa: E731
            assert (await read(PID.VENDOR_NAME)).value == "esus"
            assert (await read(PID.OBJECT_NAME)).value == "esus-test"
            object_list = (await read(PID.OBJECT_LIST)).value
            listed = {(o.object_type, o.instance) for o in object_list}
            assert {(OT.ANALOG_VALUE, p.instance) for p in TABLE if p.object_type == "analog-value"} <= listed
            assert len(object_list) == len(TABLE) + 2  # + device + network port
            services = bits(await read(PID.PROTOCOL_SERVICES_SUPPORTED))
            executed = {i for i, on in enumerate(services) if on}
            # readProperty 12, readPropertyMultiple 14, writeProperty 15, subscribeCOV 5,
            # iAm 26, iHave 27, whoHas 33, whoIs 34
            assert executed == {5, 12, 14, 15, 26, 27, 33, 34}
            types = bits(await read(PID.PROTOCOL_OBJECT_TYPES_SUPPORTED))
            assert {i for i, on in enumerate(types) if on} == {2, 5, 8, 19, 56}
            wildcard = rb.ObjectIdentifier(OT.DEVICE, 4194303)
            assert (await s.client.read_property(s.address, wildcard, PID.OBJECT_NAME)).value == "esus-test"
            results = await s.client.read_property_multiple(s.address, [(wildcard, [(PID.VENDOR_NAME, None)])])
            assert results[0]["results"][0]["value"].value == "esus"
    run(scenario())


def test_every_object_has_the_required_properties() -> None:
    required = [PID.OBJECT_NAME, PID.DESCRIPTION, PID.STATUS_FLAGS, PID.EVENT_STATE, PID.OUT_OF_SERVICE,
                PID.RELIABILITY, PID.PRESENT_VALUE]

    async def scenario() -> None:
        async with serving() as s:
            for spec in TABLE:
                props = required + ([PID.UNITS, PID.COV_INCREMENT] if spec.object_type == "analog-value" else [])
                props += [PID.PRIORITY_ARRAY, PID.RELINQUISH_DEFAULT] if spec.access is Access.COMMANDABLE else []
                results = await s.client.read_property_multiple(s.address, [(oid(spec), [(p, None) for p in props])])
                values = {r["property_id"]: r for r in results[0]["results"]}
                assert all(values[p]["error"] is None for p in props), spec.name
                assert values[PID.OBJECT_NAME]["value"].value == spec.name
                assert values[PID.EVENT_STATE]["value"].value == 0
            # ALL, object by object, as a workstation browses; three objects fit one reply
            everything = [item for spec in TABLE for item in
                          await s.client.read_property_multiple(s.address, [(oid(spec), [(PID.ALL, None)])])]
            assert len(await s.client.read_property_multiple(
                s.address, [(oid(spec), [(PID.ALL, None)]) for spec in TABLE[:3]])) == 3
            assert len(everything) == len(TABLE)
            for item in everything:
                ids = {r["property_id"] for r in item["results"]}
                assert {PID.STATUS_FLAGS, PID.RELIABILITY, PID.EVENT_STATE, PID.OUT_OF_SERVICE} <= ids
    run(scenario())


def test_property_lists_leave_out_what_every_object_has_and_the_segmentation_story_agrees() -> None:
    """135 12.1.1.4.1: Property_List names neither Object_Identifier, Object_Name, Object_Type nor
    itself; a device that does not segment has no Max_Segments_Accepted."""
    never = {PID.OBJECT_IDENTIFIER, PID.OBJECT_NAME, PID.OBJECT_TYPE, PID.PROPERTY_LIST}

    async def scenario() -> None:
        async with serving() as s:
            objects = [DEVICE, rb.ObjectIdentifier(OT.NETWORK_PORT, 1)] + [oid(spec) for spec in TABLE]
            for obj in objects:
                listed = set((await s.client.read_property(s.address, obj, PID.PROPERTY_LIST)).value)
                assert listed and not listed & {p.to_raw() for p in never}, obj
            device_listed = set((await s.client.read_property(s.address, DEVICE, PID.PROPERTY_LIST)).value)
            assert PID.SEGMENTATION_SUPPORTED.to_raw() in device_listed
            assert PID.MAX_SEGMENTS_ACCEPTED.to_raw() not in device_listed
            assert (await s.client.read_property(s.address, DEVICE, PID.SEGMENTATION_SUPPORTED)).value == 3
            with pytest.raises(Exception, match="code=32"):   # unknown-property
                await s.client.read_property(s.address, DEVICE, PID.MAX_SEGMENTS_ACCEPTED)
    run(scenario())


def test_commanding_at_priorities_and_relinquishing() -> None:
    async def scenario() -> None:
        async with serving() as s:
            heard: list[float | None] = []
            s.device.on_write("input-power-meter", lambda _obj: heard.append(s.device.commanded("input-power-meter")))
            assert s.device.reliability("input-power-meter") == "noSensor"
            await s.write("input-power-meter", REAL(30.0), priority=16)
            await s.write("input-power-meter", REAL(20.0), priority=10)
            await s.write("input-power-meter", REAL(-5.0), priority=8)  # net meters may go negative
            assert (await s.read("input-power-meter")).value == -5.0
            slots = (await s.read("input-power-meter", PID.PRIORITY_ARRAY)).value
            assert slots[7:] == [-5.0, None, 20.0, None, None, None, None, None, 30.0]
            await s.write("input-power-meter", NULL(), priority=8)
            assert (await s.read("input-power-meter")).value == 20.0
            await s.write("input-power-meter", NULL(), priority=10)
            await s.write("input-power-meter", NULL(), priority=16)
            assert (await s.read("input-power-meter")).value == 0.0  # relinquish default
            assert s.device.commanded("input-power-meter") is None
            assert heard == [30.0, 20.0, -5.0, 20.0, 30.0, None]
            # shade command: relinquished means automatic
            await s.write("shade-1-command", REAL(75.0), priority=10)
            assert s.device.commanded("shade-1-command") == 75.0
            await s.write("shade-1-command", NULL(), priority=10)
            assert s.device.commanded("shade-1-command") is None
            # the kill switch
            assert s.device.commanded("shade-automation-enable") is None
            await s.write("shade-automation-enable", rb.PropertyValue.enumerated(0), priority=8)
            assert int(s.device.present_value("shade-automation-enable")) == 0
    run(scenario())


@pytest.mark.parametrize(("name", "value", "code"), [
    ("input-power-meter", REAL(float("nan")), VALUE_OUT_OF_RANGE),
    ("input-power-meter", REAL(float("inf")), VALUE_OUT_OF_RANGE),
    ("input-power-meter", REAL(-math.inf), VALUE_OUT_OF_RANGE),
    ("input-power-meter", REAL(500.5), VALUE_OUT_OF_RANGE),
    ("input-power-meter", REAL(-50.5), VALUE_OUT_OF_RANGE),
    ("input-power-meter", rb.PropertyValue.character_string("12"), INVALID_DATA_TYPE),
    ("input-power-meter", rb.PropertyValue.unsigned(12), INVALID_DATA_TYPE),
    ("input-power-meter", rb.PropertyValue.boolean(True), INVALID_DATA_TYPE),
    ("shade-1-command", REAL(100.5), VALUE_OUT_OF_RANGE),
    ("shade-1-command", REAL(-1.0), VALUE_OUT_OF_RANGE),
    ("shade-automation-enable", rb.PropertyValue.enumerated(2), VALUE_OUT_OF_RANGE),
    ("shade-automation-enable", REAL(1.0), INVALID_DATA_TYPE),
])
def test_bad_values_are_rejected_and_change_nothing(name: str, value: rb.PropertyValue, code: int) -> None:
    async def scenario() -> None:
        async with serving() as s:
            good = rb.PropertyValue.enumerated(1) if name == "shade-automation-enable" else REAL(42.0)
            await s.write(name, good, priority=10)
            before = (await s.read(name, PID.PRIORITY_ARRAY)).value
            writes = s.device.writes
            assert await s.error_code(s.write(name, value, priority=10)) == code
            assert (await s.read(name, PID.PRIORITY_ARRAY)).value == before
            assert s.device.writes == writes
    run(scenario())


def test_read_only_points_and_fixed_properties_deny_writes() -> None:
    async def scenario() -> None:
        async with serving() as s:
            for spec in TABLE:
                if spec.access is Access.READ:
                    value = REAL(1.0) if spec.object_type == "analog-value" else (
                        rb.PropertyValue.enumerated(1) if spec.object_type == "binary-value"
                        else rb.PropertyValue.unsigned(1))
                    assert await s.error_code(s.write(spec.name, value)) == WRITE_ACCESS_DENIED, spec.name
                assert await s.error_code(s.write(spec.name, rb.PropertyValue.character_string("x"),
                                                  prop=PID.OBJECT_NAME)) == WRITE_ACCESS_DENIED
                assert await s.error_code(s.write(spec.name, rb.PropertyValue.character_string("x"),
                                                  prop=PID.DESCRIPTION)) == WRITE_ACCESS_DENIED
            assert await s.error_code(s.write("one-hour-future-power", rb.PropertyValue.enumerated(98),
                                              prop=PID.UNITS)) == WRITE_ACCESS_DENIED
            for prop, value in [(PID.OBJECT_NAME, rb.PropertyValue.character_string("pwned")),
                                (PID.VENDOR_NAME, rb.PropertyValue.character_string("x")),
                                (PID.PROTOCOL_SERVICES_SUPPORTED, rb.PropertyValue.bit_string(7, b"\x00"))]:
                code = await s.error_code(s.client.write_property(s.address, DEVICE, prop, value))
                assert code == WRITE_ACCESS_DENIED
            assert (await s.client.read_property(s.address, DEVICE, PID.OBJECT_NAME)).value == "esus-test"
            assert await s.error_code(s.client.write_property(
                s.address, rb.ObjectIdentifier(OT.ANALOG_VALUE, 9999), PID.PRESENT_VALUE, REAL(1.0))) == UNKNOWN_OBJECT
    run(scenario())


def test_out_of_service_lets_the_technician_override_a_read_only_point() -> None:
    async def scenario() -> None:
        async with serving() as s:
            s.device.set_value("one-hour-future-power", 12.0)
            await s.write("one-hour-future-power", rb.PropertyValue.boolean(True), prop=PID.OUT_OF_SERVICE)
            flags = bits(await s.read("one-hour-future-power", PID.STATUS_FLAGS))
            assert flags[3] is True  # out-of-service flag
            await s.write("one-hour-future-power", REAL(99.0))
            s.device.set_value("one-hour-future-power", 13.0)  # esus keeps computing, but does not overwrite
            assert (await s.read("one-hour-future-power")).value == 99.0
            await s.write("one-hour-future-power", rb.PropertyValue.boolean(False), prop=PID.OUT_OF_SERVICE)
            assert await s.error_code(s.write("one-hour-future-power", REAL(5.0))) == WRITE_ACCESS_DENIED
            s.device.set_value("one-hour-future-power", 14.0)
            assert (await s.read("one-hour-future-power")).value == 14.0
    run(scenario())


async def next_notification(notes, timeout: float = 3.0) -> rb.CovNotification:
    return await asyncio.wait_for(notes.__anext__(), timeout)


def cov_values(note: rb.CovNotification) -> dict:
    return {v["property_id"]: v["value"] for v in note.values}


@pytest.mark.parametrize("confirmed", [True, False])
def test_cov_initial_on_change_and_on_status_flags_only(confirmed: bool) -> None:
    async def scenario() -> None:
        async with serving() as s:
            s.device.set_value("one-hour-future-power", 10.0)
            notes = await s.client.cov_notifications()
            target = oid(next(p for p in TABLE if p.name == "one-hour-future-power"))
            await s.client.subscribe_cov(s.address, 17, target, confirmed, 300)
            first = cov_values(await next_notification(notes))
            assert first[PID.PRESENT_VALUE].value == 10.0
            s.device.set_value("one-hour-future-power", 10.2)   # below the 0.5 kW increment: silent
            s.device.set_value("one-hour-future-power", 11.0)   # 1.0 from the last report: notify
            change = await next_notification(notes)
            assert change.monitored_object_identifier == target
            assert cov_values(change)[PID.PRESENT_VALUE].value == 11.0
            s.device.set_fault("one-hour-future-power", "communicationFailure")  # status only
            faulted = cov_values(await next_notification(notes))
            assert bits(faulted[PID.STATUS_FLAGS])[1] is True
            assert faulted[PID.PRESENT_VALUE].value == 11.0
            s.device.set_value("one-hour-future-power", 11.1)  # recovers: flags change again
            recovered = cov_values(await next_notification(notes))
            assert bits(recovered[PID.STATUS_FLAGS])[1] is False
    run(scenario())


def test_cov_on_binary_and_multistate_points() -> None:
    async def scenario() -> None:
        async with serving() as s:
            s.device.set_value("high-load-conditions", "inactive")
            s.device.set_value("shade-1-mode", 1)
            notes = await s.client.cov_notifications()
            for name in ("high-load-conditions", "shade-1-mode"):
                await s.client.subscribe_cov(s.address, 5, oid(next(p for p in TABLE if p.name == name)), False, 60)
                await next_notification(notes)
            s.device.set_value("high-load-conditions", "active")
            assert cov_values(await next_notification(notes))[PID.PRESENT_VALUE].value == 1
            s.device.set_value("shade-1-mode", 4)
            assert cov_values(await next_notification(notes))[PID.PRESENT_VALUE].value == 4
    run(scenario())


def test_a_second_server_on_the_same_port_refuses_to_start() -> None:
    async def scenario() -> None:
        port = free_udp_port()
        first = BacnetDevice(DeviceIdentity(1, "first", "127.0.0.1", 8, port), TABLE)
        await first.start()
        try:
            second = BacnetDevice(DeviceIdentity(2, "second", "127.0.0.1", 8, port), TABLE)
            with pytest.raises(BacnetStartError, match="already in use"):
                await second.start()
        finally:
            first.close()
        with pytest.raises(BacnetStartError, match="not an address of this machine"):
            await BacnetDevice(DeviceIdentity(3, "x", "192.0.2.77", 24, port), TABLE).start()
    run(scenario())


def test_unsupported_services_are_rejected_not_half_served() -> None:
    async def scenario() -> None:
        async with serving() as s:
            spec = next(p for p in TABLE if p.name == "one-hour-future-power")
            with pytest.raises(rb.BacnetError):
                await s.client.write_property_multiple(s.address, [(oid(spec), [(PID.PRESENT_VALUE, REAL(5.0), None, None)])])
            assert s.device.present_value("one-hour-future-power") == 0.0
    run(scenario())


def test_the_demand_limit_points_read_back_as_published_and_refuse_writes() -> None:
    """What an EV charger's or battery's controller (and the BAS) reads of demand limiting, through
    a stack no one here wrote: the kW points with their units, the level as its state text."""
    from bacnet_server.points import DL_LEVELS, ShadeGroupRef, point_table

    table = point_table(-50.0, 500.0, [ShadeGroupRef(1, "east")], demand_limit_interval_min=15)
    published = {"dl-period-peak": 41.5, "dl-target": 44.0, "dl-headroom": -2.5, "dl-projected": 46.5}

    async def scenario() -> None:
        async with serving(table) as s:
            for name, kw in published.items():
                s.device.set_value(name, kw)
            s.device.set_value("dl-level", 3)   # level 2, as its state (state = level + 1)
            for name, kw in published.items():
                spec = next(p for p in table if p.name == name)
                [item] = await s.client.read_property_multiple(
                    s.address, [(oid(spec), [(PID.PRESENT_VALUE, None), (PID.UNITS, None)])])
                values = {r["property_id"]: r["value"] for r in item["results"]}
                assert values[PID.PRESENT_VALUE].value == pytest.approx(kw) and values[PID.UNITS].value == 48, name
                assert await s.error_code(s.client.write_property(s.address, oid(spec), PID.PRESENT_VALUE,
                                                                  REAL(0.0))) == WRITE_ACCESS_DENIED, name
            level = oid(next(p for p in table if p.name == "dl-level"))
            assert (await s.client.read_property(s.address, level, PID.PRESENT_VALUE)).value == 3
            assert (await s.client.read_property(s.address, level, PID.NUMBER_OF_STATES)).value == len(DL_LEVELS)
            texts = await s.client.read_property(s.address, level, PID.STATE_TEXT)
            assert list(texts.value) == list(DL_LEVELS)
            assert await s.error_code(s.client.write_property(s.address, level, PID.PRESENT_VALUE,
                                                              rb.PropertyValue.unsigned(1))) == WRITE_ACCESS_DENIED
    run(scenario())
