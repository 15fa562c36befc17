"""The hosts of the subnet test (tests/test_bacnet_subnets.py), each run inside its own network
namespace: a BBMD, an esus BACnet device (optionally a foreign device of that BBMD), and a BAS that
broadcasts Who-Is on its subnet and reports which devices answered.

    python -m tests.netns_peers bbmd 10.231.1.20/24
    python -m tests.netns_peers device 10.231.2.10/24 260010 [--bbmd 10.231.1.20:47808]
    python -m tests.netns_peers bas 10.231.1.255 260010 260011 [--timeout-s 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time

PORT = 47808
WHO_IS = bytes.fromhex("810b0008" "0100" "1008")   # BVLC broadcast, NPDU, unconfirmed Who-Is


async def bbmd(address: str) -> None:
    from bacpypes3.app import Application
    from bacpypes3.basetypes import BDTEntry, IPMode
    from bacpypes3.local.device import DeviceObject
    from bacpypes3.local.networkport import NetworkPortObject

    port = NetworkPortObject(f"{address}:{PORT}", objectIdentifier=("network-port", 1), objectName="port-1")
    port.bacnetIPMode = IPMode.bbmd
    port.bbmdAcceptFDRegistrations = True
    port.bbmdForeignDeviceTable = []
    port.bbmdBroadcastDistributionTable = [BDTEntry(address.split("/")[0])]
    Application.from_object_list([DeviceObject(objectIdentifier=("device", 999), objectName="bbmd",
                                               vendorIdentifier=999), port])
    print("ready", flush=True)
    await asyncio.Event().wait()


async def device(address: str, instance: int, bbmd_address: str | None) -> None:
    from bacnet_server.app import BacnetDevice, DeviceIdentity
    from bacnet_server.points import point_table

    ip, prefix = address.split("/")
    identity = DeviceIdentity(instance, f"esus-{instance}", ip, int(prefix), PORT, bbmd=bbmd_address, bbmd_ttl_s=60)
    served = BacnetDevice(identity, point_table(-50.0, 500.0, []))
    await served.start()
    print("ready", flush=True)
    while True:
        await asyncio.sleep(1)
        print(served.bbmd_registration() or "no bbmd", flush=True)


def bas(broadcast: str, expected: set[int], timeout_s: float) -> None:
    """Who-Is once a second until every expected device said I-Am (or the time is up)."""
    found: dict[int, str] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind(("0.0.0.0", PORT))
        sock.settimeout(0.2)
        end = time.monotonic() + timeout_s
        next_who_is = 0.0
        while time.monotonic() < end and not expected <= set(found):
            if time.monotonic() >= next_who_is:
                sock.sendto(WHO_IS, (broadcast, PORT))
                next_who_is = time.monotonic() + 1.0
            try:
                data, source = sock.recvfrom(1500)
            except TimeoutError:
                continue
            at = data.find(b"\x10\x00\xc4")   # unconfirmed I-Am, its device identifier tag
            if at >= 0:
                instance = int.from_bytes(data[at + 3:at + 7], "big") & 0x3FFFFF
                found.setdefault(instance, source[0])
    print(json.dumps({str(k): v for k, v in found.items()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    sub.add_parser("bbmd").add_argument("address")
    d = sub.add_parser("device")
    d.add_argument("address")
    d.add_argument("instance", type=int)
    d.add_argument("--bbmd")
    b = sub.add_parser("bas")
    b.add_argument("broadcast")
    b.add_argument("expected", type=int, nargs="+")
    b.add_argument("--timeout-s", type=float, default=20.0)
    args = parser.parse_args()
    if args.role == "bbmd":
        asyncio.run(bbmd(args.address))
    elif args.role == "device":
        asyncio.run(device(args.address, args.instance, args.bbmd))
    else:
        bas(args.broadcast, set(args.expected), args.timeout_s)


if __name__ == "__main__":
    sys.exit(main())
