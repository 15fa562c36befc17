"""The 24 VDC blind motor behind two relays (up, down), driven by gpiozero OutputDevices.

Safety rules, enforced here and nowhere else:
- never both relays on: the other relay is switched off, and checked off, before one is switched on;
- reversing stops first and waits `reverse_delay_s` (>= 1 s) before the other relay may close;
- no run lasts longer than its travel time x `overrun` (the cut-off), whatever was asked;
- constructing a motor never energises a relay (a restart never moves a blind by itself).

The motor has no feedback: its position is estimated from run time and re-referenced whenever it
is driven fully up or down (the over-travel presses the blind against its end stop). The owner
calls `tick()` at `next_deadline()` (the coordinator schedules it) and whenever it wants a fresh
estimate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from gpiozero import OutputDevice

log = logging.getLogger(__name__)

UP, DOWN, STOPPED = "up", "down", "stopped"
MIN_REVERSE_DELAY_S = 1.0


class InterlockError(RuntimeError):
    """Both relays would be on: refused (this is a bug or a wiring fault, never a normal state)."""


@dataclass
class Run:
    direction: str
    started_s: float
    start_pct: float
    target_pct: float
    cutoff_s: float


class ShadeMotor:
    def __init__(self, up: OutputDevice, down: OutputDevice, monotonic: Callable[[], float], *,
                 travel_down_s: float, travel_up_s: float, position_pct: float = 0.0,
                 referenced: bool = True, reverse_delay_s: float = MIN_REVERSE_DELAY_S,
                 overrun: float = 1.2) -> None:
        if reverse_delay_s < MIN_REVERSE_DELAY_S:
            raise ValueError(f"reverse_delay_s must be at least {MIN_REVERSE_DELAY_S} s")
        if not travel_down_s > 0 or not travel_up_s > 0 or overrun < 1:
            raise ValueError("travel times must be positive and overrun at least 1")
        self.up, self.down, self.monotonic = up, down, monotonic
        self.travel_s = {DOWN: float(travel_down_s), UP: float(travel_up_s)}
        self.reverse_delay_s, self.overrun = reverse_delay_s, overrun
        self._position = min(100.0, max(0.0, float(position_pct)))
        self.referenced = referenced
        self.run: Run | None = None
        self.pending: float | None = None   # a target waiting for the reversal dead time
        self._all_off()  # whatever the pins were: off. Never on at construction.
        # The previous process may have died with a relay closed: construction counts as a stop,
        # so the first move waits the dead time too (found by the property test).
        self.stopped_at_s = monotonic()

    # -- relays --------------------------------------------------------------------------------

    def _all_off(self) -> None:
        self.up.off()
        self.down.off()

    def _energise(self, direction: str) -> None:
        mine, other = (self.up, self.down) if direction == UP else (self.down, self.up)
        other.off()
        if other.value:
            raise InterlockError(f"the {'down' if direction == UP else 'up'} relay did not release")
        mine.on()

    @property
    def direction(self) -> str:
        return self.run.direction if self.run else STOPPED

    # -- position ------------------------------------------------------------------------------

    def _position_at(self, now_s: float) -> float:
        if self.run is None:
            return self._position
        rate = 100.0 / self.travel_s[self.run.direction]
        moved = rate * (now_s - self.run.started_s)
        value = self.run.start_pct + (moved if self.run.direction == DOWN else -moved)
        return min(100.0, max(0.0, value))

    @property
    def position_pct(self) -> float:
        return self._position_at(self.monotonic())

    # -- commands ------------------------------------------------------------------------------

    def move_to(self, target_pct: float) -> None:
        """Drive towards a position; 0 and 100 over-travel to re-reference the estimate."""
        target = min(100.0, max(0.0, float(target_pct)))
        now = self.monotonic()
        position = self._position_at(now)
        at_end = target in (0.0, 100.0)
        if not at_end and abs(target - position) < 0.5 and self.run is None:
            return
        direction = DOWN if (target > position or (at_end and target == 100.0)) else UP
        if self.run is not None:
            if self.run.direction == direction:
                self.run.target_pct = target
                return
            self.stop()
        self.pending = target
        self.tick()

    def stop(self) -> None:
        now = self.monotonic()
        self.pending = None
        if self.run is not None:
            self._position = self._position_at(now)
            self.run = None
            self.stopped_at_s = now
        self._all_off()

    def _start(self, target: float, now: float) -> None:
        position = self._position
        direction = DOWN if target > position or target == 100.0 else UP
        if direction == DOWN and target == 100.0 or direction == UP and target == 0.0:
            run_s = self.travel_s[direction] * self.overrun  # to the end stop and a little beyond
        else:
            run_s = min(abs(target - position) / 100.0 * self.travel_s[direction],
                        self.travel_s[direction] * self.overrun)
        self.run = Run(direction, now, position, target, now + run_s)
        self._energise(direction)

    def next_deadline(self) -> float | None:
        """When `tick()` must run next (monotonic seconds), or None when idle."""
        if self.run is not None:
            return self.run.cutoff_s
        if self.pending is not None:
            return max(self.monotonic(), self.stopped_at_s + self.reverse_delay_s)
        return None

    def tick(self) -> None:
        """Stop a run at its end or cut-off; start a waiting move once the dead time has passed."""
        now = self.monotonic()
        if self.run is not None and now >= self.run.cutoff_s:
            run = self.run
            self.stop()
            if run.target_pct in (0.0, 100.0):
                self._position, self.referenced = run.target_pct, True  # pressed against the end stop
            else:
                self._position = run.target_pct
        if self.run is None and self.pending is not None and now >= self.stopped_at_s + self.reverse_delay_s:
            target, self.pending = self.pending, None
            self._start(target, now)

    def close(self) -> None:
        """Relays off. The relays stay open devices: whoever built them closes them."""
        self.stop()
