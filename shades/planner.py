"""From a group's day outlook to policy situations, and the day's plan (`esus shades plan`).

`GroupDay` holds one façade's precomputed day; `situation()` adds what happens at run time
(lockout, BAS, hold, rooms) and gives the policy its input. `plan_day()` runs the same policy over
the day with nothing overriding it, which is what the plan and the season benchmark show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from pvlib.location import Location

from shades.outlook import STEP, SunWindow, facade_day, is_shading_day, sun_window
from shades.policy import Decision, PolicySettings, Situation, TraceStep, choose_season, decide
from shades.solar import Facade, avoided_gain_kwh, glare_position_pct
from shades.weather import Weather


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


class ShadeConfig(Protocol):
    """The building-wide shading settings (esus.settings.site.ShadeSettings has them)."""

    occupied_from: time
    occupied_until: time
    occupied_weekdays: list[int]
    sunny_on_wm2: float
    sunny_off_wm2: float
    lead_minutes: float
    cooling_outdoor_max_c: float
    comfort_margin_k: float
    glare_distance_m: float
    glare_min_wm2: float
    night_position_pct: float
    min_move_interval_minutes: float
    min_change_pct: float
    max_moves_per_day: int


def policy_settings(config: ShadeConfig) -> PolicySettings:
    return PolicySettings(night_position_pct=config.night_position_pct, glare_min_wm2=config.glare_min_wm2,
                          min_move_interval=timedelta(minutes=config.min_move_interval_minutes),
                          min_change_pct=config.min_change_pct, max_moves_per_day=config.max_moves_per_day,
                          lead=timedelta(minutes=config.lead_minutes))


@dataclass
class GroupDay:
    """One group's façade over one local day, for one weather forecast."""

    group: GroupConfig
    config: ShadeConfig
    day: date
    frame: pd.DataFrame
    window: SunWindow | None
    glare_pct: pd.Series
    weather_source: str
    weather_fetched_at: datetime | None
    outdoor_max_c: float | None

    @classmethod
    def compute(cls, location: Location, group: GroupConfig, config: ShadeConfig, weather: Weather,
                day: date) -> GroupDay:
        frame = facade_day(location, Facade(group.facade_azimuth_deg), weather, day)
        window = sun_window(frame, (config.occupied_from, config.occupied_until))
        glare = glare_position_pct(frame["profile_deg"], group.window_height_m, config.glare_distance_m)
        glare = glare.where(frame["on_facade"], 0.0)
        temps = frame["temperature_c"].dropna()
        return cls(group, config, day, frame, window, glare, weather.source, weather.fetched_at,
                   float(temps.max()) if not temps.empty else None)

    def __post_init__(self) -> None:
        self._epoch_s = self.frame.index.astype("datetime64[s, UTC]").asi8
        self._rows = self.frame.assign(glare_pct=self.glare_pct).to_dict("records")

    def row(self, now: datetime) -> dict[str, Any]:
        """The outlook at `now` (the step it falls in), as a dict of the frame's columns and glare_pct."""
        position = int(np.searchsorted(self._epoch_s, now.timestamp(), side="right")) - 1
        return self._rows[min(max(position, 0), len(self._rows) - 1)]

    def occupied(self, now: datetime, tz: ZoneInfo) -> bool:
        local = now.astimezone(tz)
        return (local.isoweekday() in self.config.occupied_weekdays
                and self.config.occupied_from <= local.time() < self.config.occupied_until)

    def situation(self, now: datetime, tz: ZoneInfo, position_pct: float, *, season: str, season_reason: str,
                  shading: bool, shading_reason: str, measured_wm2: float | None = None,
                  **runtime: Any) -> Situation:
        row = self.row(now)
        poa = measured_wm2 if measured_wm2 is not None and bool(row["on_facade"]) else float(row["poa_wm2"])
        window = self.window
        return Situation(now=now, tz=tz, position_pct=position_pct, season=season, season_reason=season_reason,
                         sun_up=bool(row["elevation_deg"] > 0), sun_on_facade=bool(row["on_facade"]),
                         sun_start=window.start if window else None, sun_end=window.end if window else None,
                         shading_day=shading, shading_reason=shading_reason, occupied=self.occupied(now, tz),
                         poa_wm2=poa, glare_pct=float(row["glare_pct"]), **runtime)


@dataclass
class PlanStep:
    time: datetime
    position: float
    mode: str
    reason: str
    sun_on_facade: bool
    poa_wm2: float
    moved: bool = False
    trace: tuple[TraceStep, ...] = ()


@dataclass
class GroupPlan:
    group: str
    facade_azimuth: float
    steps: list[PlanStep] = field(default_factory=list)
    moves: int = 0
    avoided_gain_kwh: float = 0.0
    season: str = ""
    season_reason: str = ""
    shading_reason: str = ""
    sun: SunWindow | None = None      # the one account of when the sun is on the façade (policy and report)


def plan_day(group_day: GroupDay, tz: ZoneInfo, start_position_pct: float = 0.0,
             rooms: tuple = (), previous_season: str | None = None,
             actual_poa_wm2: pd.Series | None = None) -> GroupPlan:
    """The policy over the day, undisturbed: where the group would be at every step, and why.

    `actual_poa_wm2` (what really fell on the façade) scores the avoided gain; by default the
    forecast is taken as what happened."""
    config, day = group_day.config, group_day.day
    p = policy_settings(config)
    season, season_reason = choose_season(rooms, group_day.outdoor_max_c, day.month, config.cooling_outdoor_max_c,
                                          config.comfort_margin_k, previous_season)
    shading, shading_reason = is_shading_day(group_day.window, None, config.sunny_on_wm2, config.sunny_off_wm2, False)
    plan = GroupPlan(group_day.group.name, group_day.group.facade_azimuth_deg, season=season,
                     season_reason=season_reason, shading_reason=shading_reason, sun=group_day.window)
    position, last_move, moves = start_position_pct, None, 0
    positions = []
    for stamp in group_day.frame.index:
        now = stamp.to_pydatetime()
        s = group_day.situation(now, tz, position, season=season, season_reason=season_reason, shading=shading,
                                shading_reason=shading_reason, last_auto_move=last_move, auto_moves_today=moves)
        decision: Decision = decide(s, p)
        target = decision.target_pct
        moved = target is not None and abs(target - position) >= 0.5
        if target is not None and moved:
            position, last_move, moves = float(target), now, moves + 1
        positions.append(position)
        plan.steps.append(PlanStep(now, position, decision.mode, decision.reason, s.sun_on_facade, s.poa_wm2, moved,
                                   decision.trace))
    plan.moves = moves
    poa = actual_poa_wm2 if actual_poa_wm2 is not None else group_day.frame["poa_wm2"]
    shaded = pd.Series(positions, index=group_day.frame.index) / 100.0
    g = group_day.group
    plan.avoided_gain_kwh = avoided_gain_kwh(_closed(poa, group_day.frame.index), shaded, g.window_area_m2,
                                             g.g_value, g.shade_factor_fc)
    return plan


def _closed(series: pd.Series, index: pd.DatetimeIndex) -> pd.Series:
    """The series on the day's steps plus the closing step, so the last interval is counted."""
    closing = index[-1] + STEP
    return series.reindex(index.append(pd.DatetimeIndex([closing]))).fillna(0.0)


def oracle_gain_kwh(group_day: GroupDay, actual_poa_wm2: pd.Series, cooling: bool) -> float:
    """What a clairvoyant shade would keep out: down exactly while the sun is on the façade, in cooling."""
    if not cooling:
        return 0.0
    g = group_day.group
    shaded = group_day.frame["on_facade"].astype(float)
    return avoided_gain_kwh(_closed(actual_poa_wm2, group_day.frame.index), shaded, g.window_area_m2,
                            g.g_value, g.shade_factor_fc)


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
                                 "poa_wm2": round(step.poa_wm2, 1), "moved": step.moved,
                                 "trace": [{"rule": t.rule, "outcome": t.outcome, "why": t.why} for t in step.trace]})
        groups[plan.group] = {"facade_azimuth": plan.facade_azimuth, "moves": plan.moves,
                              "avoided_gain_kwh": round(plan.avoided_gain_kwh, 3), "season": plan.season,
                              "season_reason": plan.season_reason, "timeline": timeline}
    return {"date": day.isoformat(), "weather": weather_source, "groups": groups}
