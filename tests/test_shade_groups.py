"""Per-group wall-switch conventions and the safety lockouts at the coordinator, on MockFactory
pins with simulated time: a hold to the end of the day, an escape door that automation never
lowers once a person raised it, ice, and lost wind data; and a state machine (hypothesis) over
presses, BAS commands, wind, weather and restarts that checks the door and the lockouts after
every step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from shades.motor import DOWN, UP
from tests.shade_harness import CACHED_CONFIGS, SHADES, TZ, Rig, SimTime

#: the example site with the west group a terrace door that holds to the end of the day
DOOR = SHADES.groups[2]
CONFIG = SHADES.model_copy(update={"groups": [*SHADES.groups[:2], DOOR.model_copy(
    update={"escape_door": True, "manual_hold": "end-of-day"})]})
#: the same door with the building's timed hold (automation gets it back within the hour), and the
#: east group holding to the end of the day
EAST = SHADES.groups[0]
TIMED_DOOR = SHADES.model_copy(update={"manual_hold_minutes": 30.0, "groups": [
    EAST.model_copy(update={"manual_hold": "end-of-day"}), SHADES.groups[1], DOOR.model_copy(
        update={"escape_door": True})]})
#: what may override a wall-switch hold: the BAS, the lockouts, a fault
ABOVE_THE_HOLD = ("manual", "bas", "wind", "frost", "wind-data-lost", "fault")
CACHED_CONFIGS.extend([CONFIG, TIMED_DOOR])


def rig_at(local_hhmm: str, day: datetime = datetime(2026, 6, 22), config=CONFIG) -> Rig:
    h, m = map(int, local_hhmm.split(":"))
    start = day.replace(hour=h, minute=m, tzinfo=TZ).astimezone(UTC)
    rig = Rig(SimTime(start), shades=config)
    rig.feed_wind(3.0)
    rig.start()
    rig.run_for(11 * 60)                     # the first-start lockout releases
    return rig


def test_an_end_of_day_hold_lasts_until_midnight() -> None:
    rig = rig_at("10:00")
    c = rig.coordinator
    try:
        c.press(DOOR.number, DOWN)
        rig.run_for(90)
        status = c.groups[DOOR.number].status()
        assert status.mode == "manual" and status.hold_until == datetime(2026, 6, 23, tzinfo=TZ)
        assert c.groups[1].status().hold_until is None                      # a timed group is not touched
        c.press(1, UP)
        assert c.groups[1].status().hold_until - rig.time.now() == timedelta(minutes=SHADES.manual_hold_minutes)
        until_midnight = (datetime(2026, 6, 23, tzinfo=TZ) - rig.time.now()).total_seconds()
        rig.run_for(until_midnight - 60)
        assert c.groups[DOOR.number].status().mode == "manual"
        rig.run_for(120)
        assert c.groups[DOOR.number].status().hold_until is None
    finally:
        c.close()


def test_an_escape_door_raised_by_hand_stays_up_until_a_person_lowers_it() -> None:
    rig = rig_at("15:00")                    # a hot afternoon: the west sun on the door
    c = rig.coordinator
    door = c.groups[DOOR.number]
    try:
        rig.run_for(3600)
        assert door.motor.position_pct > 50, door.decision.reason          # automation shades the west
        c.press(DOOR.number, UP)
        rig.run_for(120)
        assert door.motor.position_pct == 0 and door.state.opened_by_hand
        door.state.hold_until = rig.time.now().isoformat()                  # the hold is over: automation's turn
        rig.run_for(3 * 3600)
        assert door.motor.position_pct == 0 and door.decision.mode == "manual"
        assert "escape door raised by hand" in door.decision.reason
        rig.restart()
        door = rig.coordinator.groups[DOOR.number]
        rig.run_for(60)
        assert door.state.opened_by_hand and door.motor.position_pct == 0  # a restart does not forget it
        rig.coordinator.press(DOOR.number, DOWN)
        rig.run_for(120)
        assert not door.state.opened_by_hand and door.motor.position_pct == 100
    finally:
        rig.coordinator.close()


def test_ice_and_lost_wind_data_retract_every_group_and_say_why() -> None:
    rig = rig_at("12:00", datetime(2026, 6, 22))
    c = rig.coordinator
    try:
        c.press(1, DOWN)
        rig.run_for(90)
        rig.inputs.outdoor_c, rig.inputs.precipitation = -2.5, True
        rig.run_for(60)
        assert c.lockout.state.kind == "frost" and all(g.status().mode == "frost" for g in c.groups.values())
        assert all(g.motor.direction == UP or g.motor.position_pct == 0 for g in c.groups.values())
        rig.inputs.outdoor_c, rig.inputs.precipitation = 5.0, False
        rig.feed_wind(None)
        rig.run_for(30)
        assert all(g.status().mode == "wind-data-lost" for g in c.groups.values())
        assert "no wind reading" in c.groups[1].status().reason
    finally:
        c.close()


class DoorMachine(RuleBasedStateMachine):
    """The door and the lockouts over random interleavings."""

    @initialize(hour=st.integers(14, 18))
    def start(self, hour: int) -> None:
        self.rig = rig_at(f"{hour:02d}:00", config=TIMED_DOOR)  # afternoon sun on the west door
        self.rig.inputs.rooms = {DOOR.number: (("1.231", 24.6, 21.0, 25.0),)}   # and a warm room behind it
        self.raised_by_hand = False       # the model: a person raised the door, no one lowered it since
        self.east_held_until: datetime | None = None
        self.guarded_from: int | None = None   # the relay log's length when the guard began

    @property
    def c(self):
        return self.rig.coordinator

    def _guard(self) -> None:
        bas = self.rig.inputs.bas_commands.get(DOOR.number)
        if self.raised_by_hand and bas is None:
            if self.guarded_from is None:
                self.guarded_from = len(self.rig.events)
        else:
            self.guarded_from = None

    @rule(group=st.sampled_from([g.number for g in CONFIG.groups]), direction=st.sampled_from([UP, DOWN]))
    def press(self, group: int, direction: str) -> None:
        motor = self.c.groups[group].motor
        was_moving = motor.direction != "stopped" or motor.pending is not None
        hold_before = self.c.groups[group].state.hold_until
        self.c.press(group, direction)
        hold = self.c.groups[group].state.hold_until
        if group == EAST.number and hold != hold_before:    # accepted: held to the next midnight
            midnight = datetime.combine(self.rig.time.now().astimezone(TZ).date() + timedelta(days=1),
                                        datetime.min.time(), tzinfo=TZ)
            assert datetime.fromisoformat(hold) == midnight
            self.east_held_until = midnight
        started = not was_moving and (motor.direction == direction or motor.pending == direction)
        if group == DOOR.number and started:
            self.raised_by_hand = direction == UP
        self._guard()
        self.c.evaluate()

    @rule(hours=st.floats(0.6, 3))
    def door_raised_by_hand_and_left(self, hours: float) -> None:
        """Someone opens the door on the way out and leaves it: the case the door is for."""
        self.press(DOOR.number, UP)
        self.rig.run_for(hours * 3600)

    @rule(value=st.none() | st.floats(0, 100))
    def bas_command(self, value: float | None) -> None:
        self.rig.inputs.bas_commands[DOOR.number] = value
        self._guard()
        self.c.evaluate()

    @rule(mps=st.none() | st.floats(0, 20))
    def wind(self, mps: float | None) -> None:
        self.rig.feed_wind(mps)
        self.c.evaluate()

    @rule(temperature=st.floats(-8, 6), precipitation=st.booleans())
    def weather(self, temperature: float, precipitation: bool) -> None:
        self.rig.inputs.outdoor_c, self.rig.inputs.precipitation = temperature, precipitation
        self.c.evaluate()
        if precipitation and temperature <= CONFIG.frost_below_c:
            assert self.c.lockout.state.locked and self.c.lockout.state.kind in ("frost", "wind", "wind-data-lost")

    @rule(seconds=st.one_of(st.floats(1, 120), st.floats(120, 2 * 3600)))
    def time_passes(self, seconds: float) -> None:
        self.rig.run_for(seconds)

    @rule(crash=st.booleans())
    def restart(self, crash: bool) -> None:
        (self.rig.crash if crash else self.rig.restart)()
        self.c.evaluate()

    @invariant()
    def the_door_is_never_lowered_by_automation_once_raised_by_hand(self) -> None:
        if self.guarded_from is None:
            return
        lowered = [e for e in self.rig.events[self.guarded_from:] if e.group == DOOR.number and e.relay == DOWN and e.on]
        assert not lowered, f"the door went down at {lowered[0].at_s:.0f} s after a person raised it"

    @invariant()
    def an_end_of_day_hold_lasts_to_midnight(self) -> None:
        if self.east_held_until is not None and self.rig.time.now() < self.east_held_until:
            mode = self.c.groups[EAST.number].status().mode
            assert mode in ABOVE_THE_HOLD, f"east in mode {mode} at {self.rig.time.now():%H:%M}, held to midnight"

    @invariant()
    def no_down_relay_while_locked(self) -> None:
        if self.c.lockout.state.locked:
            assert not any(g.motor.down.value for g in self.c.groups.values())

    @invariant()
    def never_both_relays(self) -> None:
        assert not any(g.motor.up.value and g.motor.down.value for g in self.c.groups.values())

    def teardown(self) -> None:
        if getattr(self, "rig", None) and self.rig.coordinator is not None:
            self.rig.coordinator.close()


DoorMachine.TestCase.settings = settings(max_examples=20, stateful_step_count=15, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
TestDoorAndLockouts = DoorMachine.TestCase
