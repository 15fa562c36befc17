"""The shedder: brings every action's priority slot to what the current events ask for.

It is a reconciler, not a script of start and end steps: the events and operator releases in the
ledger decide what each slot should hold now, and `reconcile` writes only the differences. So an
event's end, a cancellation, an overlapping event, an operator's release, a restart in the middle
of an event and a retry after a controller did not answer all take the same path."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from demand_response.actions import ShedAction, Value, desired_values
from demand_response.ledger import Event, Ledger, Override

log = logging.getLogger(__name__)

STAGE_DELAY_S = 5.0  # between one controller's write and the next's, so the load steps down gently


class ShedWriteError(Exception):
    """A controller did not take a write (refused it, or did not answer)."""


class PointWriter(Protocol):
    """Writes an action's shed value to its point, or NULL at its priority when value is None (the composer
    gives one over BACnet); raises ShedWriteError with one line saying why a write was not taken."""

    async def write(self, action: ShedAction, value: Value | None) -> None: ...

    async def read_back(self, action: ShedAction) -> SlotReading:
        """What the action's slot holds now, and whether a higher priority outranks it; raises
        ShedWriteError when it cannot be read."""
        ...


class SlotReading(NamedTuple):
    value: Value | None              # what the action's slot holds (None: NULL)
    outranked_by: int | None = None  # the highest priority above it (a lower number) that holds a value


def same_value(a: Value | None, b: Value | None) -> bool:
    """Equal as a controller stores them: a REAL comes back rounded to 32 bits, a state by its name."""
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(float(a) - float(b)) <= 1e-4 * max(1.0, abs(float(a)))
    return a == b or (a is not None and b is not None and str(a).lower() == str(b).lower())


@dataclass(frozen=True)
class ShedState:
    level: int
    until_s: float | None        # when the latest of the current events ends
    events: list[Event]          # the events active now
    overrides: dict[str, Override]
    limit_level: int = 0         # the demand limiter's level now (0: it asks for nothing)
    limit_until_s: float | None = None

    def level_of(self, action: str, limited: frozenset[str] | None) -> int:
        """The stronger of the events' level and the demand limiter's (for the actions it uses)."""
        return max(self.level, self.limit_level if limited is None or action in limited else 0)

    @property
    def holds_until_s(self) -> float | None:
        """Until when the overrides in force are asked for, by an event or the limiter."""
        ends = [t for t in (self.until_s, self.limit_until_s) if t is not None]
        return max(ends) if ends else None


class Releases(NamedTuple):
    """The overrides a stop released (acknowledged), and those it could not."""

    released: list[str]
    not_released: list[str]


class Shedder:
    def __init__(self, actions: list[ShedAction], ledger: Ledger, writer: PointWriter, *,
                 stage_delay_s: float = STAGE_DELAY_S, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 holds: Callable[[str], bool] = lambda condition: True) -> None:
        names = [a.name for a in actions]
        if len(set(names)) != len(names):
            raise ValueError("shed action names must be unique")
        self.actions, self.ledger, self.writer = actions, ledger, writer
        self.stage_delay_s, self.clock, self.sleep, self.holds = stage_delay_s, clock, sleep, holds
        self._lock = asyncio.Lock()
        self._limit: tuple[int, float, frozenset[str] | None] = (0, 0.0, None)

    def limit(self, level: int, until_s: float, actions: frozenset[str] | None = None) -> None:
        """The demand limiter's level until `until_s` (it asks again each minute; a stopped limiter's
        request lapses), for `actions` (None: all). Where an event asks for more, the event wins;
        the shedder stays the one writer of each point."""
        self._limit = (level, until_s, actions)

    # -- what the VTN and the operator say -----------------------------------------------------

    def put_event(self, *intervals: Event) -> None:
        """A new or modified event, as its intervals (all of one event)."""
        self.ledger.put_event(list(intervals))

    def cancel_event(self, event_id: str) -> bool:
        return self.ledger.cancel_event(event_id)

    def release(self, action: str) -> None:
        """An operator's release: NULL for this action until the current events are over."""
        if action not in {a.name for a in self.actions}:
            raise KeyError(f"no shed action named {action!r}")
        until = self.state().holds_until_s
        self.ledger.release_by_operator(action, until if until is not None else self.clock())

    def release_unknown(self) -> None:
        """After the ledger was lost: which slots this service holds is unknown, so every action's
        is released (NULL) at the next reconcile. A NULL where nothing is held changes nothing, and an
        event still running is shed again when the VTN sends it."""
        now = self.clock()
        for action in self.actions:
            self.ledger.begin(action, None, None, now)

    def release_all(self) -> None:
        for action in self.actions:
            self.release(action.name)

    def state(self) -> ShedState:
        now = self.clock()
        active = [e for e in self.ledger.events() if e.active_at(now)]
        level, until, _ = self._limit
        limiting = level > 0 and now < until
        return ShedState(max((e.level for e in active), default=0),
                         max((e.end_s for e in active), default=None), active, self.ledger.overrides(),
                         level if limiting else 0, until if limiting else None)

    # -- what goes out -------------------------------------------------------------------------

    async def reconcile(self) -> int:
        """Write what differs from what the slots should hold; returns the number of writes tried.
        Sheds go out in the site file's order, releases in reverse, `stage_delay_s` apart; a
        controller that does not answer delays no other."""
        async with self._lock:
            orphans = self._orphans()
            await self._apply(orphans, None)
            state = self.state()
            limited = self._limit[2]
            desired = desired_values(self.actions, lambda name: state.level_of(name, limited),
                                     self.ledger.operator_released(self.clock()), self.holds)
            sheds: list[tuple[ShedAction, Value | None]] = []
            releases: list[tuple[ShedAction, Value | None]] = []
            for action in self.actions:
                want, have = desired[action.name], state.overrides.get(action.name)
                if want is not None:
                    if have is None or have.state != "active" or have.value != want:
                        sheds.append((action, want))
                    elif have.until_s != state.holds_until_s:
                        self.ledger.extend(action.name, state.holds_until_s)
                elif have is not None and have.state != "released":
                    releases.append((action, None))
            await self._apply(sheds + releases[::-1], state.holds_until_s)
            self.ledger.forget_events_before(self.clock() - 86400)  # a day of history for the page
            return len(orphans) + len(sheds) + len(releases)

    async def verify(self) -> int:
        """Read back every override the controllers acknowledged; one whose slot no longer holds it
        (a controller restarted and lost its priority array, another writer took the slot) is
        marked lost, said once, and written again at the next reconcile. A controller that cannot
        be read is not judged (its write path says whether it answers). Returns how many were lost."""
        async with self._lock:
            held = [o for o in self.ledger.overrides().values() if o.state == "active" and o.value is not None]
            found = await asyncio.gather(*(self._read_back(o.slot) for o in held))
            lost = 0
            for override, reading in zip(held, found, strict=True):
                if reading is None:
                    continue
                now_holds = reading.value
                if same_value(now_holds, override.value):
                    self._check_rank(override, reading.outranked_by)
                    continue
                lost += 1
                self.ledger.lost(override.action, self.clock())
                slot = override.slot
                log.warning("demand response: %s lost its override: %s %s priority %d holds %s, not %r (the "
                            "controller restarted, or another writer took the slot); writing it again",
                            override.action, slot.address, slot.object_id, slot.priority,
                            "NULL" if now_holds is None else repr(now_holds), override.value)
            return lost

    def _check_rank(self, override: Override, above: int | None) -> None:
        """Another writer at a higher priority (an operator's 8 over esus's 10) holds the point: the
        shed is in place but does nothing. Said once when it starts and once when it ends."""
        if above == override.outranked_by:
            return
        self.ledger.outranked(override.action, above)
        slot = override.slot
        if above is None:
            log.info("demand response: %s is no longer outranked: its priority %d is the one in force", override.action,
                     slot.priority)
        else:
            log.warning("demand response: %s is outranked by priority %d on %s %s: the shed at priority %d does "
                        "nothing until that writer releases it", override.action, above, slot.address,
                        slot.object_id, slot.priority)

    async def _read_back(self, action: ShedAction) -> SlotReading | None:
        """None: the controller cannot be read (it is not judged)."""
        try:
            return await self.writer.read_back(action)
        except ShedWriteError:
            return None

    def _orphans(self) -> list[tuple[ShedAction, None]]:
        """Slots held for an action the site file no longer has, or now points elsewhere: released
        where they were written."""
        configured = {(a.name, a.address, a.object_id, a.property, a.priority) for a in self.actions}
        return [(o.slot, None) for o in self.ledger.overrides().values() if o.state != "released" and
                (o.action, o.slot.address, o.slot.object_id, o.slot.property, o.slot.priority) not in configured]

    async def release_held(self, within_s: float | None = None, answer_s: float = 0.0) -> Releases:
        """NULL to every slot esus may hold, without an operator release: for a clean stop, since a
        stopped esus cannot end overrides on time. The next reconcile sheds again if an event lasts.
        With `within_s` (a stop's deadline) the releases are staged closer where the usual gap would
        send the last one too late to be answered within it (`answer_s`: a write's longest wait).
        Says which the controllers acknowledged and which not (those the next start releases)."""
        async with self._lock:
            held = self.ledger.overrides()
            changes = [(o.slot, None) for o in reversed(held.values()) if o.state != "released"]
            gap = self.stage_delay_s
            if within_s is not None and len(changes) > 1:
                gap = min(gap, max(0.0, within_s - answer_s) / (len(changes) - 1))
            await self._apply(changes, None, gap)
            after = self.ledger.overrides()
            names = [action.name for action, _ in changes]
            return Releases([n for n in names if after[n].state == "released"],
                            [n for n in names if after[n].state != "released"])

    async def _apply(self, changes: Sequence[tuple[ShedAction, Value | None]], until_s: float | None,
                     gap_s: float | None = None) -> None:
        """Each change `gap_s` (the stage delay) after the one before that moved load: releasing a
        slot no controller acknowledged (an offline one's) moves none, so it waits for no stage and
        holds back no other."""
        tasks, held, staged = [], self.ledger.overrides(), False
        for action, value in changes:
            before = held.get(action.name)
            moves_load = value is not None or before is None or before.state != "failed"
            if moves_load and staged:
                await self.sleep(self.stage_delay_s if gap_s is None else gap_s)
            staged |= moves_load
            self.ledger.begin(action, value, until_s if value is not None else None, self.clock())
            tasks.append(asyncio.create_task(self._write(action, value)))
        await asyncio.gather(*tasks)

    async def _write(self, action: ShedAction, value: Value | None) -> None:
        what = "released (NULL)" if value is None else f"shed to {value!r}"
        try:
            await self.writer.write(action, value)
        except ShedWriteError as exc:
            self.ledger.failed(action.name, str(exc), self.clock())
            log.warning("demand response: %s not %s: %s; retrying", action.name, what, exc)
            return
        self.ledger.succeeded(action.name, self.clock())
        log.info("demand response: %s (%s %s, priority %d) %s", action.name, action.address, action.object_id,
                 action.priority, what)
