"""Thousands of random, truncated and mutated BACnet/IP datagrams: the device keeps answering and the
log stays quiet; malformed confirmed requests get the Reject or Abort the standard asks for."""

from __future__ import annotations

import asyncio
import logging
import random
import socket

import pytest

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


def test_garbage_does_not_break_the_device_nor_flood_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

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
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) <= 2, [r.getMessage()[:120] for r in records[:5]]   # a summary, not 5,000 tracebacks
    assert not any(r.exc_info for r in records)
    summary = next(r.getMessage() for r in records if "malformed, unsupported or unanswered datagrams" in r.getMessage())
    assert "DecodingError" in summary, summary


def bvll(apdu_hex: str) -> bytes:
    body = bytes.fromhex("0104" + apdu_hex)   # NPDU: version 1, expecting a reply
    return bytes.fromhex("810a") + (len(body) + 4).to_bytes(2, "big") + body


def answer_to(apdu: str) -> bytes:
    """The device's reply to one confirmed request sent as raw bytes."""
    async def scenario() -> bytes:
        async with serving() as s:
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                raw.bind(("127.0.0.1", free_udp_port()))
                raw.settimeout(3)
                raw.sendto(bvll(apdu), ("127.0.0.1", s.device.identity.port))
                return await loop.run_in_executor(None, raw.recv, 1500)
    return asyncio.run(scenario())


@pytest.mark.parametrize(("apdu", "answer"), [
    ("0005070c0c00800002", "600705"),           # ReadProperty without its property id: reject missing-required
    ("0005070c0dffffffffff1955", "600704"),     # a tag length of 0xFFFFFFFF: reject invalid-tag
    ("000e070c0c008000021955", "710700"),       # max-APDU code 14 (reserved): abort other
    ("000507400c00800002", "600709"),           # service choice 64: reject unrecognized-service
    ("0005070c0c008000021955", "300" + "70c"),  # a well-formed read still gets its ComplexACK
])
def test_a_malformed_confirmed_request_gets_a_reject_or_abort(apdu: str, answer: str) -> None:
    reply = answer_to(apdu)
    assert reply[:2] == b"\x81\x0a" and reply[4:6] == b"\x01\x00"       # BVLL unicast, NPDU without a reply
    assert reply[6:].hex().startswith(answer), reply.hex()


def test_a_cov_subscription_without_a_lifetime_is_indefinite() -> None:
    # SubscribeCOV: process 17, AV 2, issueConfirmedNotifications FALSE, no lifetime
    assert answer_to("00050805" "0911" "1c00800002" "2900")[6:].hex() == "200805"   # SimpleACK, not an error
