"""The shading policy: a priority chain of small handlers, each returning a decision with the
reason shown to the user (BACnet, logs, InfluxDB, `esus shades plan`).

Highest first: wind/frost safety -> BAS command -> wall-switch hold -> BAS kill switch ->
automation (pre-emptive cooling, night, cooling, heating with glare control) -> default.
Automatic decisions then pass the rate limits (minimum interval, minimum change, daily cap);
safety, the BAS and the occupant are never rate-limited. Everything here is pure.

A handler returns a Decision when its rule applies, else the reason it passed; the decision keeps
the whole trace (which rule matched, which passed and why), for the one who asks why a blind did
not move (`esus shades plan --json`, the log at DEBUG).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

COOLING, HEATING = "cooling", "heating"


@dataclass(frozen=True)
class PolicySettings:
    night_position_pct: float = 0.0
    glare_min_wm2: float = 150.0
    min_move_interval: timedelta = timedelta(minutes=15)
    min_change_pct: float = 5.0
    max_moves_per_day: int = 6
    lead: timedelta = timedelta(minutes=30)


@dataclass(frozen=True)
class Situation:
    """One group at one instant: everything the policy may look at."""

    now: datetime
    tz: ZoneInfo
    position_pct: float
    lockout: str | None = None            # "wind" / "frost" while locked
    lockout_reason: str = ""
    bas_command_pct: float | None = None
    automation_enabled: bool = True
    hold_until: datetime | None = None
    season: str = HEATING
    season_reason: str = ""
    sun_up: bool = False
    sun_on_facade: bool = False
    sun_start: datetime | None = None     # today's sun window on the façade
    sun_end: datetime | None = None
    shading_day: bool = False
    shading_reason: str = ""
    occupied: bool = False
    poa_wm2: float = 0.0
    glare_pct: float = 0.0
    last_auto_move: datetime | None = None
    auto_moves_today: int = 0

    def hhmm(self, when: datetime) -> str:
        return f"{when.astimezone(self.tz):%H:%M}"


@dataclass(frozen=True)
class TraceStep:
    rule: str
    outcome: str      # "passed", "matched", or "limited" (matched, then held back by a rate limit)
    why: str

    def __str__(self) -> str:
        return f"{self.rule} {self.outcome} ({self.why})"


@dataclass(frozen=True)
class Decision:
    """Where the group should be (None: leave it), the mode shown on BACnet, and why."""

    target_pct: float | None
    mode: str
    reason: str
    automatic: bool = False
    trace: tuple[TraceStep, ...] = field(default=(), compare=False)

    def explain(self) -> str:
        return " > ".join(str(step) for step in self.trace)


Handler = Callable[[Situation, PolicySettings], "Decision | str"]


def wind_frost(s: Situation, p: PolicySettings) -> Decision | str:
    if s.lockout:
        return Decision(0.0, s.lockout, f"retracted: {s.lockout_reason}")
    return "no wind or frost lockout"


def bas_command(s: Situation, p: PolicySettings) -> Decision | str:
    if s.bas_command_pct is not None:
        return Decision(float(s.bas_command_pct), "bas", f"BAS command {s.bas_command_pct:.0f} %")
    return "no BAS command (shade-g-command relinquished)"


def wall_switch(s: Situation, p: PolicySettings) -> Decision | str:
    if s.hold_until is not None and s.now < s.hold_until:
        return Decision(None, "manual", f"wall switch: held until {s.hhmm(s.hold_until)}")
    return "no wall-switch hold"


def kill_switch(s: Situation, p: PolicySettings) -> Decision | str:
    if not s.automation_enabled:
        return Decision(None, "disabled", "automation disabled by the BAS (shade-automation-enable)")
    return "automation enabled"


def _in_cooling_window(s: Situation, p: PolicySettings) -> bool:
    return (s.season == COOLING and s.shading_day and s.sun_start is not None and s.sun_end is not None
            and s.sun_start - p.lead <= s.now < s.sun_end)


def preemptive_cooling(s: Situation, p: PolicySettings) -> Decision | str:
    """Cooling on a sunny day: down from `lead` before the sun reaches the façade until it has left."""
    if _in_cooling_window(s, p):
        assert s.sun_start is not None and s.sun_end is not None
        when = "ahead of the sun" if s.now < s.sun_start else "sun on the façade"
        return Decision(100.0, "auto", f"cooling, {when} {s.hhmm(s.sun_start)}-{s.hhmm(s.sun_end)} "
                                       f"({s.shading_reason})", automatic=True)
    if s.season != COOLING:
        return f"not the cooling season ({s.season}{': ' + s.season_reason if s.season_reason else ''})"
    if not s.shading_day:
        return f"not a shading day ({s.shading_reason})" if s.shading_reason else "not a shading day"
    if s.sun_start is None or s.sun_end is None:
        return "the sun does not reach the façade today"
    return f"outside {s.hhmm(s.sun_start - p.lead)}-{s.hhmm(s.sun_end)} (sun on the façade, with the lead)"


def night(s: Situation, p: PolicySettings) -> Decision | str:
    if not s.sun_up:
        return Decision(p.night_position_pct, "auto", "night position", automatic=True)
    return "the sun is up"


def cooling(s: Situation, p: PolicySettings) -> Decision | str:
    if s.season != COOLING:
        return f"season is {s.season}"
    if not s.shading_day:
        why = f"no sunny forecast ({s.shading_reason})"
    elif s.sun_end is not None and s.now >= s.sun_end:
        why = "the sun has left the façade"
    else:
        why = "sun not on the façade yet"
    return Decision(0.0, "auto", f"cooling, up: {why}", automatic=True)


def heating(s: Situation, p: PolicySettings) -> Decision | str:
    if s.season != HEATING:
        return f"season is {s.season}"
    if s.occupied and s.sun_on_facade and s.poa_wm2 >= p.glare_min_wm2 and s.glare_pct > 0:
        return Decision(s.glare_pct, "auto", f"heating, glare control: sun in front at {s.poa_wm2:.0f} W/m²",
                        automatic=True)
    return Decision(0.0, "auto", "heating, up for solar gain", automatic=True)


def default(s: Situation, p: PolicySettings) -> Decision:
    return Decision(None, "auto", "no rule applies: staying")


CHAIN: Sequence[Handler] = (wind_frost, bas_command, wall_switch, kill_switch,
                            preemptive_cooling, night, cooling, heating)


def rate_limit(d: Decision, s: Situation, p: PolicySettings) -> str | None:
    """Why an automatic move is held back (a small change, too soon after the last, too many a
    day), or None when it may go."""
    if not d.automatic or d.target_pct is None:
        return None
    if abs(d.target_pct - s.position_pct) < p.min_change_pct:
        return f"within {p.min_change_pct:g} % of the position: already there"
    if s.last_auto_move is not None and s.now - s.last_auto_move < p.min_move_interval:
        return f"next move from {s.hhmm(s.last_auto_move + p.min_move_interval)}"
    if s.auto_moves_today >= p.max_moves_per_day:
        return f"daily cap of {p.max_moves_per_day} moves reached"
    return None


def decide(s: Situation, p: PolicySettings, chain: Sequence[Handler] = CHAIN) -> Decision:
    trace: list[TraceStep] = []
    for handler in chain:
        outcome = handler(s, p)
        if isinstance(outcome, str):
            trace.append(TraceStep(handler.__name__, "passed", outcome))
            continue
        held = rate_limit(outcome, s, p)
        if held is None:
            trace.append(TraceStep(handler.__name__, "matched", outcome.reason))
            return replace(outcome, trace=tuple(trace))
        trace.append(TraceStep(handler.__name__, "limited", held))
        reason = outcome.reason if held.endswith("already there") else f"{outcome.reason} ({held})"
        return replace(outcome, target_pct=None, reason=reason, trace=tuple(trace))
    decision = default(s, p)
    return replace(decision, trace=(*trace, TraceStep("default", "matched", decision.reason)))


def choose_season(rooms: Sequence[tuple[str, float | None, float | None, float | None]],
                  outdoor_max_c: float | None, month: int, cooling_outdoor_max_c: float,
                  margin_k: float, previous: str | None) -> tuple[str, str]:
    """Cooling (keep the sun out) or heating (let its gain in) for a group, from its rooms (name,
    temperature, heating and cooling setpoints). The rooms decide whenever they are known: an office
    with people and computers in it needs cooling on a cool sunny afternoon, which the outdoor
    temperature does not tell. A room in the upper half of its band between the setpoints is
    protected (the sun would carry it to cooling); rooms in the lower half take the gain; near the
    middle the previous season holds. The forecast daily maximum outdoor temperature decides only
    when no room is known, and with no data at all the calendar."""
    for name, temp, _heat, cool in rooms:
        if temp is not None and cool is not None and temp >= cool - margin_k:
            return COOLING, f"room {name} {temp:.1f} °C near its cooling setpoint {cool:.1f} °C"
    banded = [(n, t, h, c) for n, t, h, c in rooms if t is not None and h is not None and c is not None and c > h]
    if banded:
        name, temp, heat, cool = max(banded, key=lambda r: (r[1] - r[2]) / (r[3] - r[2]))   # the warmest in its band
        middle = (heat + cool) / 2
        if temp >= middle:
            return COOLING, (f"room {name} {temp:.1f} °C in the upper half of its {heat:g}-{cool:g} °C band: "
                             "the sun would carry it to cooling")
        if temp <= middle - margin_k:
            return HEATING, f"rooms in the lower half of their bands (warmest: {name} {temp:.1f} °C)"
        if previous in (COOLING, HEATING):
            return previous, f"unchanged (room {name} {temp:.1f} °C near the middle of its band)"
        return COOLING, f"room {name} {temp:.1f} °C near the middle of its band: keeping the sun out"
    if outdoor_max_c is not None and outdoor_max_c >= cooling_outdoor_max_c:
        return COOLING, (f"no room temperature known; forecast maximum {outdoor_max_c:.1f} °C >= "
                         f"{cooling_outdoor_max_c:g} °C")
    known = [(n, t, h) for n, t, h, _ in rooms if t is not None and h is not None]
    if known and all(t <= h + margin_k for _, t, h in known):
        return HEATING, "rooms near their heating setpoints"
    if outdoor_max_c is not None and outdoor_max_c < cooling_outdoor_max_c - 2 * margin_k:
        return HEATING, f"no room temperature known; forecast maximum {outdoor_max_c:.1f} °C"
    if previous in (COOLING, HEATING):
        return previous, "unchanged (between the thresholds)"
    season = COOLING if 5 <= month <= 9 else HEATING
    return season, "no temperatures known: by the calendar"
