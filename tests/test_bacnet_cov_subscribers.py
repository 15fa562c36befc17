"""COV subscribers that do not answer: a confirmed notification that no one acknowledges is counted
with the bad traffic (not an asyncio traceback each), a subscriber that leaves three in a row
unanswered loses its subscription, and one address holds at most MAX_SUBSCRIPTIONS_PER_ADDRESS."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from bacnet_server.app import MAX_SUBSCRIPTIONS_PER_ADDRESS
from tests.bacnet_harness import free_udp_port, serving


def subscribe(process: int, confirmed: bool = True) -> bytes:
    """SubscribeCOV for AV 2 (one-hour-future-power), lifetime 120 s, from process `process`."""
    apdu = (bytes.fromhex("00050305") + bytes([0x09, process]) + bytes.fromhex("1c00800002")
            + bytes([0x29, 1 if confirmed else 0]) + bytes.fromhex("3978"))
    body = bytes.fromhex("0104") + apdu
    return bytes.fromhex("810a") + (len(body) + 4).to_bytes(2, "big") + body


def held_by(app, port: int) -> int:   # type: ignore[no-untyped-def]
    return sum(str(cov.client_addr).endswith(f":{port}") for cov in app._subscriptions())


def test_a_subscriber_that_stops_answering_loses_its_subscription_and_no_traceback_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        async with serving() as s:
            app = s.device.app
            app.device_object.apduTimeout = 100          # a silent subscriber costs 0.1 s a notification
            app.device_object.numberOfApduRetries = 0
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
                port = free_udp_port()
                silent.bind(("127.0.0.1", port))
                silent.sendto(subscribe(17), ("127.0.0.1", s.device.identity.port))
                for _ in range(50):
                    await asyncio.sleep(0.05)
                    if held_by(app, port):
                        break
                assert held_by(app, port) == 1
                for value in range(1, 8):                # each change a confirmed notification, unanswered
                    s.device.set_value("one-hour-future-power", float(value))
                    await asyncio.sleep(0.4)
                    if not held_by(app, port):
                        break
                assert held_by(app, port) == 0
                assert any(why.startswith("COV notification unanswered") for why in s.device.bad_traffic.window)
                assert "COV subscription ended: its subscriber stopped answering" in s.device.bad_traffic.window
    asyncio.run(scenario())
    assert not [r for r in caplog.records if "Exception in callback" in r.getMessage() or r.exc_info]


def test_one_address_holds_at_most_its_share_of_subscriptions() -> None:
    """A flood of subscriptions from one address (spoofed, or a BAS gone wrong): the first
    MAX_SUBSCRIPTIONS_PER_ADDRESS are taken, the rest refused; a renewal of one held is not."""
    async def scenario() -> None:
        async with serving() as s:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
                port = free_udp_port()
                flood.bind(("127.0.0.1", port))
                flood.settimeout(2)
                async def answer(process: int) -> int:
                    """The reply's PDU type: 2 SimpleACK, 5 Error (the notifications between are skipped)."""
                    flood.sendto(subscribe(process, confirmed=False), ("127.0.0.1", s.device.identity.port))
                    while True:
                        reply = await asyncio.get_running_loop().run_in_executor(None, flood.recv, 1500)
                        if reply[6] >> 4 in (2, 5):
                            return reply[6] >> 4
                kinds = [await answer(process) for process in range(1, MAX_SUBSCRIPTIONS_PER_ADDRESS + 11)]
                assert held_by(s.device.app, port) == MAX_SUBSCRIPTIONS_PER_ADDRESS
                assert kinds.count(2) == MAX_SUBSCRIPTIONS_PER_ADDRESS and kinds.count(5) == 10
                assert await answer(1) == 2   # a renewal of one held
    asyncio.run(scenario())
