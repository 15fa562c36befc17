"""Wall switches: our debouncing on MockFactory pins, and what a press does in the coordinator."""

from __future__ import annotations

from datetime import timedelta

from gpiozero.pins.mock import MockFactory
from hypothesis import given
from hypothesis import strategies as st

from shades.switches import Debouncer, WallSwitch
from tests.shade_harness import SHADES, Rig, summer_morning

EAST = next(g for g in SHADES.groups if g.name == "east")


class Ticker:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@given(st.lists(st.floats(0.0005, 0.004), min_size=1, max_size=12), st.floats(0.1, 2.0))
def test_a_bouncing_press_counts_once(bounces: list[float], hold_s: float) -> None:
    """A press whose contacts chatter for up to ~45 ms, held, released with chatter: one press."""
    clock, factory = Ticker(), MockFactory()
    presses: list[float] = []
    switch = WallSwitch(22, lambda: presses.append(clock.t), clock, pin_factory=factory)
    pin = factory.pin(22)
    try:
        for phase_start in (1.0, 1.0 + hold_s):   # press, then release, each with bounce
            clock.t = phase_start
            level_low = phase_start == 1.0
            for i, gap in enumerate(bounces):
                (pin.drive_low if (i % 2 == 0) == level_low else pin.drive_high)()
                clock.t += gap
            (pin.drive_low if level_low else pin.drive_high)()
        assert presses == [1.0]
        clock.t += 1.0
        pin.drive_low()
        assert presses == [1.0, clock.t]   # the next real press counts again
    finally:
        switch.close()


def test_debouncer_needs_a_release_between_presses() -> None:
    clock = Ticker()
    d = Debouncer(clock, settle_s=0.05)
    assert d.edge(True) is True
    clock.t = 1.0
    assert d.edge(True) is False
    assert d.edge(False) is False
    clock.t = 2.0
    assert d.edge(True) is True


def test_press_moves_fully_a_second_press_stops_and_the_hold_expires() -> None:
    rig = Rig(summer_morning())
    rig.feed_wind(3.0)
    c = rig.start()
    try:
        rig.run_for(11 * 60)
        rig.factory.pin(EAST.down_switch_pin).drive_low()   # press
        rig.factory.pin(EAST.down_switch_pin).drive_high()
        rig.run_for(1.5)
        motor = c.groups[EAST.number].motor
        assert motor.down.value and not motor.up.value
        rig.run_for(10)
        rig.time.advance(0.1)
        rig.factory.pin(EAST.up_switch_pin).drive_low()     # a press while it moves stops it
        rig.factory.pin(EAST.up_switch_pin).drive_high()
        assert not motor.down.value and not motor.up.value
        stopped_at = motor.position_pct
        assert 15 < stopped_at < 35
        status = c.groups[EAST.number].status()
        assert status.mode == "manual" and status.hold_until is not None
        assert status.hold_until - rig.time.now() == timedelta(minutes=SHADES.manual_hold_minutes)
        rig.run_for(SHADES.manual_hold_minutes * 60 - 60)
        assert motor.position_pct == stopped_at            # the hold keeps it there
        rig.run_for(120)
        assert c.groups[EAST.number].status().hold_until is None
        assert c.groups[EAST.number].decision.mode == "auto"   # automation has it back
    finally:
        c.close()


def test_lowering_by_switch_is_refused_in_a_wind_lockout() -> None:
    rig = Rig(summer_morning())
    rig.feed_wind(14.0)
    c = rig.start()
    try:
        rig.run_for(60)
        c.press(EAST.number, "down")
        rig.run_for(5)
        assert not c.groups[EAST.number].motor.down.value
        assert c.groups[EAST.number].status().mode == "wind"
    finally:
        c.close()
