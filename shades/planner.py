"""From a group's day outlook to policy situations, and the day's plan (`esus shades plan`).

`GroupDay` holds one façade's precomputed day and its rooms' hourly outlook; `situation()` adds
what happens at run time (lockout, BAS, hold, rooms) and gives the policy its input, with what
each position would cost the rooms today. `plan_day()` runs the policy over the day with
nothing overriding it and the room model standing in for the rooms: what the plan and the season
benchmark show.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, NamedTuple, Protocol
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from shades.foresight import UNOCCUPIED_GAIN_SHARE, Option, RoomDay, options, room_behind
from shades.greybox import GreyBox
from shades.outlook import STEP, SunWindow, facade_day, sun_window
from shades.policy import CHAIN, VIEW_KEPT_PCT, Decision, Handler, PolicySettings, Situation, TraceStep, decide
from shades.solar import Facade, avoided_gain_kwh, glare_position_pct
from shades.sun import Place
from shades.thermal import RoomModel, RoomState, transmitted_solar_w
from shades.weather import Weather

#: The glare position keeps the sun off the work zone this far ahead, so it moves seldom.
GLARE_AHEAD = timedelta(hours=2)
#: A room reading: name, air temperature, heating and cooling setpoints (°C; None = unknown).
RoomReading = tuple[str, float | None, float | None, float | None]


class GroupConfig(Protocol):
    """What the planner needs of a shade group (esus.settings.site.ShadeGroup has it; read-only)."""

    @property
    def number(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def facade_azimuth_deg(self) -> float: ...
    @property
    def window_height_m(self) -> float: ...
    @property
    def window_area_m2(self) -> float: ...
    @property
    def g_value(self) -> float: ...
    @property
    def shade_factor_fc(self) -> float: ...
    @property
    def floor_area_m2(self) -> float | None: ...
    @property
    def heating_setpoint_c(self) -> float: ...
    @property
    def cooling_setpoint_c(self) -> float: ...
    @property
    def internal_gains_w_m2(self) -> float: ...


class ShadeConfig(Protocol):
    """The building-wide shading settings (esus.settings.site.ShadeSettings has them)."""

    occupied_from: time
    occupied_until: time
    occupied_weekdays: list[int]
    glare_distance_m: float
    glare_min_wm2: float
    protect_above_wm2: float
    release_below_wm2: float
    heating_season_below_c: float
    night_position_pct: float
    min_move_interval_minutes: float
    min_change_pct: float
    max_moves_per_day: int
    min_saving_wh_per_m2: float


def policy_settings(config: ShadeConfig, group: GroupConfig) -> PolicySettings:
    floor = room_behind(group.window_area_m2, group.floor_area_m2).floor_area_m2
    return PolicySettings(night_position_pct=config.night_position_pct, glare_min_wm2=config.glare_min_wm2,
                          protect_above_wm2=config.protect_above_wm2, release_below_wm2=config.release_below_wm2,
                          heating_season_below_c=config.heating_season_below_c,
                          min_move_interval=timedelta(minutes=config.min_move_interval_minutes),
                          min_change_pct=config.min_change_pct, max_moves_per_day=config.max_moves_per_day,
                          min_saving_kwh=config.min_saving_wh_per_m2 * floor / 1000)


def normal_outdoor_c(day: date, latitude: float) -> float:
    """A stand-in for the day's outdoor temperature when no forecast has one: a temperate
    climate's normal, 1 °C in mid-winter to 17 °C in mid-summer (northern Europe)."""
    summer_phase = math.cos(2 * math.pi * (day.timetuple().tm_yday - 200) / 365.25)
    return 9.0 + 8.0 * summer_phase * (1 if latitude >= 0 else -1)


class Speaker(NamedTuple):
    label: str
    air_c: float
    heating_c: float
    cooling_c: float
    measured: bool


def speaking_room(rooms: Sequence[RoomReading], group: GroupConfig) -> Speaker:
    """The room that speaks for the group (its label, air temperature, setpoints): the
    warmest in its band between the setpoints, the first to need cooling. The group's own
    setpoints fill in what the BMS does not give; an unknown temperature is taken as the middle."""
    known = []
    for name, temp, heat, cool in rooms:
        heat = heat if heat is not None else group.heating_setpoint_c
        cool = cool if cool is not None else group.cooling_setpoint_c
        if temp is not None and cool > heat:
            known.append((name, temp, heat, cool))
    if known:
        name, temp, heat, cool = max(known, key=lambda r: (r[1] - r[2]) / (r[3] - r[2]))
        return Speaker(f"room {name} {temp:.1f} °C, band {heat:g}-{cool:g} °C", temp, heat, cool, True)
    heat, cool = group.heating_setpoint_c, group.cooling_setpoint_c
    middle = (heat + cool) / 2
    return Speaker(f"room temperature unknown: taken as {middle:.1f} °C", middle, heat, cool, False)


def _hourly(frame: pd.DataFrame, column: str, how: str) -> pd.Series:
    """`column` over each hour of the day (hours started in UTC, so a DST day has 23 or 25)."""
    utc_hours = frame.index.tz_convert("UTC").floor("h")
    return frame[column].groupby(utc_hours).agg(how)


def room_day_of(frame: pd.DataFrame, group: GroupConfig, config: ShadeConfig, day: date,
                latitude: float, learnt: GreyBox | None = None) -> RoomDay:
    """The group's rooms over the day: the room learnt from the building where there is one, else
    the site file's (shades.foresight.room_behind)."""
    room = room_behind(group.window_area_m2, group.floor_area_m2)
    poa = _hourly(frame, "poa_wm2", "mean")
    hours = poa.index.tz_convert(frame.index.tz)
    outdoor = _hourly(frame, "temperature_c", "mean").interpolate(limit_direction="both")
    outdoor = outdoor.fillna(normal_outdoor_c(day, latitude))
    occupied = np.array([occupied_at(config, t.to_pydatetime()) for t in hours])
    gains_w = group.internal_gains_w_m2 * room.floor_area_m2
    occupied_w, unoccupied_w = ((learnt.occupied_gain_w, learnt.unoccupied_gain_w) if learnt is not None
                                else (gains_w, UNOCCUPIED_GAIN_SHARE * gains_w))
    return RoomDay(learnt if learnt is not None else room, hours, outdoor.to_numpy(float), poa.to_numpy(float),
                   _hourly(frame, "on_facade", "any").to_numpy(bool), np.where(occupied, occupied_w, unoccupied_w),
                   group.g_value, group.shade_factor_fc, group.window_area_m2)


def occupied_at(config: ShadeConfig, local: datetime) -> bool:
    return (local.isoweekday() in config.occupied_weekdays
            and config.occupied_from <= local.time() < config.occupied_until)


@dataclass
class GroupDay:
    """One group's façade and rooms over one local day, for one weather forecast."""

    group: GroupConfig
    config: ShadeConfig
    day: date
    frame: pd.DataFrame
    window: SunWindow | None
    glare_pct: pd.Series
    rooms: RoomDay
    weather_source: str
    weather_fetched_at: datetime | None

    @classmethod
    def compute(cls, location: Place, group: GroupConfig, config: ShadeConfig, weather: Weather,
                day: date, learnt: GreyBox | None = None) -> GroupDay:
        frame = facade_day(location, Facade(group.facade_azimuth_deg), weather, day)
        glare = glare_position_pct(frame["profile_deg"], group.window_height_m, config.glare_distance_m)
        glare = glare.where(frame["on_facade"], 0.0)
        ahead = glare.iloc[::-1].rolling(int(GLARE_AHEAD / STEP), min_periods=1).max().iloc[::-1]
        return cls(group, config, day, frame, sun_window(frame), ahead,
                   room_day_of(frame, group, config, day, location.latitude, learnt), weather.source,
                   weather.fetched_at)

    def __post_init__(self) -> None:
        #: the day's highest outdoor temperature: the forecast's, else the season's normal
        self.outdoor_max_c = float(np.nanmax(self.rooms.outdoor_c))
        self._epoch_s = self.frame.index.astype("datetime64[s, UTC]").asi8
        self._rows = self.frame.assign(glare_pct=self.glare_pct).to_dict("records")
        self._options: dict[tuple, tuple[Option, ...]] = {}

    def row(self, now: datetime) -> dict[str, Any]:
        """The outlook at `now` (the step it falls in), as a dict of the frame's columns and glare_pct."""
        position = int(np.searchsorted(self._epoch_s, now.timestamp(), side="right")) - 1
        return self._rows[min(max(position, 0), len(self._rows) - 1)]

    def options(self, now: datetime, air_c: float, positions: tuple[float, ...], heating_c: float,
                cooling_c: float, poa_now_wm2: float | None) -> tuple[Option, ...]:
        """foresight.options, kept for the quarter hour: the policy runs every 30 s."""
        measured = None if poa_now_wm2 is None else round(poa_now_wm2 / 25) * 25.0
        key = (int(now.timestamp() // 900), round(air_c, 1), tuple(sorted({round(p) for p in positions})),
               heating_c, cooling_c, measured)
        if key not in self._options:
            self._options[key] = options(self.rooms, now, round(air_c, 1), positions, heating_c, cooling_c,
                                         measured)
        return self._options[key]

    def situation(self, now: datetime, tz: ZoneInfo, position_pct: float, *, rooms: Sequence[RoomReading] = (),
                  measured_wm2: float | None = None, foresee: bool = True, **runtime: Any) -> Situation:
        row = self.row(now)
        on_facade, sun_up = bool(row["on_facade"]), bool(row["elevation_deg"] > 0)
        poa, direct = float(row["poa_wm2"]), float(row["direct_wm2"])
        if measured_wm2 is not None and on_facade:   # the façade's sensor: what is left past the sky's diffuse light
            poa, direct = measured_wm2, max(measured_wm2 - (poa - direct), 0.0)
        room = speaking_room(rooms, self.group)
        glare = float(row["glare_pct"])
        # the room forecast's costs, only for a room model that decides (else the thermal automatic does)
        positions = (0.0, glare, VIEW_KEPT_PCT, 100.0, position_pct)
        found = (self.options(now, room.air_c, positions, room.heating_c, room.cooling_c, measured_wm2)
                 if foresee and sun_up and runtime.get("room_model_validated", False) else ())
        return Situation(now=now, tz=tz, position_pct=position_pct, sun_up=sun_up, sun_on_facade=on_facade,
                         occupied=occupied_at(self.config, now.astimezone(tz)), poa_wm2=poa, direct_wm2=direct,
                         glare_pct=glare,
                         room=room.label, room_c=room.air_c if room.measured else None, heating_c=room.heating_c,
                         cooling_c=room.cooling_c, options=found, outdoor_max_c=self.outdoor_max_c, **runtime)


@dataclass
class PlanStep:
    time: datetime
    position: float
    mode: str
    reason: str
    sun_on_facade: bool
    poa_wm2: float
    room_c: float
    moved: bool = False
    trace: tuple[TraceStep, ...] = ()


#: A plan's hours: the room's air at the hour's end, the plant, the solar gain transmitted (and what
#: an open window would have let in), the inputs, the mean share of the window covered, whether
#: people are in and the sun up, and the mass temperature the hour started from.
HOUR_COLUMNS = ("air_c", "heating_w", "cooling_w", "solar_w", "solar_open_w", "outdoor_c", "internal_w", "lowered",
                "occupied", "daylight", "mass_start_c")


@dataclass(frozen=True)
class Building:
    """The rooms that are really there over a day, hour by hour: their model, internal gains (W),
    and the setpoints their plant holds (±inf where it is off)."""

    room: RoomModel
    internal_w: np.ndarray
    heating_c: np.ndarray
    cooling_c: np.ndarray


@dataclass
class GroupPlan:
    group: str
    facade_azimuth: float
    steps: list[PlanStep] = field(default_factory=list)
    moves: int = 0
    avoided_gain_kwh: float = 0.0
    sun: SunWindow | None = None      # the one account of when the sun is on the façade (policy and report)
    #: the room model hour by hour (HOUR_COLUMNS)
    hours: pd.DataFrame = field(default_factory=pd.DataFrame)
    end: RoomState | None = None

    @property
    def heating_kwh(self) -> float:
        return float(self.hours["heating_w"].sum()) / 1000 if not self.hours.empty else 0.0

    @property
    def cooling_kwh(self) -> float:
        return float(self.hours["cooling_w"].sum()) / 1000 if not self.hours.empty else 0.0


def plan_day(group_day: GroupDay, tz: ZoneInfo, start_position_pct: float = 0.0, start: RoomState | None = None,
             *, chain: Sequence[Handler] = CHAIN, truth: pd.DataFrame | None = None, foresee: bool = True,
             sensor: bool = False, model_validated: bool = False, building: Building | None = None) -> GroupPlan:
    """The policy over the day, undisturbed, with the room model as the rooms: where the group
    would be at every step, why, and what it did to the rooms hour by hour.

    The policy reads the room as a BMS would, the air temperature at the end of the last hour.
    `truth` (a facade_day frame of what really happened: poa_wm2, temperature_c) drives the room
    and scores the avoided gain; by default the forecast is taken as what happened. With `sensor`
    the policy reads the truth's façade irradiance as a sensor on the façade would. With
    `model_validated` the room forecast decides (its room model taken as validated), else the VDI
    3813 thermal automatic, as for a group whose room model is not (yet) validated. `building` is
    the room that really is there, by default the one the look ahead takes."""
    g, config, rooms = group_day.group, group_day.config, group_day.rooms
    p = policy_settings(config, g)
    truth = group_day.frame if truth is None else truth
    true_poa = truth["poa_wm2"].to_numpy(float)
    true_outdoor = _hourly(truth, "temperature_c", "mean").interpolate(limit_direction="both").to_numpy(float)
    true_outdoor = np.where(np.isnan(true_outdoor), rooms.outdoor_c, true_outdoor)
    heat, cool = g.heating_setpoint_c, g.cooling_setpoint_c
    if building is None:
        building = Building(rooms.room, rooms.internal_w, np.full(len(rooms.hours), heat),
                            np.full(len(rooms.hours), cool))
    state = start if start is not None else building.room.at_rest((heat + cool) / 2)
    plan = GroupPlan(g.name, g.facade_azimuth_deg, sun=group_day.window)
    step_hour = np.searchsorted(rooms.hours.as_unit("ns").asi8, group_day.frame.index.as_unit("ns").asi8,
                                side="right") - 1
    sun_up = group_day.frame["elevation_deg"].to_numpy() > 0
    position, last_move, moves = start_position_pct, None, 0
    positions, hourly = np.empty(len(step_hour)), []
    for h in range(len(rooms.hours)):
        steps = np.flatnonzero(step_hour == h)
        solar_w = 0.0
        for k in steps:
            now = group_day.frame.index[k].to_pydatetime()
            s = group_day.situation(now, tz, position, rooms=(("model", state.air_c, heat, cool),), foresee=foresee,
                                    measured_wm2=float(true_poa[k]) if sensor else None,
                                    last_auto_move=last_move, auto_moves_today=moves,
                                    room_model_validated=model_validated)
            decision: Decision = decide(s, p, chain)
            target = decision.target_pct
            moved = target is not None and abs(target - position) >= 0.5
            if target is not None and moved:
                position, last_move, moves = float(target), now, moves + 1
            positions[k] = position
            solar_w += float(transmitted_solar_w(true_poa[k], g.window_area_m2, g.g_value, position / 100,
                                                 g.shade_factor_fc)) / len(steps)
            plan.steps.append(PlanStep(now, position, decision.mode, decision.reason, s.sun_on_facade, s.poa_wm2,
                                       round(state.air_c, 2), moved, decision.trace))
        mass_start_c = state.mass_c
        state, plant_w = building.room.step(state, true_outdoor[h], building.internal_w[h], solar_w,
                                            building.heating_c[h], building.cooling_c[h])
        open_w = float(transmitted_solar_w(true_poa[steps].mean(), g.window_area_m2, g.g_value)) if len(steps) else 0.0
        hourly.append((state.air_c, max(plant_w, 0.0), max(-plant_w, 0.0), solar_w, open_w, true_outdoor[h],
                       building.internal_w[h], float(positions[steps].mean()) / 100 if len(steps) else 0.0,
                       occupied_at(config, rooms.hours[h].to_pydatetime()),
                       bool(sun_up[steps].any()), mass_start_c))
    plan.moves, plan.end = moves, state
    plan.hours = pd.DataFrame(hourly, index=rooms.hours, columns=list(HOUR_COLUMNS))
    shaded = pd.Series(positions, index=group_day.frame.index) / 100.0
    plan.avoided_gain_kwh = avoided_gain_kwh(_closed(truth["poa_wm2"], group_day.frame.index), shaded,
                                             g.window_area_m2, g.g_value, g.shade_factor_fc)
    return plan


def _closed(series: pd.Series, index: pd.DatetimeIndex) -> pd.Series:
    """The series on the day's steps plus the closing step, so the last interval is counted."""
    closing = index[-1] + STEP
    return series.reindex(index.append(pd.DatetimeIndex([closing]))).fillna(0.0)


def plan_json(plans: list[GroupPlan], day: date, weather_source: str, every: timedelta = timedelta(minutes=15)
              ) -> dict:
    """The SPEC's JSON: the timeline every `every` and at every move."""
    groups = {}
    for plan in plans:
        timeline = []
        for step in plan.steps:
            on_grid = (step.time.minute * 60 + step.time.second) % int(every.total_seconds()) == 0
            if on_grid or step.moved:
                timeline.append({"time": step.time.isoformat(), "position": round(step.position, 1),
                                 "mode": step.mode, "reason": step.reason, "sun_on_facade": step.sun_on_facade,
                                 "poa_wm2": round(step.poa_wm2, 1), "room_c": step.room_c, "moved": step.moved,
                                 "trace": [{"rule": t.rule, "outcome": t.outcome, "why": t.why} for t in step.trace]})
        groups[plan.group] = {"facade_azimuth": plan.facade_azimuth, "moves": plan.moves,
                              "avoided_gain_kwh": round(plan.avoided_gain_kwh, 3),
                              "cooling_kwh": round(plan.cooling_kwh, 3), "heating_kwh": round(plan.heating_kwh, 3),
                              "timeline": timeline}
    return {"date": day.isoformat(), "weather": weather_source, "groups": groups}
