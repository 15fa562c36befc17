"""Wall push-buttons (up, down) on gpiozero Buttons, debounced here with an injected clock.

gpiozero calls back from its own thread and its MockFactory does not simulate contact bounce, so
the debouncing is ours and testable: after an accepted edge, further edges are ignored for
`settle_s`; a press counts only after a release has been seen.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from gpiozero import Button
from gpiozero.pins import Factory

log = logging.getLogger(__name__)

DEFAULT_SETTLE_S = 0.05


class Debouncer:
    def __init__(self, monotonic: Callable[[], float], settle_s: float = DEFAULT_SETTLE_S) -> None:
        self.monotonic, self.settle_s = monotonic, settle_s
        self.pressed = False
        self._quiet_until = float("-inf")

    def edge(self, pressed: bool) -> bool:
        """Feed a raw edge (pin now pressed or released); True when it is a new, accepted press."""
        now = self.monotonic()
        if now < self._quiet_until or pressed == self.pressed:
            return False
        self.pressed = pressed
        self._quiet_until = now + self.settle_s
        return pressed


class WallSwitch:
    """One push-button; calls `on_press()` once per debounced press (from gpiozero's thread)."""

    def __init__(self, pin: int, on_press: Callable[[], None], monotonic: Callable[[], float],
                 settle_s: float = DEFAULT_SETTLE_S, pin_factory: Factory | None = None) -> None:
        self.debouncer = Debouncer(monotonic, settle_s)
        self.on_press = on_press
        # Buttons to ground with the internal pull-up; no gpiozero bounce_time: we debounce.
        self.button = Button(pin, pull_up=True, bounce_time=None, pin_factory=pin_factory)
        self.button.when_pressed = lambda: self._edge(True)
        self.button.when_released = lambda: self._edge(False)

    def _edge(self, pressed: bool) -> None:
        if self.debouncer.edge(pressed):
            try:
                self.on_press()
            except Exception:  # gpiozero's thread must not die with our bug
                log.exception("handling a wall-switch press failed")

    def close(self) -> None:
        self.button.close()


class SwitchPair:
    """The up and down buttons of one shade group, either of which may be absent."""

    def __init__(self, up_pin: int | None, down_pin: int | None, on_press: Callable[[str], None],
                 monotonic: Callable[[], float], pin_factory: Factory | None = None) -> None:
        self.switches = [WallSwitch(pin, functools.partial(on_press, direction), monotonic, pin_factory=pin_factory)
                         for direction, pin in (("up", up_pin), ("down", down_pin)) if pin is not None]

    def close(self) -> None:
        for switch in self.switches:
            switch.close()
