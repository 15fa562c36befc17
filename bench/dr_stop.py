"""Demand response: how long the releases take, after an event's end and at a stop of esus, with
four overrides staged 5 s apart (the default) on bacpypes3 controllers on loopback, one of them
offline (its writes time out after the BACnet client's 10 s).

    .venv/bin/python bench/dr_stop.py

Prints when each controller's release was acknowledged, and the whole, for: the release after an
event's end (the usual 5 s stages), and a stop (the stages narrowed to end within the stop's
deadline, esus.parts.demand.RELEASE_AT_STOP_S)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bacnet_server.client import TIMEOUT_S, BacnetClient  # noqa: E402
from demand_response.actions import ShedAction  # noqa: E402
from demand_response.ledger import Event, Ledger  # noqa: E402
from demand_response.shedder import STAGE_DELAY_S, Shedder  # noqa: E402
from esus.parts.demand import RELEASE_AT_STOP_S, ShedPointWriter  # noqa: E402
from tests.bacnet_harness import free_udp_port  # noqa: E402
from tests.dr_targets import start_client, start_target  # noqa: E402


class TimedWriter(ShedPointWriter):
    def __init__(self, client: BacnetClient) -> None:
        super().__init__(client)
        self.t0 = time.monotonic()
        self.done: dict[str, float] = {}

    async def write(self, action: ShedAction, value: object) -> None:
        try:
            await super().write(action, value)   # type: ignore[arg-type]
        finally:
            self.done[action.name] = time.monotonic() - self.t0


async def scene(stop: bool) -> tuple[dict[str, float], float]:
    targets = [start_target(760 + i) for i in range(3)]
    client = start_client(599)
    offline = f"127.0.0.1:{free_udp_port()}"
    actions = [ShedAction(f"controller {i + 1}", t.address, "analog-value,1", {1: 22.0}) for i, t in enumerate(targets)]
    actions.insert(1, ShedAction("offline controller", offline, "analog-value,1", {1: 22.0}))
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(Path(tmp) / "dr.db")
        now = [time.time()]
        writer = TimedWriter(BacnetClient(client, TIMEOUT_S))
        shedder = Shedder(actions, ledger, writer, stage_delay_s=STAGE_DELAY_S, clock=lambda: now[0])
        shedder.put_event(Event("e1", 1, now[0] - 1, now[0] + 3600))
        await shedder.reconcile()
        now[0] += 3600                                        # the event is over
        writer.done.clear()
        writer.t0 = started = time.monotonic()
        if stop:
            await asyncio.wait_for(shedder.release_held(RELEASE_AT_STOP_S - 1.0, TIMEOUT_S), RELEASE_AT_STOP_S)
        else:
            await shedder.reconcile()
        total = time.monotonic() - started
        ledger.close()
    for t in targets:
        t.close()
    client.close()
    return writer.done, total


def main() -> None:
    for name, stop in (("release after the event's end", False), ("release at a stop of esus", True)):
        done, total = asyncio.run(scene(stop))
        each = ", ".join(f"{n} {s:.1f} s" for n, s in sorted(done.items(), key=lambda kv: kv[1]))
        print(f"{name}: {each}; all done in {total:.1f} s")


if __name__ == "__main__":
    main()
