"""Thousands of random, truncated and mutated BACnet/IP datagrams; the device keeps answering."""

from __future__ import annotations

import asyncio
import random
import socket

import rusty_bacnet as rb

from tests.bacnet_harness import DEVICE_ID, OT, PID, free_udp_port, serving

READ_AV2 = bytes.fromhex("810a0011" "0104" "0005010c" "0c00800002" "1955")
WHO_IS = bytes.fromhex("810b0008" "0100" "1008")
WRITE_AV2_NAME = bytes.fromhex("810a0016" "0104" "0005020f" "0c00800002" "194d" "3e7503006869" "3f")
SUBSCRIBE = bytes.fromhex("810a0013" "0104" "00050305" "0911" "1c00800002" "2901" "3978")
VALID = [READ_AV2, WHO_IS, WRITE_AV2_NAME, SUBSCRIBE]


def datagrams(count: int, seed: int = 1234) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        base = rng.choice(VALID)
        kind = i % 5
        if kind == 0:
            out.append(rng.randbytes(rng.randint(0, 600)))
        elif kind == 1:
            out.append(base[: rng.randint(0, len(base) - 1)])
        elif kind == 2:
            data = bytearray(base)
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            out.append(bytes(data))
        elif kind == 3:
            out.append(base[:4] + rng.randbytes(rng.randint(0, 64)))
        else:
            out.append(base + rng.randbytes(rng.randint(1, 32)))
    return out


def test_garbage_does_not_break_the_device() -> None:
    async def scenario() -> None:
        async with serving() as s:
            s.device.set_value("one-hour-future-power", 7.5)
            port = s.device.identity.port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                raw.bind(("127.0.0.1", free_udp_port()))
                raw.setblocking(False)
                for n, data in enumerate(datagrams(5000)):
                    raw.sendto(data, ("127.0.0.1", port))
                    if n % 50 == 0:
                        await asyncio.sleep(0.005)  # let the device drain its socket
            await asyncio.sleep(0.5)
            device = rb.ObjectIdentifier(OT.DEVICE, DEVICE_ID)
            assert (await s.client.read_property(s.address, device, PID.OBJECT_NAME)).value == "esus-test"
            assert (await s.read("one-hour-future-power")).value == 7.5
            for _ in range(20):
                await s.write("input-power-meter", rb.PropertyValue.real(12.0), priority=10)
            assert (await s.read("input-power-meter")).value == 12.0
    asyncio.run(scenario())
