"""The coordinator: the only part of `shades` that touches devices. It runs the policy for each
group, drives the motors, takes wall-switch presses, and keeps the state that must survive a
restart (positions, holds, lockout, the last decision).

Automation is edge-triggered: a group moves when the decision (mode, target) changes, never
because the service started. The one exception is safety: a lockout retracts a blind that is
not up, whatever happened before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from gpiozero import OutputDevice
from gpiozero.pins import Factory

from shades.identify import RoomFit
from shades.lockout import KINDS, Lockout, LockoutSettings, LockoutState
from shades.motor import DOWN, STOPPED, UP, ShadeMotor
from shades.planner import GroupConfig, GroupDay, ShadeConfig, policy_settings
from shades.policy import Decision, PolicySettings, decide
from shades.sun import Place
from shades.switches import SwitchPair
from shades.weather import Weather, clear_sky

log = logging.getLogger(__name__)

#: The policy runs at least this often (simulated seconds); events run it at once.
EVALUATE_EVERY_S = 30.0


@dataclass
class Inputs:
    """What the building says now (from BACnet and the BMS); None = unknown."""

    wind_mps: float | None = None
    wind_at: datetime | None = None
    wind_pending: bool = False   # just started, first reading on its way: the stored lockout state holds
    outdoor_c: float | None = None
    precipitation: bool = False
    automation_enabled: bool = True
    bas_commands: dict[int, float | None] = field(default_factory=dict)
    rooms: dict[int, tuple] = field(default_factory=dict)          # group -> ((room, t, heat, cool), ...)
    measured_wm2: dict[int, float | None] = field(default_factory=dict)


@dataclass
class GroupState:
    """Persisted per group (JSON in the history store's state table)."""

    position_pct: float = 0.0
    referenced: bool = False
    was_moving: bool = False
    hold_until: str | None = None
    applied_mode: str | None = None
    applied_target: float | None = None
    last_auto_move: str | None = None
    moves_day: str | None = None
    auto_moves_today: int = 0
    opened_by_hand: bool = False      # an escape door a person raised: automation never lowers it

    @classmethod
    def from_dict(cls, data: dict | None) -> GroupState:
        """Keys of older versions (season, shading_date) are dropped."""
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class GroupStatus:
    number: int
    name: str
    position_pct: float
    target_pct: float | None
    mode: str
    reason: str
    relay_up: bool
    relay_down: bool
    hold_until: datetime | None
    lockout: bool
    moves_today: int


class GroupWiring(GroupConfig, Protocol):
    """A shade group as the coordinator drives it: the planner's view plus its pins and travel times."""

    @property
    def up_relay_pin(self) -> int: ...
    @property
    def down_relay_pin(self) -> int: ...
    @property
    def up_switch_pin(self) -> int | None: ...
    @property
    def down_switch_pin(self) -> int | None: ...
    @property
    def travel_down_s(self) -> float: ...
    @property
    def travel_up_s(self) -> float: ...
    @property
    def manual_hold(self) -> str: ...     # "timed" or "end-of-day"
    @property
    def escape_door(self) -> bool: ...


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class GroupController:
    """One shade group: its motor, its switches, its state."""

    def __init__(self, group: GroupWiring, state: GroupState, policy: PolicySettings,
                 monotonic: Callable[[], float], pin_factory: Factory | None,
                 on_press: Callable[[int, str], None]) -> None:
        self.group, self.state, self.policy = group, state, policy
        if state.was_moving:  # killed mid-run: the blind stopped somewhere between start and target
            log.warning("shade %s: the service stopped while it moved; position %.0f %% is an estimate until "
                        "the next run to an end stop", group.name, state.position_pct)
            state.referenced, state.was_moving = False, False
        up = OutputDevice(group.up_relay_pin, active_high=True, initial_value=False, pin_factory=pin_factory)
        down = OutputDevice(group.down_relay_pin, active_high=True, initial_value=False, pin_factory=pin_factory)
        self.motor = ShadeMotor(up, down, monotonic, travel_down_s=group.travel_down_s,
                                travel_up_s=group.travel_up_s, position_pct=state.position_pct,
                                referenced=state.referenced)
        self.switches = SwitchPair(group.up_switch_pin, group.down_switch_pin,
                                   lambda direction: on_press(group.number, direction), monotonic, pin_factory)
        self.decision = Decision(None, "auto", "starting: waiting for the first evaluation")
        self.day: GroupDay | None = None
        self.room_fit: RoomFit | None = None   # the rooms learnt from the building (esus.parts.room_learning)

    @property
    def room_model_validated(self) -> bool:
        return self.room_fit is not None and self.room_fit.validated

    def status(self) -> GroupStatus:
        return GroupStatus(self.group.number, self.group.name, round(self.motor.position_pct, 1),
                           self.state.applied_target, self.decision.mode, self.decision.reason,
                           bool(self.motor.up.value), bool(self.motor.down.value), _when(self.state.hold_until),
                           self.decision.mode in KINDS, self.state.auto_moves_today)

    def sync_state(self) -> None:
        self.state.position_pct = round(self.motor.position_pct, 2)
        self.state.referenced = self.motor.referenced
        self.state.was_moving = self.motor.direction != STOPPED or self.motor.pending is not None

    def close(self) -> None:
        """Relays off, then the devices this controller built are released."""
        self.switches.close()
        self.motor.close()
        self.motor.up.close()
        self.motor.down.close()


class ShadeCoordinator:
    def __init__(self, config: ShadeConfig, groups: Sequence[GroupWiring], location: Place, tz: ZoneInfo,
                 now: Callable[[], datetime], monotonic: Callable[[], float], *,
                 load: Callable[[str], dict | None], save: Callable[[str, dict], None],
                 inputs: Callable[[], Inputs], weather: Callable[[], Weather] = clear_sky,
                 pin_factory: Factory | None = None, on_status: Callable[[GroupStatus], None] | None = None,
                 hold_minutes: float = 120.0, lockout: LockoutSettings | None = None) -> None:
        self.config, self.location, self.tz = config, location, tz
        self.now, self.monotonic = now, monotonic
        self.load, self.save, self.inputs, self.weather = load, save, inputs, weather
        self.on_status = on_status or (lambda status: None)
        self.hold = timedelta(minutes=hold_minutes)
        self.lockout = Lockout.from_dict(lockout or LockoutSettings(), load("shades.lockout"))
        self.wake = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.groups: dict[int, GroupController] = {}
        self._last_status: dict[int, GroupStatus] = {}
        try:
            for g in groups:
                state = GroupState.from_dict(load(f"shades.group.{g.number}"))
                self.groups[g.number] = GroupController(g, state, policy_settings(config, g), monotonic,
                                                        pin_factory, self._press_from_pin)
        except BaseException:
            self.close()
            raise
        for controller in self.groups.values():
            self._persist(controller)

    # -- events ----------------------------------------------------------------------------------

    def _press_from_pin(self, number: int, direction: str) -> None:
        """From gpiozero's thread: hand the press to the event loop (or run it here in tests)."""
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.press, number, direction)
        else:
            self.press(number, direction)

    def press(self, number: int, direction: str) -> None:
        """A wall-switch press: stop if moving, else all the way; starts (or restarts) the hold."""
        c = self.groups[number]
        try:
            self._press(c, direction)
        except Exception as exc:  # noqa: BLE001 - a press that fails is the group's fault, not the loop's
            self.fault(c, exc, f"a {direction} press: ")

    def _press(self, c: GroupController, direction: str) -> None:
        number = c.group.number
        name, now = c.group.name, self.now()
        if c.decision.mode == "fault":
            log.info("shade %s: %s press refused: the group is in fault (%s)", name, direction, c.decision.reason)
            return
        c.motor.tick()
        if self.lockout.state.locked:
            if direction == DOWN or c.motor.direction == UP:
                log.info("shade %s: %s press refused: %s", name, direction, self.lockout.state.reason)
                return
        bas = self.inputs().bas_commands.get(number)
        if bas is not None:
            log.info("shade %s: %s press ignored: the BAS commands %.0f %%", name, direction, bas)
            return
        if c.motor.direction != STOPPED or c.motor.pending is not None:
            c.motor.stop()
            target, what, started = round(c.motor.position_pct, 1), "stopped", False
        else:
            target = 0.0 if direction == UP else 100.0
            c.motor.move_to(target)
            what, started = f"moving {direction}", True
        until = self._hold_until(c, now)
        if c.group.escape_door and started:   # a person started it up (or down): the door is theirs (or not)
            c.state.opened_by_hand = direction == UP
        c.state.hold_until, c.state.applied_mode, c.state.applied_target = until.isoformat(), "manual", target
        c.decision = Decision(target, "manual", f"wall switch: held until {until.astimezone(self.tz):%H:%M}")
        log.info("shade %s: wall switch %s, %s; hold until %s", name, direction, what,
                 until.astimezone(self.tz).strftime("%Y-%m-%d %H:%M"))
        self._persist(c)
        self.wake.set()

    def _hold_until(self, c: GroupController, now: datetime) -> datetime:
        """The end of a wall-switch hold: after the building's hold time, or at the next local midnight."""
        if c.group.manual_hold == "end-of-day":
            tomorrow = now.astimezone(self.tz).date() + timedelta(days=1)
            return datetime.combine(tomorrow, time(0), tzinfo=self.tz)
        return now + self.hold

    # -- evaluation ------------------------------------------------------------------------------

    def _group_day(self, c: GroupController, today: date, weather: Weather) -> GroupDay:
        day = c.day
        if day is None or day.day != today or (day.weather_source, day.weather_fetched_at) != \
                (weather.source, weather.fetched_at):
            learnt = c.room_fit.model if c.room_fit is not None and c.room_model_validated else None
            day = c.day = GroupDay.compute(self.location, c.group, self.config, weather, today, learnt)
        return day

    def set_room_fit(self, number: int, fit: RoomFit) -> None:
        """A group's rooms as learnt tonight: its day is worked out again with them."""
        c = self.groups.get(number)
        if c is not None:
            c.room_fit, c.day = fit, None
            self.wake.set()

    def evaluate(self) -> None:
        """Tick the motors and run the policy for every group (cheap: call it often).

        A failure belongs to the group it happens in: its relays go off, its mode says fault with
        the reason, the other groups go on, and it is tried again at the next evaluation. A failure
        before any group is reached (the inputs, the lockout) is every group's."""
        now = self.now()
        try:
            inputs = self.inputs()
            if inputs.wind_pending and inputs.wind_mps is None:  # a restart is no reason to move
                lock = self.lockout.state
            else:
                lock = self.lockout.update(now.timestamp(), inputs.wind_mps,
                                           inputs.wind_at.timestamp() if inputs.wind_at else None,
                                           inputs.outdoor_c, inputs.precipitation)
            self.save("shades.lockout", self.lockout.to_dict())
            weather = self.weather()
        except Exception as exc:  # noqa: BLE001 - no group can be judged without its inputs
            for c in self.groups.values():
                self.fault(c, exc, "reading the inputs: ")
            return
        today = now.astimezone(self.tz).date()
        for c in self.groups.values():
            try:
                self._evaluate_group(c, now, today, inputs, lock, weather)
            except Exception as exc:  # noqa: BLE001 - one group's fault never stops the others
                self.fault(c, exc)

    def _evaluate_group(self, c: GroupController, now: datetime, today: date, inputs: Inputs,
                        lock: LockoutState, weather: Weather) -> None:
        c.motor.tick()
        st = c.state
        if st.moves_day != today.isoformat():
            st.moves_day, st.auto_moves_today = today.isoformat(), 0
        day = self._group_day(c, today, weather)
        hold = _when(st.hold_until)
        if hold is not None and now >= hold:
            log.info("shade %s: the wall-switch hold has ended; automation resumes", c.group.name)
            st.hold_until = hold = None
        situation = day.situation(
            now, self.tz, c.motor.position_pct, rooms=inputs.rooms.get(c.group.number, ()),
            measured_wm2=inputs.measured_wm2.get(c.group.number),
            lockout=lock.kind if lock.locked else None, lockout_reason=lock.reason,
            bas_command_pct=inputs.bas_commands.get(c.group.number),
            automation_enabled=inputs.automation_enabled, hold_until=hold, door_opened_by_hand=st.opened_by_hand,
            last_auto_move=_when(st.last_auto_move), auto_moves_today=st.auto_moves_today,
            room_model_validated=c.room_model_validated)
        decision = decide(situation, c.policy)
        self._apply(c, decision, now)
        self._persist(c)

    def fault(self, c: GroupController, exc: BaseException, where: str = "") -> None:
        """Relays off (the blind stops where it is), mode fault with the reason, said once per cause.

        The group keeps its applied decision: back from a fault it moves at the next change of
        decision, as after a restart, never because the fault ended."""
        reason = (f"fault: {where}{type(exc).__name__}: {exc}"[:160]
                  + f"; relays off, retried every {EVALUATE_EVERY_S:g} s")
        for switch_off in (c.motor.stop, c.motor.up.off, c.motor.down.off):
            try:
                switch_off()
            except Exception:  # switch off all that can be switched off
                log.exception("shade %s: switching the relays off failed", c.group.name)
        if (c.decision.mode, c.decision.reason) != ("fault", reason):
            log.error("shade %s: %s", c.group.name, reason, exc_info=exc if c.decision.mode != "fault" else None)
        c.decision = Decision(None, "fault", reason)
        try:
            self._persist(c)
        except Exception:  # noqa: BLE001 - the state may be what failed; the status is still shown
            status = c.status()
            self._last_status[c.group.number] = status
            self.on_status(status)

    def _apply(self, c: GroupController, decision: Decision, now: datetime) -> None:
        st, motor = c.state, c.motor
        changed = (decision.mode, decision.target_pct) != (c.decision.mode, c.decision.target_pct)
        if changed or decision.reason != c.decision.reason:
            log.log(logging.INFO if changed else logging.DEBUG, "shade %s: %s (%s)", c.group.name,
                    decision.reason, decision.mode)
            log.debug("shade %s: why: %s", c.group.name, decision.explain())
        c.decision = decision
        target = decision.target_pct
        if target is None:
            return
        if decision.mode in KINDS:
            # safety is level-triggered: anything not up, or not going up, is retracted now
            if motor.direction == DOWN or (motor.direction == STOPPED and motor.pending is None
                                           and motor.position_pct > 0.5):
                motor.move_to(0.0)
            st.applied_mode, st.applied_target = decision.mode, 0.0
            return
        if (decision.mode, target) == (st.applied_mode, st.applied_target):
            return  # edge-triggered: nothing changed, nothing moves (also right after a restart)
        motor.move_to(target)
        st.applied_mode, st.applied_target = decision.mode, target
        if decision.automatic:
            st.last_auto_move = now.isoformat()
            st.auto_moves_today += 1

    def _persist(self, c: GroupController) -> None:
        c.sync_state()
        self.save(f"shades.group.{c.group.number}", c.state.__dict__.copy())
        status = c.status()
        if self._last_status.get(c.group.number) != status:
            self._last_status[c.group.number] = status
            self.on_status(status)

    def next_deadline_s(self) -> float:
        """Seconds (of the injected clock) until something must happen."""
        now = self.monotonic()
        deadlines = [d for c in self.groups.values() if (d := c.motor.next_deadline()) is not None]
        return max(0.0, min([EVALUATE_EVERY_S] + [d - now for d in deadlines]))

    async def run(self, sleep: Callable[[float], Any]) -> None:
        """Evaluate, then sleep until a motor deadline, the next evaluation or an event."""
        self.loop = asyncio.get_running_loop()
        while True:
            self.evaluate()
            self.wake.clear()
            sleeper = asyncio.ensure_future(sleep(self.next_deadline_s()))
            waker = asyncio.ensure_future(self.wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()

    def close(self) -> None:
        """Relays off (a blind stops where it is), pins released, state saved."""
        for c in self.groups.values():
            c.motor.stop()
            self._persist(c)
            c.close()
        self.groups.clear()
