"""The BACnet source against a controller that no one here wrote: rusty-bacnet (a Rust stack, its
own process: tests/peers/rusty_controller.py) keeps its Trend Logs itself, by ReadRange by time and
by sequence number. The truth each read is held to is what rusty-bacnet's own client decodes from
the same buffer. The controller stamps its records in UTC, so the source reads it as a site in UTC."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from rusty_bacnet import BACnetClient, ObjectIdentifier, ObjectType, PropertyIdentifier, decode_log_records

from bacnet_server.client import BacnetClient
from bms_wrapper.bacnet import BacnetSource
from esus.parts.bms_sources import ClientReads, on_loop
from tests.bacnet_harness import free_udp_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def controller() -> Iterator[str]:
    """The controller's address, once its logs hold records (a pause, and a wrapped buffer)."""
    port = free_udp_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.peers.rusty_controller", str(port)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def logged(address: str, trend_log: int) -> list[tuple[datetime, float | None]]:
    """The buffer as rusty-bacnet's client reads it: (UTC time, the value, None for a status record or
    a failure)."""
    async def read() -> list[dict]:
        async with BACnetClient(interface="127.0.0.1", port=free_udp_port(),
                                broadcast_address="127.255.255.255") as client:
            return decode_log_records(await client.read_range(
                address, ObjectIdentifier(ObjectType.TREND_LOG, trend_log), PropertyIdentifier.LOG_BUFFER))
    records = []
    for record in asyncio.run(read()):
        (year, month, day, _), (hour, minute, second, hundredths) = record["timestamp"]
        datum = record["datum"]
        records.append((datetime(year, month, day, hour, minute, second, hundredths * 10_000, tzinfo=UTC),
                        datum["real"] if datum["kind"] == "real" else None))
    return records


def esus_reads(address: str, point: str, start: datetime, end: datetime, per_read: int = 40):
    """The source's samples of a window, through esus's own BACnet client on a loop of its own, and
    the controller as the source learnt it."""
    async def scene():
        client = BacnetClient.own_device(f"127.0.0.1/8:{free_udp_port()}", 597, "esus", timeout_s=3)
        source = BacnetSource([point], ClientReads(client), on_loop(asyncio.get_running_loop(), 10),
                              local_tz=ZoneInfo("UTC"), now=lambda: datetime.now(UTC), records_per_read=per_read)
        try:
            samples = await asyncio.to_thread(source.read_history, point, start, end, "°C")
            return samples, source.controllers[address]
        finally:
            client.close()
    return asyncio.run(scene())


def test_a_trend_log_that_names_its_device_and_pauses_is_read_whole(controller: str) -> None:
    truth = logged(controller, 1)
    assert any(value is None for _, value in truth[1:-1]), "the controller's log has no pause"
    start, end = truth[0][0], truth[-1][0] + timedelta(milliseconds=1)
    for per_read in (40, 3):   # one page; then pages by sequence number across the pause
        samples, learnt = esus_reads(controller, f"{controller} analog-input,1", start, end, per_read)
        assert learnt.trend_logs.get("analog-input,1") == "trend-log,1"
        assert [(s.time, s.value) for s in samples] == [(t, pytest.approx(v)) for t, v in truth if v is not None]


def test_a_wrapped_log_is_paged_across_the_end_of_its_sequence_numbers(controller: str) -> None:
    truth = logged(controller, 2)
    assert len(truth) == 8   # full: its first records were overwritten
    start, end = truth[0][0] - timedelta(minutes=5), truth[-1][0] + timedelta(milliseconds=1)
    samples, _ = esus_reads(controller, f"{controller} analog-input,2", start, end, per_read=2)
    assert [(s.time, s.value) for s in samples] == [(t, pytest.approx(v)) for t, v in truth]


def test_a_log_of_another_devices_object_is_not_taken_for_this_ones(controller: str) -> None:
    now = datetime.now(UTC)
    samples, learnt = esus_reads(controller, f"{controller} analog-input,3", now - timedelta(minutes=1),
                                 now + timedelta(minutes=1))
    assert "analog-input,3" not in learnt.trend_logs
    assert len(samples) == 1 and 300 < samples[0].value < 400   # the present value, read at the poll
