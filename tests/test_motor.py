"""Relay motor driver: safety properties over random interleavings (hypothesis), on MockFactory pins."""

from __future__ import annotations

import pytest
from gpiozero import OutputDevice
from gpiozero.pins.mock import MockFactory
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from shades.motor import DOWN, STOPPED, UP, InterlockError, ShadeMotor

TRAVEL_DOWN, TRAVEL_UP, OVERRUN, DEAD = 48.0, 52.0, 1.2, 1.0


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingRelay(OutputDevice):
    """An OutputDevice on a mock pin that logs every change with the simulated time."""

    def __init__(self, pin: int, factory: MockFactory, clock: FakeTime, log: list) -> None:
        super().__init__(pin, pin_factory=factory, initial_value=None)
        self._clock, self._log, self._pin_no = clock, log, pin

    def on(self) -> None:
        super().on()
        self._log.append((self._clock(), self._pin_no, True))

    def off(self) -> None:
        was = self.value
        super().off()
        if was:
            self._log.append((self._clock(), self._pin_no, False))


class MotorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.factory = MockFactory()
        self.clock = FakeTime()
        self.log: list[tuple[float, int, bool]] = []
        self.position = 0.0
        self.motor = self._new_motor(position=0.0)

    def _new_motor(self, position: float) -> ShadeMotor:
        up = RecordingRelay(17, self.factory, self.clock, self.log)
        down = RecordingRelay(27, self.factory, self.clock, self.log)
        return ShadeMotor(up, down, self.clock, travel_down_s=TRAVEL_DOWN, travel_up_s=TRAVEL_UP,
                          position_pct=position, reverse_delay_s=DEAD, overrun=OVERRUN)

    def pins(self) -> tuple[bool, bool]:
        return self.factory.pin(17).state, self.factory.pin(27).state

    def _advance(self, seconds: float) -> None:
        """Time passes; the coordinator wakes the motor at each deadline, as the event loop does."""
        end = self.clock.now + seconds
        while (deadline := self.motor.next_deadline()) is not None and deadline <= end:
            self.clock.now = max(self.clock.now, deadline)
            self.motor.tick()
            self.check_relays()
        self.clock.now = end
        self.motor.tick()

    @rule(percent=st.floats(0, 100) | st.sampled_from([0.0, 100.0]))
    def command(self, percent: float) -> None:
        self.motor.move_to(percent)

    @rule()
    def stop(self) -> None:
        self.motor.stop()

    @rule(seconds=st.floats(0, 5) | st.floats(5, 200) | st.just(0.001))
    def time_passes(self, seconds: float) -> None:
        self._advance(seconds)

    @rule()
    def restart(self) -> None:
        """The process dies and comes back: the relays drop, the position is restored from the store."""
        saved = self.motor.position_pct
        self.motor.up.close()
        self.motor.down.close()
        self.log.append((self.clock.now, 17, False))
        self.log.append((self.clock.now, 27, False))
        self.motor = self._new_motor(position=saved)
        assert self.pins() == (False, False), "a restart energised a relay"
        assert self.motor.direction == STOPPED

    @invariant()
    def check_relays(self) -> None:
        assert self.pins() != (True, True), "both relays on"

    @invariant()
    def runs_respect_cutoff_and_dead_time(self) -> None:
        on_since: dict[int, float] = {}
        last_off = -1e18
        for when, pin, state in self.log:
            if state:
                assert when - last_off >= DEAD - 1e-9, f"relay {pin} closed {when - last_off:.3f} s after a stop"
                on_since[pin] = when
            elif pin in on_since:
                limit = (TRAVEL_UP if pin == 17 else TRAVEL_DOWN) * OVERRUN
                assert when - on_since.pop(pin) <= limit + 1e-6, "ran past the cut-off"
                last_off = when
        for pin, since in on_since.items():
            limit = (TRAVEL_UP if pin == 17 else TRAVEL_DOWN) * OVERRUN
            assert self.clock.now - since <= limit + 1e-6, "still running past the cut-off"

    @invariant()
    def position_is_a_percentage(self) -> None:
        assert 0.0 <= self.motor.position_pct <= 100.0

    def teardown(self) -> None:
        self.motor.close()
        self.motor.up.close()
        self.motor.down.close()


MotorMachine.TestCase.settings = settings(max_examples=500, stateful_step_count=40, deadline=None)
TestMotorSafety = MotorMachine.TestCase


def make(position: float = 0.0) -> tuple[ShadeMotor, FakeTime, MockFactory]:
    factory, clock = MockFactory(), FakeTime()
    motor = ShadeMotor(OutputDevice(17, pin_factory=factory), OutputDevice(27, pin_factory=factory), clock,
                       travel_down_s=TRAVEL_DOWN, travel_up_s=TRAVEL_UP, position_pct=position)
    clock.now += DEAD  # the dead time after start-up has passed
    return motor, clock, factory


def test_the_first_move_after_start_waits_the_dead_time() -> None:
    factory, clock = MockFactory(), FakeTime()
    motor = ShadeMotor(OutputDevice(17, pin_factory=factory), OutputDevice(27, pin_factory=factory), clock,
                       travel_down_s=TRAVEL_DOWN, travel_up_s=TRAVEL_UP, position_pct=60.0)
    motor.move_to(0)
    assert motor.direction == STOPPED and motor.next_deadline() == clock.now + DEAD
    clock.now += DEAD
    motor.tick()
    assert motor.direction == UP


def test_a_full_run_over_travels_and_re_references() -> None:
    motor, clock, factory = make(position=37.0)
    motor.referenced = False
    motor.move_to(100)
    assert motor.direction == DOWN and factory.pin(27).state
    clock.now += TRAVEL_DOWN * OVERRUN
    motor.tick()
    assert motor.direction == STOPPED and motor.position_pct == 100.0 and motor.referenced
    assert not factory.pin(27).state


def test_a_partial_move_stops_at_the_target_estimate() -> None:
    motor, clock, _ = make(position=0.0)
    motor.move_to(50)
    clock.now += TRAVEL_DOWN / 4
    assert motor.position_pct == pytest.approx(25.0)
    clock.now = motor.next_deadline()
    motor.tick()
    assert motor.direction == STOPPED and motor.position_pct == pytest.approx(50.0)


def test_reversing_stops_then_waits_the_dead_time() -> None:
    motor, clock, factory = make(position=50.0)
    motor.move_to(100)
    clock.now += 5
    motor.move_to(0)
    assert (factory.pin(17).state, factory.pin(27).state) == (False, False)
    clock.now += 0.5
    motor.tick()
    assert motor.direction == STOPPED
    clock.now += 0.5
    motor.tick()
    assert motor.direction == UP and factory.pin(17).state


def test_construction_forces_relays_off_and_a_stuck_relay_is_refused() -> None:
    factory, clock = MockFactory(), FakeTime()
    up, down = OutputDevice(17, pin_factory=factory), OutputDevice(27, pin_factory=factory)
    up.on()
    down.on()  # whatever state the pins were left in
    motor = ShadeMotor(up, down, clock, travel_down_s=10, travel_up_s=10)
    assert (factory.pin(17).state, factory.pin(27).state) == (False, False)
    down.off = lambda: None  # a welded relay contact
    down.on()
    motor.move_to(0)
    clock.now += DEAD
    with pytest.raises(InterlockError):
        motor.tick()
    assert not factory.pin(17).state  # the up relay was never closed
    with pytest.raises(ValueError):
        ShadeMotor(up, down, clock, travel_down_s=10, travel_up_s=10, reverse_delay_s=0.5)
