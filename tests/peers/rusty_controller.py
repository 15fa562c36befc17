"""A building controller played by rusty-bacnet (a Rust BACnet stack no one here wrote), run as its
own process by tests/test_bms_bacnet_peer.py: analog inputs whose present values climb by one unit a
second, and Trend Logs kept by rusty-bacnet itself (polled every second, stamped with its clock, UTC):

- trend-log,1 logs analog-input,1, its reference naming this device (as bacnet-stack fills it in);
  logging is switched off and on once, so the buffer holds log-status records between the values;
- trend-log,2 logs analog-input,2 in a buffer of 8 records, full, whose sequence numbers go on from
  2^32 - 1 to 1 in the middle of it;
- trend-log,3 logs analog-input,3 of another device (9999): not this controller's input.

Usage: python -m tests.peers.rusty_controller PORT; prints "ready" once the logs hold records."""

from __future__ import annotations

import asyncio
import sys
import time

from rusty_bacnet import BACnetServer, ObjectIdentifier, ObjectType, PropertyIdentifier, PropertyValue

DEVICE = 4002
OTHER_DEVICE = 9999
#: The values every input takes: its instance times 100 plus the seconds since the controller started.
BASE = {1: 100.0, 2: 200.0, 3: 300.0}


def reference(instance: int, device: int) -> dict[str, object]:
    return {"object_identifier": ObjectIdentifier(ObjectType.ANALOG_INPUT, instance),
            "property_identifier": PropertyIdentifier.PRESENT_VALUE, "property_array_index": None,
            "device_identifier": ObjectIdentifier(ObjectType.DEVICE, device)}


async def serve(port: int) -> None:
    server = BACnetServer(device_instance=DEVICE, device_name="rusty-controller", interface="127.0.0.1", port=port,
                          broadcast_address="127.255.255.255")
    for instance, base in BASE.items():
        server.add_analog_input(instance, f"input {instance}", units=62, present_value=base)
    server.add_trend_log(1, "log of input 1", 200, reference=reference(1, DEVICE), log_interval=100)
    server.add_trend_log(2, "log of input 2", 8, reference=reference(2, DEVICE), log_interval=100,
                         total_record_count=2**32 - 6)
    server.add_trend_log(3, "log of another device's input 3", 200, reference=reference(3, OTHER_DEVICE),
                         log_interval=100)
    await server.start()
    started = time.monotonic()

    async def enable(instance: int, on: bool) -> None:
        await server.write_property_local(ObjectIdentifier(ObjectType.TREND_LOG, instance),
                                          PropertyIdentifier.LOG_ENABLE, PropertyValue.boolean(on), source_object=None)

    async def climb() -> None:
        while True:
            for instance, base in BASE.items():
                await server.set_present_value_local(ObjectIdentifier(ObjectType.ANALOG_INPUT, instance),
                                                     PropertyValue.real(base + time.monotonic() - started))
            await asyncio.sleep(0.05)

    climbing = asyncio.create_task(climb())
    for instance in BASE:
        await enable(instance, True)
    await asyncio.sleep(2.5)
    await enable(1, False)   # a pause in the log: log-status records
    await asyncio.sleep(1.2)
    await enable(1, True)
    await asyncio.sleep(6)   # log 2 has overwritten its first records, and its sequence numbers wrapped
    print("ready", flush=True)
    await climbing


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
