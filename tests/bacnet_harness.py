"""A device on loopback and an independent BACnet client (rusty-bacnet) to talk to it."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import rusty_bacnet as rb

from bacnet_server.app import BacnetDevice, DeviceIdentity
from bacnet_server.points import PointSpec, ShadeGroupRef, point_table

PID = rb.PropertyIdentifier
OT = rb.ObjectType
DEVICE_ID = 599
TABLE = point_table(-50.0, 500.0, [ShadeGroupRef(1, "east"), ShadeGroupRef(2, "south")])
TYPE = {"analog-value": OT.ANALOG_VALUE, "binary-value": OT.BINARY_VALUE,
        "multi-state-value": OT.MULTI_STATE_VALUE}


def free_udp_port() -> int:
    """A port free on 127.0.0.1 and on the loopback broadcast address."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.255.255.255", port))
            return port
    raise RuntimeError("no free UDP port")


def oid(spec: PointSpec) -> rb.ObjectIdentifier:
    return rb.ObjectIdentifier(TYPE[spec.object_type], spec.instance)


def spec_named(name: str) -> PointSpec:
    return next(p for p in TABLE if p.name == name)


def bits(value: rb.PropertyValue) -> list[bool]:
    """A BACnet bit string as booleans, bit 0 first."""
    unused, data = value.value["unused_bits"], value.value["data"]
    out = [bool(byte >> (7 - i) & 1) for byte in data for i in range(8)]
    return out[: len(out) - unused] if unused else out


@dataclass
class Session:
    device: BacnetDevice
    client: rb.BACnetClient
    address: str

    async def read(self, name: str, prop: rb.PropertyIdentifier = PID.PRESENT_VALUE) -> rb.PropertyValue:
        return await self.client.read_property(self.address, oid(spec_named(name)), prop)

    async def write(self, name: str, value: rb.PropertyValue, priority: int | None = None,
                    prop: rb.PropertyIdentifier = PID.PRESENT_VALUE) -> None:
        await self.client.write_property(self.address, oid(spec_named(name)), prop, value, priority=priority)

    async def error_code(self, coro) -> int | None:
        """Await a request; the BACnet error code it raised, or None when it succeeded."""
        try:
            await coro
        except rb.BacnetProtocolError as exc:
            return exc.error_code
        return None


@contextlib.asynccontextmanager
async def serving(points: list[PointSpec] | None = None, device: BacnetDevice | None = None,
                  timeout_ms: int = 2000) -> AsyncIterator[Session]:
    if device is None:
        device = BacnetDevice(DeviceIdentity(DEVICE_ID, "esus-test", "127.0.0.1", 8, free_udp_port()),
                              points or TABLE)
    await device.start()
    try:
        async with rb.BACnetClient(interface="127.0.0.1", port=free_udp_port(),
                                   broadcast_address="127.255.255.255", apdu_timeout_ms=timeout_ms) as client:
            yield Session(device, client, f"127.0.0.1:{device.identity.port}")
    finally:
        device.close()


# BACnet error codes (Clause 18) used in the tests
INVALID_DATA_TYPE, VALUE_OUT_OF_RANGE, WRITE_ACCESS_DENIED, UNKNOWN_OBJECT = 9, 37, 40, 31
