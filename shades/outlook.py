"""A façade's day ahead: when the sun is on it and how strong, from pvlib and the weather.

Computed once per façade per day (and again when the forecast changes), at `STEP` resolution,
so the policy that runs every minute only looks values up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

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
from shades.sun import Place
from shades.weather import Weather

STEP = timedelta(minutes=5)


def day_index(day: date, tz: ZoneInfo, step: timedelta = STEP) -> pd.DatetimeIndex:
    """Local times of one calendar day (23 or 25 hours on DST days), every `step`."""
    start = pd.Timestamp(datetime.combine(day, time(0), tzinfo=tz))
    end = pd.Timestamp(datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz))
    return pd.date_range(start, end, freq=step, inclusive="left")


def facade_day(location: Place, facade: Facade, weather: Weather, day: date) -> pd.DataFrame:
    """Columns elevation_deg, azimuth_deg, aoi_deg, profile_deg, on_facade, poa_clear_wm2, poa_wm2
    (the forecast's irradiance transposed onto the façade) and its direct beam direct_wm2,
    cloud_fraction, temperature_c, and irradiance_forecast (True where the forecast gave the sun's
    irradiance; elsewhere clear sky scaled by its cloud cover, or clear sky where it has none)."""
    times = day_index(day, ZoneInfo(str(location.tz)))
    sun = sun_position(location, times)
    clear = clear_sky_wm2(location, times)
    cloud = weather.cloud_fraction(times)
    frame = sun[["elevation_deg", "azimuth_deg"]].copy()
    frame["aoi_deg"] = angle_of_incidence_deg(facade, sun)
    frame["profile_deg"] = profile_angle_deg(facade, sun)
    frame["on_facade"] = sun_on_facade(facade, sun)
    frame["poa_clear_wm2"] = facade_irradiance_wm2(facade, sun, clear)
    sky = cloudy_sky_wm2(clear, cloud, sun)
    forecast = weather.irradiance_wm2(times)
    given = forecast.notna().all(axis=1) & (sun["elevation_deg"] > 0)
    sky.loc[given, ["ghi", "dni", "dhi"]] = forecast.loc[given, ["ghi", "dni", "dhi"]].to_numpy()
    frame["irradiance_forecast"] = given
    frame["poa_wm2"] = facade_irradiance_wm2(facade, sun, sky)
    frame["direct_wm2"] = facade_irradiance_wm2(facade, sun, sky, "poa_direct")
    frame["cloud_fraction"] = cloud
    frame["temperature_c"] = weather.temperature_c(times)
    return frame


@dataclass(frozen=True)
class SunWindow:
    """The sun on the façade today: its first moment and the end of its last step."""

    start: datetime
    end: datetime


def sun_window(frame: pd.DataFrame) -> SunWindow | None:
    on = frame.index[frame["on_facade"].to_numpy(bool)]
    if on.empty:
        return None
    return SunWindow(on[0].to_pydatetime(), (on[-1] + STEP).to_pydatetime())
