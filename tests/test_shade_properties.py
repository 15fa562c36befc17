"""Safety of the whole shade coordinator over random interleavings (hypothesis): BAS commands,
wall-switch presses, wind readings, a dead wind sensor, the kill switch, time passing, clean
restarts and kill -9 crashes. Checked after every step, from the relay log:

- never both relays of a group on;
- a relay closes only >= 1 s after the group's last relay opened (reversal dead time);
- no run longer than travel time x 1.2 (the cut-off);
- in a wind lockout a down relay never closes, and the blind is up or going up within 3 s;
- a restart (clean or crash) moves nothing by itself: right after it, every relay is off
  unless a lockout retracts a blind that is not up.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from shades.motor import MIN_REVERSE_DELAY_S, STOPPED, UP
from tests.shade_harness import SHADES, Rig, SimTime

GROUPS = [g.number for g in SHADES.groups]
TRAVEL = {g.number: {"down": g.travel_down_s, "up": g.travel_up_s} for g in SHADES.groups}
EPS = 1e-6


class ShadeMachine(RuleBasedStateMachine):
    @initialize(hour=st.integers(0, 23), month=st.sampled_from([1, 4, 6, 7, 10]))
    def start(self, hour: int, month: int) -> None:
        from datetime import UTC, datetime
        self.rig = Rig(SimTime(datetime(2026, month, 15, hour, 0, tzinfo=UTC)))
        self.rig.feed_wind(3.0)
        self.rig.start()
        self.rig.run_for(11 * 60)  # calm for ten minutes: the first-start lockout releases
        assert not self.c.lockout.state.locked

    @property
    def c(self):
        return self.rig.coordinator

    # -- rules -------------------------------------------------------------------------------------

    @rule(group=st.sampled_from(GROUPS), value=st.none() | st.floats(0, 100))
    def bas_command(self, group: int, value: float | None) -> None:
        self.rig.inputs.bas_commands[group] = value
        self.c.evaluate()

    @rule(group=st.sampled_from(GROUPS), direction=st.sampled_from(["up", "down"]))
    def press(self, group: int, direction: str) -> None:
        self.c.press(group, direction)
        self.c.evaluate()

    @rule(mps=st.floats(0, 25))
    def wind(self, mps: float) -> None:
        self.rig.feed_wind(mps)
        self.c.evaluate()
        if mps >= SHADES.wind_retract_mps:
            self.rig.run_for(3.0)
            for number, g in self.c.groups.items():
                moving_up = g.motor.direction == UP
                assert moving_up or g.motor.position_pct <= 0.5, f"group {number} not retracting 3 s after wind"

    @rule()
    def wind_sensor_dies(self) -> None:
        self.rig.feed_wind(None)
        self.c.evaluate()

    @rule(enabled=st.booleans())
    def kill_switch(self, enabled: bool) -> None:
        self.rig.inputs.automation_enabled = enabled
        self.c.evaluate()

    @rule(seconds=st.one_of(st.floats(0.1, 5), st.floats(5, 120), st.floats(120, 4 * 3600)))
    def time_passes(self, seconds: float) -> None:
        self.rig.run_for(seconds)

    @rule(group=st.sampled_from(GROUPS), value=st.floats(0, 100), after_s=st.floats(0, 20), crash=st.booleans())
    def restart_while_moving(self, group: int, value: float, after_s: float, crash: bool) -> None:
        self.rig.inputs.bas_commands[group] = value
        self.c.evaluate()
        self.rig.run_for(after_s)
        self.restart(crash)

    @rule(crash=st.booleans())
    def restart(self, crash: bool) -> None:
        before = len(self.rig.events)
        self.check_log()
        (self.rig.crash if crash else self.rig.restart)()
        self.c.evaluate()
        locked = self.c.lockout.state.locked
        for number, g in self.c.groups.items():
            assert not g.motor.down.value, f"group {number} went down on restart"
            if not locked:
                assert not g.motor.up.value and g.motor.pending is None, f"group {number} moved on restart"
                assert g.motor.direction == STOPPED
        turned_on = [e for e in self.rig.events[before:] if e.on]
        assert locked or not turned_on

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def never_both_relays(self) -> None:
        for number, g in self.c.groups.items():
            assert not (g.motor.up.value and g.motor.down.value), f"group {number}: both relays on"

    @invariant()
    def locked_means_never_down(self) -> None:
        if self.c.lockout.state.locked:
            for number, g in self.c.groups.items():
                assert not g.motor.down.value, f"group {number}: down relay on during a lockout"

    @invariant()
    def check_log(self) -> None:
        """Dead time and cut-off, from every relay transition so far."""
        events = self.rig.events
        for number in GROUPS:
            mine = [e for e in events if e.group == number]
            last_off, on_since = None, {}
            for e in mine:
                if e.on:
                    assert not on_since, f"group {number}: a relay closed while another was on"
                    if last_off is not None:
                        assert e.at_s - last_off >= MIN_REVERSE_DELAY_S - EPS, \
                            f"group {number}: {e.relay} closed {e.at_s - last_off:.3f} s after a stop"
                    on_since[e.relay] = e.at_s
                else:
                    started = on_since.pop(e.relay, None)
                    if started is not None:
                        limit = TRAVEL[number][e.relay] * 1.2
                        assert e.at_s - started <= limit + EPS, \
                            f"group {number}: {e.relay} ran {e.at_s - started:.2f} s > cut-off {limit:.1f} s"
                    last_off = e.at_s
            for relay, started in on_since.items():
                assert self.rig.time.mono - started <= TRAVEL[number][relay] * 1.2 + EPS

    def teardown(self) -> None:
        if getattr(self, "rig", None) and self.rig.coordinator is not None:
            self.rig.coordinator.close()


ShadeMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
TestShadeSafety = ShadeMachine.TestCase
