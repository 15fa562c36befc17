"""The esus service as the end-to-end test runs it: `esus run` on a shared simulated clock, with
gpiozero MockFactory pins whose relay changes are logged, and an occupant who presses the wall
switches when a script says so. Only the pins differ from production; everything else is the real
service.

    python -m tests.e2e.service_main --speed 600 --start TIME --anchor UNIX_S \
        --relays relays.jsonl --occupant presses.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime
from pathlib import Path

from gpiozero.pins.mock import MockFactory, MockPin

from esus.cli.main import setup_logging
from esus.runtime.clock import AcceleratedClock, Clock
from esus.settings.config import load_settings
from esus.service import Service, install_signal_handlers

#: How long the occupant keeps a button pressed (simulated seconds; the debounce needs 50 ms).
PRESS_S = 0.5


def logged_pin_class(clock: Clock, out: Path) -> type[MockPin]:
    handle = open(out, "a", buffering=1)  # one line per change, flushed: a kill -9 loses nothing

    class LoggedPin(MockPin):
        def _change_state(self, value: bool) -> bool:
            changed = super()._change_state(value)
            if changed and self._function == "output":
                handle.write(json.dumps({"t": clock.now().isoformat(), "pin": self.info.name, "on": value}) + "\n")
            return changed

    return LoggedPin


async def occupant(factory: MockFactory, clock: Clock, presses: list[dict]) -> None:
    """Press each button at its time: the pin goes low (pull-up to ground) and back high."""
    for press in sorted(presses, key=lambda p: p["at"]):
        at = datetime.fromisoformat(press["at"])
        if at < clock.now():
            continue  # a restarted process does not repeat the presses of the first one
        await clock.sleep_until(at)
        pin = factory.pin(press["pin"])
        pin.drive_low()
        await clock.sleep(PRESS_S)
        pin.drive_high()
    await asyncio.Event().wait()  # a part of the service runs until the service stops


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--speed", type=float, required=True)
    parser.add_argument("--start", type=datetime.fromisoformat, required=True)
    parser.add_argument("--anchor", type=float, required=True)
    parser.add_argument("--relays", type=Path, required=True)
    parser.add_argument("--occupant", type=Path, required=True)
    args = parser.parse_args()
    settings = load_settings()
    setup_logging(settings.log_level)
    clock = AcceleratedClock(args.speed, args.start, args.anchor)
    factory = MockFactory(pin_class=logged_pin_class(clock, args.relays))
    presses = json.loads(args.occupant.read_text())

    async def run() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        service = Service(settings, clock, pin_factory=factory)
        service.background["occupant"] = lambda: occupant(factory, clock, presses)
        await service.run(stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
