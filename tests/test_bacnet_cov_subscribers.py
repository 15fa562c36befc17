"""COV subscribers that do not answer: a confirmed notification that no one acknowledges is counted
with the bad traffic (not an asyncio traceback each), a subscriber that leaves three in a row
unanswered loses its subscription, and one address holds at most MAX_SUBSCRIPTIONS_PER_ADDRESS."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import subprocess
import sys
import time

import pytest
import rusty_bacnet as rb

from bacnet_server.app import MAX_SUBSCRIPTIONS_PER_ADDRESS
from tests.bacnet_harness import TABLE, free_udp_port, oid, serving


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


def test_every_flag_change_is_notified_in_order_under_cpu_load() -> None:
    """A BAS that trusts COV must hear each change of a load flag, with its value, in order, while
    every core is busy: one subscriber confirmed, one unconfirmed, both through rusty-bacnet (a
    stack no one here wrote). Changes come one per event-loop turn, as esus's parts make them, some
    with the loop held up by CPU-bound work between them."""
    changes = 120
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]

    async def scenario() -> dict[tuple[str, bool], list[int]]:
        heard: dict[tuple[str, bool], list[int]] = {}
        async with serving() as s:
            names = {oid(p).instance: p.name for p in TABLE if p.name.endswith("-load-conditions")}
            for name in names.values():
                s.device.set_value(name, "inactive")
            notes = await s.client.cov_notifications()
            for process, (name, confirmed) in enumerate((n, c) for n in names.values() for c in (True, False)):
                target = oid(next(p for p in TABLE if p.name == name))
                await s.client.subscribe_cov(s.address, 60 + process, target, confirmed, 600)
            expected = 4 * (1 + changes)   # four subscriptions, each its first notification and the changes

            async def listen() -> None:
                async for note in notes:
                    name = names[note.monitored_object_identifier.instance]
                    confirmed = note.subscriber_process_identifier % 2 == 0
                    for value in note.values:
                        if value["property_id"] == rb.PropertyIdentifier.PRESENT_VALUE:
                            heard.setdefault((name, confirmed), []).append(value["value"].value)

            listener = asyncio.create_task(listen())
            rng = random.Random(36)
            for n in range(changes):
                for name in names.values():
                    s.device.set_value(name, "active" if n % 2 == 0 else "inactive")
                    await asyncio.sleep(0)           # the next change comes in a later turn of the loop
                if rng.random() < 0.3:
                    time.sleep(0.02)                 # CPU-bound work holding the loop up
                await asyncio.sleep(rng.choice((0.0, 0.002, 0.01)))
            deadline = time.monotonic() + 30          # generous: the machine is as busy as it gets
            while sum(map(len, heard.values())) < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            listener.cancel()
        return heard

    try:
        heard = asyncio.run(scenario())
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    toggles = [0] + [1 if n % 2 == 0 else 0 for n in range(changes)]
    assert len(heard) == 4
    for key, values in heard.items():
        assert values == toggles, f"{key}: heard {len(values)} of {len(toggles)}, first difference at " \
            f"{next((i for i, (a, b) in enumerate(zip(values, toggles, strict=False)) if a != b), len(values))}"
