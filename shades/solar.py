"""Sun position and façade irradiance with pvlib: pure functions of place and time.

Units are in the names: degrees (`_deg`), W/m² (`_wm2`). Times are tz-aware pandas indexes.
A façade is vertical (tilt 90°) and faces `azimuth_deg` (compass bearing, 90 = east).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pvlib
from pvlib.location import Location

#: Below this elevation the sun is behind the horizon, terrain or neighbouring buildings.
MIN_ELEVATION_DEG = 3.0


@dataclass(frozen=True)
class Facade:
    azimuth_deg: float
    tilt_deg: float = 90.0


def site_location(latitude: float, longitude: float, altitude_m: float, timezone: str) -> Location:
    return Location(latitude, longitude, tz=timezone, altitude=altitude_m)


def sun_position(location: Location, times: pd.DatetimeIndex) -> pd.DataFrame:
    """Columns elevation_deg, azimuth_deg, apparent_zenith_deg (refraction included)."""
    position = location.get_solarposition(times)
    return pd.DataFrame({"elevation_deg": position["apparent_elevation"], "azimuth_deg": position["azimuth"],
                         "apparent_zenith_deg": position["apparent_zenith"]}, index=times)


def angle_of_incidence_deg(facade: Facade, sun: pd.DataFrame) -> pd.Series:
    return pd.Series(pvlib.irradiance.aoi(facade.tilt_deg, facade.azimuth_deg, sun["apparent_zenith_deg"],
                                          sun["azimuth_deg"]), index=sun.index)


def sun_on_facade(facade: Facade, sun: pd.DataFrame, min_elevation_deg: float = MIN_ELEVATION_DEG) -> pd.Series:
    """The sun is in front of the façade (incidence below 90°) and high enough to shine on it."""
    return (angle_of_incidence_deg(facade, sun) < 90) & (sun["elevation_deg"] > min_elevation_deg)


def clear_sky_wm2(location: Location, times: pd.DatetimeIndex) -> pd.DataFrame:
    """Columns ghi, dni, dhi from pvlib's Ineichen clear-sky model."""
    return location.get_clearsky(times)[["ghi", "dni", "dhi"]]


def cloudy_sky_wm2(clear: pd.DataFrame, cloud_fraction: pd.Series, sun: pd.DataFrame) -> pd.DataFrame:
    """Scale clear sky by cloud cover (0.35 + 0.65 x clear fraction) and split it again (Erbs)."""
    cloud = cloud_fraction.reindex(clear.index).interpolate(limit_direction="both").clip(0, 1).fillna(0)
    ghi = clear["ghi"] * (0.35 + 0.65 * (1 - cloud))
    split = pvlib.irradiance.erbs(ghi, sun["apparent_zenith_deg"], clear.index)
    return pd.DataFrame({"ghi": ghi, "dni": split["dni"], "dhi": split["dhi"]}, index=clear.index)


def facade_irradiance_wm2(facade: Facade, sun: pd.DataFrame, sky: pd.DataFrame, part: str = "poa_global"
                          ) -> pd.Series:
    """Plane-of-array irradiance on the façade: total (`poa_global`) or the direct beam (`poa_direct`)."""
    poa = pvlib.irradiance.get_total_irradiance(facade.tilt_deg, facade.azimuth_deg, sun["apparent_zenith_deg"],
                                                sun["azimuth_deg"], sky["dni"], sky["ghi"], sky["dhi"])
    return poa[part].clip(lower=0).fillna(0)


def avoided_gain_kwh(poa_wm2: pd.Series, shaded_fraction: pd.Series, window_area_m2: float, g_value: float,
                     shade_factor_fc: float) -> float:
    """Solar heat kept out by the shade: irradiance x area x g x (1 - Fc) x shaded fraction, in kWh."""
    if len(poa_wm2) < 2:
        return 0.0
    hours = np.diff(poa_wm2.index) / pd.Timedelta(hours=1)
    watts = (poa_wm2 * shaded_fraction.reindex(poa_wm2.index).fillna(0)).to_numpy()[:-1]
    return float(np.sum(watts * hours) * window_area_m2 * g_value * (1 - shade_factor_fc) / 1000)


def profile_angle_deg(facade: Facade, sun: pd.DataFrame) -> pd.Series:
    """The sun's elevation seen in the façade's vertical section (what sets how deep it reaches)."""
    gamma = np.radians(sun["azimuth_deg"] - facade.azimuth_deg)
    tan_profile = np.tan(np.radians(sun["elevation_deg"].clip(lower=0))) / np.cos(gamma).clip(lower=1e-3)
    return pd.Series(np.degrees(np.arctan(tan_profile)), index=sun.index)


def glare_position_pct(profile_deg: pd.Series, window_height_m: float, glare_distance_m: float,
                       step_pct: float = 10.0) -> pd.Series:
    """How far an external blind (lowered from the top) must come down so that direct sun reaches
    no deeper than `glare_distance_m` into the room: a ray entering z metres above the sill lands
    z / tan(profile) from the window. Rounded up to `step_pct` so it moves in a few steps a day."""
    open_m = (glare_distance_m * np.tan(np.radians(profile_deg.clip(0, 89.9)))).clip(upper=window_height_m)
    position = 100.0 * (1 - open_m / window_height_m)
    return (np.ceil(position / step_pct - 1e-9) * step_pct).clip(0, 100)
