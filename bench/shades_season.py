"""June-August at TMV23: avoided solar gain of the esus policy as a share of the oracle's, and
automatic moves per group per day, with a clear sky and with a cloudy series.

The oracle shades exactly while the sun is on the façade on cooling days, knowing the real sky.
esus plans each day from a forecast: for the clear run the forecast is right; for the cloudy run
the real cloud cover is a seeded, persistent random series (Danish summer: about 60 % mean cover,
whole overcast and clear spells) and the forecast esus sees is that series smoothed over six hours
with an error of +/-0.25 added - a day-ahead forecast, not the truth.

Usage: python bench/shades_season.py [--year 2026]
"""

from __future__ import annotations

import argparse
import statistics
import time as timer
from datetime import date, timedelta

import numpy as np
import pandas as pd

from esus.settings.config import example_site_path
from esus.settings.site import load_site
from shades.planner import GroupDay, oracle_gain_kwh, plan_day
from shades.solar import Facade, clear_sky_wm2, cloudy_sky_wm2, facade_irradiance_wm2, site_location, sun_position
from shades.weather import Weather


def cloud_series(start: date, days: int, seed: int = 23) -> pd.Series:
    """Hourly cloud fraction: an AR(1) process around 0.6, clipped, with spells lasting hours to days."""
    rng = np.random.default_rng(seed)
    n = days * 24 + 48
    x = np.empty(n)
    x[0] = 0.6
    for i in range(1, n):
        x[i] = 0.6 + 0.93 * (x[i - 1] - 0.6) + rng.normal(0, 0.12)
    index = pd.date_range(pd.Timestamp(start, tz="UTC") - pd.Timedelta(hours=24), periods=n, freq="1h")
    return pd.Series(np.clip(x, 0, 1), index=index)


def forecast_of(actual: pd.Series, seed: int = 7) -> pd.Series:
    rng = np.random.default_rng(seed)
    smooth = actual.rolling(6, center=True, min_periods=1).mean()
    return (smooth + rng.uniform(-0.25, 0.25, len(smooth))).clip(0, 1)


def weather_frame(cloud: pd.Series, temperature_c: float) -> pd.DataFrame:
    return pd.DataFrame({"cloud_fraction": cloud, "temperature_c": temperature_c, "wind_mps": 4.0,
                         "precipitation_mm": 0.0}, index=cloud.index)


def run(site, days: list[date], cloudy: bool) -> dict:
    tz = site.site.tz
    location = site_location(site.site.latitude, site.site.longitude, site.site.altitude_m, site.site.timezone)
    actual_cloud = cloud_series(days[0], len(days)) if cloudy else None
    forecast_cloud = forecast_of(actual_cloud) if cloudy else None
    totals = {g.name: [0.0, 0.0] for g in site.shades.groups}
    moves: dict[str, list[int]] = {g.name: [] for g in site.shades.groups}
    for day in days:
        # a summer day's forecast maximum: 16-26 °C (cooling from 18 °C), varying through the season
        temperature = 21 + 5 * np.sin(day.toordinal() / 3.1)
        weather = (Weather("forecast", None, weather_frame(forecast_cloud, temperature)) if cloudy
                   else Weather("forecast", None, weather_frame(pd.Series(0.0, index=cloud_series(day, 1).index),
                                                                temperature)))
        for g in site.shades.groups:
            group_day = GroupDay.compute(location, g, site.shades, weather, day)
            if cloudy:
                times = group_day.frame.index
                sun = sun_position(location, times)
                clear = clear_sky_wm2(location, times)
                real_cloud = Weather("forecast", None, weather_frame(actual_cloud, temperature)).cloud_fraction(times)
                actual = facade_irradiance_wm2(Facade(g.facade_azimuth_deg), sun, cloudy_sky_wm2(clear, real_cloud, sun))
            else:
                actual = group_day.frame["poa_clear_wm2"]
            plan = plan_day(group_day, tz, actual_poa_wm2=actual)
            totals[g.name][0] += plan.avoided_gain_kwh
            totals[g.name][1] += oracle_gain_kwh(group_day, actual, plan.season == "cooling")
            moves[g.name].append(plan.moves)
    return {name: {"esus_kwh": t[0], "oracle_kwh": t[1], "share": t[0] / t[1] if t[1] else float("nan"),
                   "moves_mean": statistics.mean(moves[name]), "moves_max": max(moves[name])}
            for name, t in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--year", type=int, default=2026)
    args = parser.parse_args()
    site = load_site(example_site_path())
    days = [date(args.year, 6, 1) + timedelta(days=i) for i in range(92)]
    print(f"TMV23, {days[0]} to {days[-1]} ({len(days)} days), groups: "
          + ", ".join(f"{g.name} {g.facade_azimuth_deg:g}°" for g in site.shades.groups))
    print(f"{'sky':<7} {'group':<6} {'esus kWh':>9} {'oracle kWh':>11} {'share':>7} {'moves/day':>10} {'max':>4}")
    for label, cloudy in (("clear", False), ("cloudy", True)):
        started = timer.perf_counter()
        result = run(site, days, cloudy)
        for name, r in result.items():
            print(f"{label:<7} {name:<6} {r['esus_kwh']:9.1f} {r['oracle_kwh']:11.1f} {r['share']:7.1%} "
                  f"{r['moves_mean']:10.2f} {r['moves_max']:4d}")
        esus = sum(r["esus_kwh"] for r in result.values())
        oracle = sum(r["oracle_kwh"] for r in result.values())
        print(f"{label:<7} {'all':<6} {esus:9.1f} {oracle:11.1f} {esus / oracle:7.1%}   "
              f"({timer.perf_counter() - started:.1f} s)")
    print("goal: >= 85 % of the oracle, <= 4 automatic moves per group per day")


if __name__ == "__main__":
    main()
