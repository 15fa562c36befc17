"""A façade's day ahead: when the sun is on it and how strong, from pvlib and the weather.

Computed once per façade per day (and again when the forecast changes), at `STEP` resolution,
so the policy that runs every minute only looks values up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
from pvlib.location import Location

from shades.solar import (
    Facade,
    angle_of_incidence_deg,
    clear_sky_wm2,
    cloudy_sky_wm2,
    facade_irradiance_wm2,
    profile_angle_deg,
    sun_on_facade,
    sun_position,
)
from shades.weather import Weather

STEP = timedelta(minutes=5)


def day_index(day: date, tz: ZoneInfo, step: timedelta = STEP) -> pd.DatetimeIndex:
    """Local times of one calendar day (23 or 25 hours on DST days), every `step`."""
    start = pd.Timestamp(datetime.combine(day, time(0), tzinfo=tz))
    end = pd.Timestamp(datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz))
    return pd.date_range(start, end, freq=step, inclusive="left")


def facade_day(location: Location, facade: Facade, weather: Weather, day: date) -> pd.DataFrame:
    """Columns elevation_deg, azimuth_deg, aoi_deg, profile_deg, on_facade, poa_clear_wm2, poa_wm2
    (the forecast: clear sky scaled by cloud cover), cloud_fraction, temperature_c."""
    times = day_index(day, ZoneInfo(str(location.tz)))
    sun = sun_position(location, times)
    clear = clear_sky_wm2(location, times)
    cloud = weather.cloud_fraction(times)
    frame = sun[["elevation_deg", "azimuth_deg"]].copy()
    frame["aoi_deg"] = angle_of_incidence_deg(facade, sun)
    frame["profile_deg"] = profile_angle_deg(facade, sun)
    frame["on_facade"] = sun_on_facade(facade, sun)
    frame["poa_clear_wm2"] = facade_irradiance_wm2(facade, sun, clear)
    frame["poa_wm2"] = facade_irradiance_wm2(facade, sun, cloudy_sky_wm2(clear, cloud, sun))
    frame["cloud_fraction"] = cloud
    frame["temperature_c"] = weather.temperature_c(times)
    return frame


@dataclass(frozen=True)
class SunWindow:
    """The sun on the façade today: first and last moment, and the forecast peak in the daytime hours."""

    start: datetime
    end: datetime
    peak_wm2: float


def sun_window(frame: pd.DataFrame, day_hours: tuple[time, time]) -> SunWindow | None:
    """When the sun is on the façade; the peak counts only `day_hours` (local), when it matters."""
    on = frame[frame["on_facade"]]
    if on.empty:
        return None
    local = on.index.time
    during = on[(local >= day_hours[0]) & (local < day_hours[1])]
    peak = float(during["poa_wm2"].max()) if not during.empty else 0.0
    return SunWindow(on.index[0].to_pydatetime(), (on.index[-1] + STEP).to_pydatetime(), peak)


def is_shading_day(window: SunWindow | None, measured_wm2: float | None, on_wm2: float, off_wm2: float,
                previous: bool) -> tuple[bool, str]:
    """Is today a day to shade pre-emptively? Hysteresis: it turns on at `on_wm2` and off only
    below `off_wm2`, so a forecast that wobbles around the threshold does not move the blinds."""
    if window is None:
        return False, "the sun does not reach the façade today"
    peak = window.peak_wm2
    if measured_wm2 is not None and measured_wm2 >= on_wm2:
        return True, f"measured {measured_wm2:.0f} W/m² >= {on_wm2:.0f}"
    if peak >= on_wm2:
        return True, f"forecast peak {peak:.0f} W/m² >= {on_wm2:.0f}"
    if previous and peak >= off_wm2:
        return True, f"forecast peak {peak:.0f} W/m² not yet below {off_wm2:.0f}"
    return False, f"forecast peak {peak:.0f} W/m² below {on_wm2 if not previous else off_wm2:.0f}"
