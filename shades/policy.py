"""The shading policy: a priority chain of small handlers, each returning a decision with the
reason shown to the user (BACnet, logs, InfluxDB, `esus shades plan`).

Highest first: wind/ice/lost-wind-data safety -> BAS command -> wall-switch hold -> BAS kill switch ->
an escape door a person raised ->
automation (night; a room held at its cooling setpoint with the sun on its glass is protected; the
VDI 3813 thermal automatic, a threshold on the façade's irradiance with the room's temperature
deciding protect or admit, which decides until the group's room model is validated on the
building's own data; then the room forecast: the most open position worth its cost to the rooms,
glare control while people are in) -> default.
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

from shades.foresight import Option


@dataclass(frozen=True)
class PolicySettings:
    night_position_pct: float = 0.0
    glare_min_wm2: float = 150.0   # direct sun on the façade from this is glare; less light, no lowering
    min_move_interval: timedelta = timedelta(minutes=15)
    min_change_pct: float = 5.0
    max_moves_per_day: int = 4
    min_saving_kwh: float = 0.1    # a move must save this much heating and cooling today
    protect_above_wm2: float = 150.0   # VDI 3813 thermal automatic: down from this on the façade
    release_below_wm2: float = 120.0   # and up again below this
    heating_season_below_c: float = 12.0   # a day whose outdoor maximum stays below this is a heating day


@dataclass(frozen=True)
class Situation:
    """One group at one instant: everything the policy may look at."""

    now: datetime
    tz: ZoneInfo
    position_pct: float
    lockout: str | None = None            # shades.lockout.KINDS while locked
    lockout_reason: str = ""
    bas_command_pct: float | None = None
    automation_enabled: bool = True
    hold_until: datetime | None = None
    door_opened_by_hand: bool = False     # an escape door a person raised
    sun_up: bool = False
    sun_on_facade: bool = False
    occupied: bool = False
    poa_wm2: float = 0.0
    direct_wm2: float = 0.0               # its direct beam: what casts sun patches and glare
    glare_pct: float = 0.0                # the position that keeps direct sun off the work zone
    room: str = ""                        # the room that speaks for the group, as shown
    room_c: float | None = None           # its air temperature (None: unknown)
    heating_c: float = 21.0               # its setpoints
    cooling_c: float = 25.0
    options: tuple[Option, ...] = ()      # what each position now costs today (shades.foresight)
    room_model_validated: bool = False    # the group's room model met its error bound on held-out days
    outdoor_max_c: float | None = None    # the day's highest outdoor temperature, forecast (None: unknown)
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


def lockout(s: Situation, p: PolicySettings) -> Decision | str:
    if s.lockout:
        return Decision(0.0, s.lockout, f"retracted: {s.lockout_reason}")
    return "no wind, ice or wind-data lockout"


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


def escape_door(s: Situation, p: PolicySettings) -> Decision | str:
    if s.door_opened_by_hand:
        return Decision(None, "manual", "escape door raised by hand: not lowered automatically until someone "
                                        "lowers it at the wall switch")
    return "not a door raised by hand"


def night(s: Situation, p: PolicySettings) -> Decision | str:
    if not s.sun_up:
        return Decision(p.night_position_pct, "auto", "night position", automatic=True)
    return "the sun is up"


#: A room this close below its cooling setpoint is being cooled.
COOLED_MARGIN_K = 0.3


def cooled_room(s: Situation, p: PolicySettings) -> Decision | str:
    """A room held at its cooling setpoint while the sun is on its glass is being cooled: every watt
    the sun puts in is taken out again by the plant, so the blind is down, whatever a model says."""
    if s.room_c is None or s.room_c < s.cooling_c - COOLED_MARGIN_K:
        return "the room is not at its cooling setpoint" if s.room_c is not None else "the room's temperature unknown"
    if not s.sun_on_facade or s.poa_wm2 < p.protect_above_wm2:
        return f"the room is at its cooling setpoint, but {s.poa_wm2:.0f} W/m² on the façade is no sun to keep out"
    return Decision(100.0, "auto", f"down: the room is cooled (at its {s.cooling_c:g} °C cooling setpoint) and the "
                                   f"sun puts {s.poa_wm2:.0f} W/m² on the façade{_of(s)}", automatic=True)


def thermal_automatic(s: Situation, p: PolicySettings) -> Decision | str:
    """VDI 3813's thermal automatic (`rule_floor`), deciding until the group's room model is
    validated on the building's own data: a room model that only guesses the room loses to it."""
    if s.room_model_validated:
        return "the room model is validated: the room forecast decides"
    return rule_floor(s, p)


def rule_floor(s: Situation, p: PolicySettings) -> Decision:
    """The floor any smarter choice must beat: down while the sun puts `protect_above_wm2` or more
    on the façade, up again below `release_below_wm2`, except that a room at its heating setpoint
    takes the sun's heat, and so do all on a heating day (the forecast's outdoor maximum below
    `heating_season_below_c`) until one reaches its cooling setpoint (`cooled_room`). A cool room
    on a summer morning does not: the morning sun's heat, stored in the room's mass, comes back as
    cooling in the afternoon."""
    if s.room_c is not None and s.room_c < s.heating_c + HEATED_MARGIN_K:
        return Decision(0.0, "auto", f"up: the room is heated (at its {s.heating_c:g} °C heating setpoint) and takes "
                                     f"the sun's heat (VDI 3813 thermal automatic){_of(s)}", automatic=True)
    if s.outdoor_max_c is not None and s.outdoor_max_c < p.heating_season_below_c:
        return Decision(0.0, "auto", f"up: a heating day (outdoors at most {s.outdoor_max_c:.0f} °C): the rooms take "
                                     f"the sun's heat until one reaches its cooling setpoint (VDI 3813 thermal "
                                     f"automatic){_of(s)}", automatic=True)
    if s.sun_on_facade and s.poa_wm2 >= p.protect_above_wm2:
        return Decision(100.0, "auto", f"down: {s.poa_wm2:.0f} W/m² on the façade, from {p.protect_above_wm2:g} the "
                                       "sun is kept out (VDI 3813 thermal automatic; the room model is not yet "
                                       f"validated){_of(s)}", automatic=True)
    if not s.sun_on_facade or s.poa_wm2 < p.release_below_wm2:
        why = "the sun is not on the façade" if not s.sun_on_facade else \
            f"{s.poa_wm2:.0f} W/m² on the façade, below {p.release_below_wm2:g}"
        return Decision(0.0, "auto", f"up: {why} (VDI 3813 thermal automatic)", automatic=True)
    return Decision(None, "auto", f"staying: {s.poa_wm2:.0f} W/m² on the façade, between "
                                  f"{p.release_below_wm2:g} and {p.protect_above_wm2:g} (VDI 3813 thermal automatic)",
                    automatic=True)


def _of(s: Situation) -> str:
    """The room that spoke, as the reasons end."""
    return f" ({s.room})" if s.room else ""


def room_forecast(s: Situation, p: PolicySettings) -> Decision | str:
    """The most open position whose day costs at most `min_saving_kwh` more heating and cooling
    than the best one: daylight and view unless shading is worth it. Staying put wins ties (a move
    must beat the present position by the margin, opening by a clear one), so the blind does not
    follow the forecast's every wobble."""
    if not s.options:
        return "no room forecast"
    allowed, note = _allowed(s, p)
    best = min(o.kwh for o in allowed)
    current = min(s.options, key=lambda o: abs(o.position_pct - s.position_pct))
    settled = s.last_auto_move is None or s.now - s.last_auto_move >= SETTLE
    if current in allowed and current.kwh <= best + p.min_saving_kwh:
        opener = [o for o in allowed if settled and o.kwh <= best + p.min_saving_kwh / 4
                  and (o.position_pct < 0.5 or o.position_pct <= current.position_pct - OPENING_STEP_PCT)]
        chosen = opener[0] if opener and opener[0].position_pct < current.position_pct else current
    else:
        chosen = next(o for o in allowed if o.kwh <= best + p.min_saving_kwh)
    return Decision(chosen.position_pct, "auto", _why(chosen, allowed, s, p) + note, automatic=True)


#: A blind the room forecast has just moved is not opened again for daylight alone this soon: the
#: forecast's second thoughts (its costs wobble as the sun and the room change) would spend the
#: day's moves, and with them what a cooled room's protection needs.
SETTLE = timedelta(hours=1)
#: A partly lowered blind opens further (short of fully up) only by this much at a time.
OPENING_STEP_PCT = 30.0
#: A room this close to its heating setpoint is being heated.
HEATED_MARGIN_K = 0.5
#: Heating differences below this are the model's rounding, not a cost of the glare position.
HEATING_NOISE_WH = 1.0


#: In office hours, a room model may lower the blind this far where the rule would leave it up:
#: the upper half shaded, the view below kept.
VIEW_KEPT_PCT = 50.0


def _allowed(s: Situation, p: PolicySettings) -> tuple[list[Option], str]:
    """The positions the room forecast may choose from, and what was left out, said to people.

    Never worse than the rule for the people in the room: in office hours the blind goes further
    down than half way (which keeps the view) only where the rule would lower it too, from
    `protect_above_wm2` on the façade."""
    allowed, note = _for_the_room(s, p)
    if not s.occupied or (s.sun_on_facade and s.poa_wm2 >= p.protect_above_wm2):
        return allowed, note
    kept = [o for o in allowed if o.position_pct <= VIEW_KEPT_PCT + 0.5]
    if len(kept) < len(allowed):
        note += (f"; in office hours no further down than {VIEW_KEPT_PCT:g} % below {p.protect_above_wm2:g} W/m² "
                 "(the view kept)")
    return kept or allowed[:1], note


def _for_the_room(s: Situation, p: PolicySettings) -> tuple[list[Option], str]:
    """The positions worth weighing for the room itself.

    No lowering in dim light (the view is worth more than the light's heat) or in a room being
    heated (it takes the sun now, whatever the afternoon brings: the model, whose mass starts at
    the air temperature, cannot see what a heated room's cooler mass would give). While people
    are in and direct sun is on the façade, nothing more open than the glare position, unless the
    room is in the lower half of its band or the model says the sun's heat saves heating."""
    no_lowering = [o for o in s.options if o.position_pct <= s.position_pct + 0.5]
    if s.poa_wm2 < p.glare_min_wm2:
        return no_lowering, ""
    if s.room_c is not None and s.room_c < s.heating_c + HEATED_MARGIN_K:
        return no_lowering, "; no lowering: the room is at its heating setpoint and takes the sun's heat"
    glare = s.occupied and s.sun_on_facade and s.direct_wm2 >= p.glare_min_wm2 and s.glare_pct > 0
    if not glare:
        return list(s.options), ""
    if s.room_c is not None and s.room_c < (s.heating_c + s.cooling_c) / 2:
        return list(s.options), ("; no glare position: the room is in the lower half of its band and takes "
                                 "the sun's heat")
    shielded = [o for o in s.options if o.position_pct >= s.glare_pct - 0.5]
    costs_heat_wh = 1000 * (shielded[0].heating_kwh - s.options[0].heating_kwh)
    if costs_heat_wh > HEATING_NOISE_WH:
        return list(s.options), f"; no glare position: the sun's heat saves {costs_heat_wh:.0f} Wh of heating tonight"
    return shielded, ""


def _label(position_pct: float, glare_pct: float) -> str:
    if position_pct < 0.5:
        return "up"
    if position_pct > 99.5:
        return "down"
    return "the glare position" if abs(position_pct - glare_pct) < 0.5 else f"{position_pct:.0f} %"


def _why(chosen: Option, allowed: list[Option], s: Situation, p: PolicySettings) -> str:
    name = _label(chosen.position_pct, s.glare_pct)
    opened = [o for o in allowed if o.position_pct < chosen.position_pct - 0.5]
    closed = [o for o in allowed if o.position_pct > chosen.position_pct + 0.5]
    if opened:
        more_open = opened[-1]
        cooling = more_open.cooling_kwh - chosen.cooling_kwh >= more_open.heating_kwh - chosen.heating_kwh
        why = (f"{name}: saves {more_open.kwh - chosen.kwh:.2f} kWh of {'cooling' if cooling else 'heating'} today "
               f"against {_label(more_open.position_pct, s.glare_pct)}")
    elif chosen.position_pct > 0.5:
        why = f"{name}: keeps direct sun off the work zone"
    else:
        why = "up"
    if closed:
        further = max(chosen.kwh - min(o.kwh for o in closed), 0.0)
        if further < p.min_saving_kwh:
            why += f"; further down would save {further:.2f} kWh, not worth a move"
    elif chosen.position_pct < 0.5:
        why += ": nothing to shade against"
    return why + _of(s)


def default(s: Situation, p: PolicySettings) -> Decision:
    return Decision(None, "auto", "no rule applies: staying")


CHAIN: Sequence[Handler] = (lockout, bas_command, wall_switch, kill_switch, escape_door, night, cooled_room,
                            thermal_automatic, room_forecast)


def rate_limit(d: Decision, s: Situation, p: PolicySettings, rule: str = "") -> str | None:
    """Why an automatic move is held back (a small change, too soon after the last, too many a
    day), or None when it may go. The day's last move is kept for raising, except to protect a
    cooled room from strong sun (twice `protect_above_wm2`): that one is never left to it because
    the forecast's moves spent the day's (it stays down until the next day's first move)."""
    if not d.automatic or d.target_pct is None:
        return None
    if abs(d.target_pct - s.position_pct) < p.min_change_pct:
        return f"within {p.min_change_pct:g} % of the position: already there"
    if s.last_auto_move is not None and s.now - s.last_auto_move < p.min_move_interval:
        return f"next move from {s.hhmm(s.last_auto_move + p.min_move_interval)}"
    if s.auto_moves_today >= p.max_moves_per_day:
        return f"daily cap of {p.max_moves_per_day} moves reached"
    lowering = d.target_pct > s.position_pct
    protecting = rule == "cooled_room" and s.poa_wm2 >= 2 * p.protect_above_wm2
    if s.auto_moves_today >= p.max_moves_per_day - 1 and lowering and not protecting:
        return f"the last of {p.max_moves_per_day} moves a day is kept for raising"
    return None


def decide(s: Situation, p: PolicySettings, chain: Sequence[Handler] = CHAIN) -> Decision:
    trace: list[TraceStep] = []
    for handler in chain:
        outcome = handler(s, p)
        if isinstance(outcome, str):
            trace.append(TraceStep(handler.__name__, "passed", outcome))
            continue
        held = rate_limit(outcome, s, p, handler.__name__)
        if held is None:
            trace.append(TraceStep(handler.__name__, "matched", outcome.reason))
            return replace(outcome, trace=tuple(trace))
        trace.append(TraceStep(handler.__name__, "limited", held))
        reason = outcome.reason if held.endswith("already there") else f"{outcome.reason} ({held})"
        return replace(outcome, target_pct=None, reason=reason, trace=tuple(trace))
    decision = default(s, p)
    return replace(decision, trace=(*trace, TraceStep("default", "matched", decision.reason)))
