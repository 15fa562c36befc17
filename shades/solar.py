"""Sun position and façade irradiance: pure functions of place and time.

The sun's position and the clear sky are pvlib's (NREL SPA, Ineichen with the Linke turbidity).
Their transposition onto a façade is pvlib's too, written out here in numpy (the angle of
incidence, the Erbs split, the isotropic sky), because importing any of pvlib costs the service
60 MB (SciPy and h5py come with it); tests/test_solar.py holds them equal to pvlib's own.

Units are in the names: degrees (`_deg`), W/m² (`_wm2`). Times are tz-aware pandas indexes.
A façade is vertical (tilt 90°) and faces `azimuth_deg` (compass bearing, 90 = east).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shades.sun import Place

#: Below this elevation the sun is behind the horizon, terrain or neighbouring buildings.
MIN_ELEVATION_DEG = 3.0


@dataclass(frozen=True)
class Facade:
    azimuth_deg: float
    tilt_deg: float = 90.0


def site_location(latitude: float, longitude: float, altitude_m: float, timezone: str,
                  sun_table: Path | None = None) -> Place:
    """The place, and the sun over it from the table at `sun_table` where it has one (see shades.sun)."""
    return Place(latitude, longitude, altitude_m, timezone, sun_table)


def sun_position(location: Place, times: pd.DatetimeIndex) -> pd.DataFrame:
    """Columns elevation_deg, azimuth_deg, apparent_zenith_deg (refraction included)."""
    return location.position(times)


#: pvlib's defaults, which the transposition below keeps: the solar constant (Spencer's extra-
#: terrestrial radiation), Erbs's limits, and the ground's albedo for the isotropic sky
SOLAR_CONSTANT_WM2 = 1366.1
ERBS_MIN_COS_ZENITH = 0.065
ERBS_MAX_ZENITH_DEG = 87.0
ALBEDO = 0.25


def aoi_deg(tilt_deg: float, azimuth_deg: float, zenith_deg: np.ndarray, sun_azimuth_deg: np.ndarray) -> np.ndarray:
    """The angle between the sun's rays and the surface's normal (pvlib.irradiance.aoi)."""
    tilt, zenith = np.radians(tilt_deg), np.radians(zenith_deg)
    projection = (np.cos(zenith) * np.cos(tilt)
                  + np.sin(zenith) * np.sin(tilt) * np.cos(np.radians(sun_azimuth_deg - azimuth_deg)))
    return np.degrees(np.arccos(np.clip(projection, -1.0, 1.0)))


def extra_radiation_wm2(day_of_year: np.ndarray) -> np.ndarray:
    """Irradiance at the top of the atmosphere, normal to the sun (Spencer 1971, as pvlib's default)."""
    b = 2 * np.pi * (np.asarray(day_of_year, dtype=float) - 1) / 365
    return SOLAR_CONSTANT_WM2 * (1.00011 + 0.034221 * np.cos(b) + 0.00128 * np.sin(b) + 0.000719 * np.cos(2 * b)
                                 + 0.000077 * np.sin(2 * b))


def utc_day_of_year(times: pd.DatetimeIndex) -> np.ndarray:
    """The day of the year in UTC, as pvlib counts it for the extraterrestrial radiation."""
    return np.asarray((times.tz_convert("UTC") if times.tz is not None else times).day_of_year)


def erbs_split_wm2(ghi_wm2: np.ndarray, zenith_deg: np.ndarray, day_of_year: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Direct normal and diffuse horizontal from the global horizontal (Erbs 1982, pvlib.irradiance.erbs)."""
    ghi, zenith = np.asarray(ghi_wm2, dtype=float), np.asarray(zenith_deg, dtype=float)
    horizontal_extra = extra_radiation_wm2(day_of_year) * np.maximum(np.cos(np.radians(zenith)), ERBS_MIN_COS_ZENITH)
    kt = np.clip(ghi / horizontal_extra, 0.0, 1.0)   # the clearness index
    diffuse_share = np.where(kt <= 0.22, 1 - 0.09 * kt,
                             np.where(kt <= 0.8, 0.9511 - 0.1604 * kt + 4.388 * kt**2 - 16.638 * kt**3 + 12.336 * kt**4,
                                      0.165))
    dhi = diffuse_share * ghi
    with np.errstate(divide="ignore", invalid="ignore"):
        dni = (ghi - dhi) / np.cos(np.radians(zenith))
    bad = (zenith > ERBS_MAX_ZENITH_DEG) | (ghi < 0) | (dni < 0)
    return np.where(bad, 0.0, dni), np.where(bad, ghi, dhi)


def angle_of_incidence_deg(facade: Facade, sun: pd.DataFrame) -> pd.Series:
    return pd.Series(aoi_deg(facade.tilt_deg, facade.azimuth_deg, sun["apparent_zenith_deg"].to_numpy(),
                             sun["azimuth_deg"].to_numpy()), index=sun.index)


def sun_on_facade(facade: Facade, sun: pd.DataFrame, min_elevation_deg: float = MIN_ELEVATION_DEG) -> pd.Series:
    """The sun is in front of the façade (incidence below 90°) and high enough to shine on it."""
    return (angle_of_incidence_deg(facade, sun) < 90) & (sun["elevation_deg"] > min_elevation_deg)


def clear_sky_wm2(location: Place, times: pd.DatetimeIndex) -> pd.DataFrame:
    """Columns ghi, dni, dhi from pvlib's Ineichen clear-sky model."""
    return location.clear_sky(times)


def cloudy_sky_wm2(clear: pd.DataFrame, cloud_fraction: pd.Series, sun: pd.DataFrame) -> pd.DataFrame:
    """Scale clear sky by cloud cover (0.35 + 0.65 x clear fraction) and split it again (Erbs)."""
    cloud = cloud_fraction.reindex(clear.index).interpolate(limit_direction="both").clip(0, 1).fillna(0)
    ghi = clear["ghi"] * (0.35 + 0.65 * (1 - cloud))
    dni, dhi = erbs_split_wm2(ghi.to_numpy(), sun["apparent_zenith_deg"].reindex(clear.index).to_numpy(),
                              utc_day_of_year(clear.index))
    return pd.DataFrame({"ghi": ghi, "dni": dni, "dhi": dhi}, index=clear.index)


def facade_irradiance_wm2(facade: Facade, sun: pd.DataFrame, sky: pd.DataFrame, part: str = "poa_global"
                          ) -> pd.Series:
    """Plane-of-array irradiance on the façade: total (`poa_global`) or the direct beam (`poa_direct`),
    the sky isotropic (pvlib.irradiance.get_total_irradiance's default)."""
    cos_tilt, sky = np.cos(np.radians(facade.tilt_deg)), sky.reindex(sun.index)
    aoi = angle_of_incidence_deg(facade, sun).to_numpy()
    direct = np.maximum(sky["dni"].to_numpy() * np.cos(np.radians(aoi)), 0.0)
    if part == "poa_direct":
        poa = direct
    elif part == "poa_global":
        poa = direct + sky["dhi"].to_numpy() * (1 + cos_tilt) / 2 + sky["ghi"].to_numpy() * ALBEDO * (1 - cos_tilt) / 2
    else:
        raise ValueError(f"part is poa_global or poa_direct, not {part!r}")
    return pd.Series(poa, index=sun.index).clip(lower=0).fillna(0)


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
