"""Solar geometry at TMV23 against published values, and each façade on a summer and a winter day."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shades.solar import (
    Facade, angle_of_incidence_deg, avoided_gain_kwh, clear_sky_wm2, cloudy_sky_wm2, facade_irradiance_wm2,
    site_location, sun_on_facade, sun_position,
)

AALBORG = site_location(57.015, 9.985, 15, "Europe/Copenhagen")
EAST, SOUTH, WEST = Facade(90), Facade(180), Facade(270)


def day(date: str, step: str = "5min") -> pd.DatetimeIndex:
    return pd.date_range(f"{date} 00:00", f"{date} 23:55", freq=step, tz="Europe/Copenhagen")


@pytest.mark.parametrize(("date", "declination_deg"), [
    ("2026-06-21", 23.44),   # June solstice
    ("2026-12-21", -23.44),  # December solstice
    ("2026-03-20", -0.1),    # March equinox (declination near 0)
])
def test_noon_elevation_matches_the_declination(date: str, declination_deg: float) -> None:
    """Highest elevation = 90 - latitude + declination (published solar declinations), sun due south."""
    sun = sun_position(AALBORG, day(date, "1min"))
    noon = sun["elevation_deg"].idxmax()
    expected = 90 - 57.015 + declination_deg
    assert sun["elevation_deg"].max() == pytest.approx(expected, abs=0.35)  # refraction adds ~0.1-0.3 deg
    assert sun.loc[noon, "azimuth_deg"] == pytest.approx(180, abs=1.0)
    # solar noon at 9.985 E: about 13:20 in summer time, 12:20 in winter (equation of time within 15 min)
    expected_clock = 13.33 if date == "2026-06-21" else 12.33
    assert noon.hour + noon.minute / 60 == pytest.approx(expected_clock, abs=0.25)


def test_summer_sunrise_in_the_north_east() -> None:
    sun = sun_position(AALBORG, day("2026-06-21", "1min"))
    rise = sun.index[(sun["elevation_deg"] > 0).to_numpy().argmax()]
    assert 4.3 < rise.hour + rise.minute / 60 < 4.8  # Aalborg sunrise 21 June: about 04:29 CEST
    # cos(azimuth) = sin(declination) / cos(latitude) = 0.398 / 0.544: 43 deg (41-42 with refraction)
    assert sun.loc[rise, "azimuth_deg"] == pytest.approx(42, abs=2)


def test_angle_of_incidence_on_vertical_facades() -> None:
    sun = sun_position(AALBORG, day("2026-12-21", "1min"))
    noon = sun["elevation_deg"].idxmax()
    assert angle_of_incidence_deg(SOUTH, sun)[noon] == pytest.approx(sun.loc[noon, "elevation_deg"], abs=1)
    assert angle_of_incidence_deg(EAST, sun)[noon] == pytest.approx(90, abs=1)


@pytest.mark.parametrize("date", ["2026-06-21", "2026-12-21"])
def test_each_facade_sees_the_sun_at_its_time_of_day(date: str) -> None:
    times = day(date)
    sun = sun_position(AALBORG, times)
    sky = clear_sky_wm2(AALBORG, times)
    hour = times.hour + times.minute / 60
    on = {name: sun_on_facade(f, sun) for name, f in (("east", EAST), ("south", SOUTH), ("west", WEST))}
    poa = {name: facade_irradiance_wm2(f, sun, sky) for name, f in (("east", EAST), ("south", SOUTH), ("west", WEST))}
    if date == "2026-06-21":
        assert on["east"][hour < 11].any() and not on["east"][hour > 14].any()
        assert on["west"][hour > 16].any() and not on["west"][hour < 12].any()
        assert poa["east"][hour < 11].max() > 500 and poa["west"][hour > 15].max() > 500
    assert on["south"][(hour > 11) & (hour < 14)].all()
    assert (poa["south"] >= 0).all() and np.isfinite(poa["south"]).all()
    assert not any(on[name][sun["elevation_deg"] <= 3].any() for name in on)


def test_low_winter_sun_hits_a_south_facade_harder_than_summer_sun() -> None:
    peak = {}
    for date in ("2026-06-21", "2026-12-21"):
        times = day(date)
        sun = sun_position(AALBORG, times)
        peak[date] = facade_irradiance_wm2(SOUTH, sun, clear_sky_wm2(AALBORG, times)).max()
    assert peak["2026-12-21"] > 400 and peak["2026-06-21"] > 350


def test_clouds_scale_and_resplit_the_sky() -> None:
    times = day("2026-06-21")
    sun = sun_position(AALBORG, times)
    clear = clear_sky_wm2(AALBORG, times)
    overcast = cloudy_sky_wm2(clear, pd.Series(1.0, index=times), sun)
    assert overcast["ghi"].max() == pytest.approx(0.35 * clear["ghi"].max(), rel=1e-6)
    assert overcast["dni"].max() < 0.5 * clear["dni"].max()
    hourly_cloud = pd.Series([0.0, 1.0], index=[times[0], times[-1]])  # interpolated in between
    assert cloudy_sky_wm2(clear, hourly_cloud, sun)["ghi"].notna().all()


def test_avoided_gain_follows_the_formula() -> None:
    times = pd.date_range("2026-06-21 10:00", periods=3, freq="1h", tz="UTC")
    poa = pd.Series([500.0, 500.0, 0.0], index=times)
    shaded = pd.Series([1.0, 0.5, 1.0], index=times)
    # 500 W/m2 x 1 h x 1.0 + 500 x 1 h x 0.5 = 750 Wh/m2; x 10 m2 x g 0.6 x (1 - 0.15) = 3.825 kWh
    assert avoided_gain_kwh(poa, shaded, 10.0, 0.6, 0.15) == pytest.approx(3.825)


@pytest.mark.parametrize("place", [AALBORG, site_location(-33.9, 18.4, 20, "Africa/Johannesburg"),
                                   site_location(1.3, 103.8, 15, "Asia/Singapore")])
def test_the_transposition_is_pvlibs_own(place) -> None:
    """aoi, the Erbs split and the isotropic sky, in numpy so that the service need not import pvlib,
    against pvlib over a whole year, every 20 minutes, on four façades and a tilted roof window."""
    import pvlib

    times = pd.date_range("2026-01-01", "2027-01-01", freq="20min", tz=str(place.tz), inclusive="left")
    sun, clear = sun_position(place, times), clear_sky_wm2(place, times)
    cloud = pd.Series(np.random.default_rng(0).uniform(0, 1, len(times)), index=times)
    sky = cloudy_sky_wm2(clear, cloud, sun)
    split = pvlib.irradiance.erbs(sky["ghi"], sun["apparent_zenith_deg"], times)
    assert np.abs(sky["dni"] - split["dni"]).max() < 1e-9 and np.abs(sky["dhi"] - split["dhi"]).max() < 1e-9
    for facade in (EAST, SOUTH, WEST, Facade(0), Facade(200, tilt_deg=35)):
        aoi = pvlib.irradiance.aoi(facade.tilt_deg, facade.azimuth_deg, sun["apparent_zenith_deg"], sun["azimuth_deg"])
        assert np.abs(angle_of_incidence_deg(facade, sun) - aoi).max() < 1e-9
        poa = pvlib.irradiance.get_total_irradiance(facade.tilt_deg, facade.azimuth_deg, sun["apparent_zenith_deg"],
                                                    sun["azimuth_deg"], sky["dni"], sky["ghi"], sky["dhi"])
        for part in ("poa_global", "poa_direct"):
            ours = facade_irradiance_wm2(facade, sun, sky, part)
            assert np.abs(ours - poa[part].clip(lower=0).fillna(0)).max() < 1e-9, (facade, part)
            assert ours.max() > 100   # the comparison saw the sun
