"""The policy's look ahead: what the rest of the day does to a group's rooms for each position the
blind could take now, from the room model (shades.thermal) and the day's forecast.

A candidate position is held for the coming hour; after it the blind is taken to follow the
better of two plain rules, a protective one (down while the sun is on the façade and the unshaded
room would pass the middle of its band between the setpoints) and a gain-taking one (down only
where it would pass the cooling setpoint), so a candidate is judged by what choosing it now costs,
not by a perfect future. (The gain-taking rule alone made the morning's sun look free in summer:
its heat, stored in the mass, came back as cooling in the afternoon. The protective rule alone
made a cool winter room look better shaded in the morning, so as not to need shading later.)
The cost is the ideal plant's heating plus cooling energy (kWh, thermal) until the next morning.
This is what lets a cool room take the morning sun for a while, and what says how early the
blind must come down on a hot day: when waiting one more hour costs more than it is worth.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from shades.thermal import Room, RoomModel, transmitted_solar_w

#: The defaults where the site file says nothing of the rooms behind a façade: floor per m² of
#: window (a 5 m deep office with a 40 % glazed façade) and opaque wall per m² of window.
FLOOR_PER_WINDOW = 6.0
WALL_PER_WINDOW = 1.5
#: Outdoor air through the rooms, per hour: ventilation with heat recovery plus infiltration, as
#: the outdoor air it is equivalent to.
AIR_CHANGES_PER_H = 1.0
#: Internal gains outside the occupied hours, as a share of the occupied ones (standby, servers).
UNOCCUPIED_GAIN_SHARE = 0.1


def room_behind(window_area_m2: float, floor_area_m2: float | None = None) -> Room:
    """The rooms behind one shade group's windows as one zone of the 5R1C model."""
    floor = floor_area_m2 if floor_area_m2 is not None else FLOOR_PER_WINDOW * window_area_m2
    return Room(floor_area_m2=floor, window_area_m2=window_area_m2, wall_area_m2=WALL_PER_WINDOW * window_area_m2,
                air_changes_per_h=AIR_CHANGES_PER_H)


@dataclass(frozen=True)
class RoomDay:
    """A group's rooms over one local day, one entry per hour (its start in `hours`)."""

    room: RoomModel
    hours: pd.DatetimeIndex
    outdoor_c: np.ndarray        # the forecast; where it has none, a stand-in (see planner)
    poa_wm2: np.ndarray          # mean façade irradiance over the hour, forecast
    sun_on_facade: np.ndarray    # bool: the sun is on the façade for part of the hour
    internal_w: np.ndarray
    g_value: float
    shade_factor_fc: float
    window_area_m2: float

    def hour_at(self, now: datetime) -> int:
        position = int(np.searchsorted(self.hours.as_unit("ns").asi8, pd.Timestamp(now).value, side="right")) - 1
        return min(max(position, 0), len(self.hours) - 1)

    def solar_w(self, i: int, position_pct: float, poa_wm2: float | None = None) -> float:
        poa = self.poa_wm2[i] if poa_wm2 is None else poa_wm2
        return float(transmitted_solar_w(poa, self.window_area_m2, self.g_value, position_pct / 100.0,
                                         self.shade_factor_fc))


@dataclass(frozen=True)
class Option:
    """A position held for the coming hour, and the rest of the day's heating and cooling with it."""

    position_pct: float
    heating_kwh: float
    cooling_kwh: float

    @property
    def kwh(self) -> float:
        return self.heating_kwh + self.cooling_kwh


#: The look ahead runs past midnight until this hour of the next morning.
NIGHT_AFTER_H = 7


def rest_of_day(day: RoomDay, start: int, air_c: float, position_pct: float, heating_c: float,
                cooling_c: float, poa_now_wm2: float | None = None) -> Option:
    """`position_pct` for hour `start`, then the better of two simple futures: a protective one
    (down while the sun is on the façade and the unshaded room would pass the middle of its band)
    and a gain-taking one (down only where it would pass the cooling setpoint). From a room at
    `air_c`, its mass taken at the same temperature (a room at rest). `poa_now_wm2` (measured)
    replaces the forecast for the first hour and corrects the next ones (`corrected_poa_wm2`)."""
    futures = (_rest_of_day(day, start, air_c, position_pct, heating_c, cooling_c, poa_now_wm2, threshold_c)
               for threshold_c in ((heating_c + cooling_c) / 2, cooling_c))
    return min(futures, key=lambda option: option.kwh)


#: The façade sensor corrects the forecast's next hours too, fading out over this many hours: a
#: forecast that misses the sun now (a cloud it did not see, haze) misses the coming hours alike.
SENSOR_CORRECTS_H = 3
#: Below this the sensor and the forecast are too dim to take a ratio of (W/m²).
SENSOR_MIN_WM2 = 50.0


def corrected_poa_wm2(day: RoomDay, start: int, poa_now_wm2: float | None) -> np.ndarray:
    """The forecast's façade irradiance with the sensor's truth: the hour now as measured, the next
    SENSOR_CORRECTS_H hours scaled by measured / forecast (within 1/4 to 4 times), fading."""
    poa = day.poa_wm2.astype(float).copy()
    if poa_now_wm2 is None:
        return poa
    forecast_now = float(poa[start])
    poa[start] = poa_now_wm2
    if forecast_now < SENSOR_MIN_WM2 and poa_now_wm2 < SENSOR_MIN_WM2:
        return poa
    ratio = float(np.clip(max(poa_now_wm2, 1.0) / max(forecast_now, 1.0), 0.25, 4.0))
    for k in range(1, SENSOR_CORRECTS_H + 1):
        if start + k < len(poa):
            poa[start + k] *= 1 + (ratio - 1) * (1 - k / (SENSOR_CORRECTS_H + 1))
    return poa


def _rest_of_day(day: RoomDay, start: int, air_c: float, position_pct: float, heating_c: float,
                 cooling_c: float, poa_now_wm2: float | None, lower_above_c: float) -> Option:
    room = day.room
    state = room.at_rest(air_c)
    poa = corrected_poa_wm2(day, start, poa_now_wm2)
    heating_wh = cooling_wh = 0.0
    # on past midnight: heat kept out in the afternoon is heat the night's heating must then supply
    # (the night taken as this day's early hours)
    for i in [*range(start, len(day.hours)), *range(min(NIGHT_AFTER_H, start))]:
        outdoor, internal = float(day.outdoor_c[i]), float(day.internal_w[i])
        if i == start:
            solar = day.solar_w(i, position_pct, poa[i])
        else:
            solar = day.solar_w(i, 0.0, poa[i])
            if day.sun_on_facade[i] and room.step(state, outdoor, internal, solar)[0].air_c > lower_above_c:
                solar = day.solar_w(i, 100.0, poa[i])
        state, plant_w = room.step(state, outdoor, internal, solar, heating_c, cooling_c)
        heating_wh, cooling_wh = heating_wh + max(plant_w, 0.0), cooling_wh + max(-plant_w, 0.0)
    return Option(position_pct, heating_wh / 1000, cooling_wh / 1000)


def options(day: RoomDay, now: datetime, air_c: float, positions: tuple[float, ...], heating_c: float,
            cooling_c: float, poa_now_wm2: float | None = None) -> tuple[Option, ...]:
    """Each of `positions` (distinct, rounded to 1 %, most open first) judged by `rest_of_day`.

    Keeping sun out never lowers the heating a room needs nor raises its cooling; where the two
    rough futures say otherwise (a warmer room now tips the protective one into shading the
    afternoon's gain), that is their doing, not the position's, and is evened out."""
    start = day.hour_at(now)
    distinct = sorted({round(p) for p in positions})
    judged = [rest_of_day(day, start, air_c, float(p), heating_c, cooling_c, poa_now_wm2) for p in distinct]
    for i in range(1, len(judged)):
        more_open, this = judged[i - 1], judged[i]
        judged[i] = Option(this.position_pct, max(this.heating_kwh, more_open.heating_kwh),
                           min(this.cooling_kwh, more_open.cooling_kwh))
    return tuple(judged)
