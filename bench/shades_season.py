"""The shading judged by the rooms: a summer (June-August) and a winter (December-February) at
TMV23, clear and cloudy, for six strategies side by side, each driving the same room model
(shades.thermal, the 5R1C network of ISO 13790) behind each façade:

- never: the blinds stay up;
- sun rule: esus before the room model: 100 % down from 30 min before the sun reaches the façade
  until it leaves, on days the forecast calls sunny (>= 200 W/m²) when the room is in the upper
  half of its band or the forecast maximum is >= 18 °C; else up, glare control when occupied;
- climate: Home Assistant Adaptive Cover Pro's climate mode: sun in front and the room above its
  comfort temperature (cooling setpoint - 1 K): down; below it (heating setpoint + 0.5 K): up for
  the gain; between: the glare position; sun not in front: up;
- threshold: the conventional rule an outside bench judged esus against: down whenever the façade
  gets more than 150 W/m² with the sun in front, else up;
- esus floor: the policy as shipped for a group whose room model is not validated (shades.policy.CHAIN:
  a cooled room protected, the VDI 3813 thermal automatic);
- esus model: the same chain with the room model taken as validated (the room forecast decides).

Every strategy goes through the same rate limits (15 min between moves, daily cap 4). The rooms
take their state from one day into the next, after a week's warm-up that is not counted.

Weather: the clear run takes a cloudless sky every day; the cloudy run a seeded, persistent cloud
series (Danish: about 60 % mean cover, spells of hours to days), with the day-ahead forecast the
policy sees that series smoothed over six hours with +/-0.25 of error. Outdoor temperature follows
the day's cloud: summer 16.5 °C mean (+/- 2 °C across the season, warmer and with wider swings
when clear), winter 1.5 °C mean (colder when clear). Synthetic but seeded, so every run is the
same and every strategy sees the same weather.

Columns: cooling and heating kWh (the ideal plant holding 21-25 °C), peak cooling kW (hourly),
hours above 26 °C with no cooling (the same blinds, the plant off), daylight hours lost (occupied
daylight hours with the blind more than half down that the sun would not have overheated the room
in: the day replayed with the blind up for that hour needs at most 50 Wh more cooling), automatic
moves per group per day (mean, max).

Usage: .venv/bin/python bench/shades_season.py [--year 2026] [--days N]
"""

from __future__ import annotations

import argparse
import sys
import time as timer
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from esus.settings.config import example_site_path  # noqa: E402
from esus.settings.site import load_site  # noqa: E402
from shades.foresight import room_behind  # noqa: E402
from shades.outlook import facade_day  # noqa: E402
from shades.planner import GroupDay, RoomState, plan_day  # noqa: E402
from shades.policy import CHAIN, Decision, Handler, PolicySettings, Situation, kill_switch, night  # noqa: E402
from shades.solar import Facade, site_location  # noqa: E402
from shades.thermal import ideal_hour, simulate  # noqa: E402
from shades.weather import Weather  # noqa: E402

WARM_UP_DAYS = 7
FREE_RUNNING_LIMIT_C = 26.0
LOST_BELOW_WH = 50.0


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


def temperature_c(cloud: pd.Series, summer: bool) -> pd.Series:
    """Outdoor temperature from the day's mean cloud: clear summer days warm, clear winter days cold."""
    daily = cloud.groupby(cloud.index.floor("D")).transform("mean")
    drift = 2.0 * np.sin(cloud.index.day_of_year.to_numpy() / 3.1)
    if summer:
        mean, amplitude = 16.5 + 3.0 * (0.6 - daily) + drift, 3.0 + 4.0 * (1 - daily)
    else:
        mean, amplitude = 1.5 - 3.0 * (0.6 - daily) + drift, 1.0 + 2.5 * (1 - daily)
    hour = cloud.index.hour.to_numpy() + 1.0   # UTC+1: the day's maximum near 15:00 local
    return mean + amplitude * np.cos(2 * np.pi * (hour - 15) / 24)


def weather(cloud: pd.Series, summer: bool) -> Weather:
    frame = pd.DataFrame({"cloud_fraction": cloud, "temperature_c": temperature_c(cloud, summer), "wind_mps": 4.0,
                          "precipitation_mm": 0.0}, index=cloud.index)
    return Weather("forecast", None, frame)


# -- the strategies: policy chains (each handler returns a decision or why it passed) -------------

def never(s: Situation, p: PolicySettings) -> Decision:
    return Decision(0.0, "auto", "never shaded", automatic=True)


def sun_rule(day: GroupDay) -> Handler:
    occupied = day.frame.index.indexer_between_time(day.config.occupied_from, day.config.occupied_until)
    peak = float(day.frame["poa_wm2"].where(day.frame["on_facade"]).iloc[occupied].max() or 0.0)
    outdoor_max = float(day.frame["temperature_c"].max())
    window = day.window

    def sun_rule(s: Situation, p: PolicySettings) -> Decision:
        upper_half = s.room_c is not None and s.room_c >= (s.heating_c + s.cooling_c) / 2
        cooling = upper_half or outdoor_max >= 18.0
        if (cooling and window is not None and peak >= 200.0
                and window.start - timedelta(minutes=30) <= s.now < window.end):
            return Decision(100.0, "auto", "sun on the façade", automatic=True)
        if not cooling and s.occupied and s.sun_on_facade and s.poa_wm2 >= p.glare_min_wm2:
            return Decision(s.glare_pct, "auto", "glare control", automatic=True)
        return Decision(0.0, "auto", "up", automatic=True)
    return sun_rule


def climate(s: Situation, p: PolicySettings) -> Decision:
    if not s.sun_on_facade or s.room_c is None:
        return Decision(0.0, "auto", "sun not in front", automatic=True)
    if s.room_c >= s.cooling_c - 1.0:
        return Decision(100.0, "auto", "summer: above comfort", automatic=True)
    if s.room_c <= s.heating_c + 0.5:
        return Decision(0.0, "auto", "winter: open for gain", automatic=True)
    return Decision(s.glare_pct, "auto", "glare position", automatic=True)


@dataclass(frozen=True)
class Strategy:
    name: str
    chain: Callable[[GroupDay], Sequence[Handler]]
    foresee: bool = False
    model_validated: bool = False


def threshold(s: Situation, p: PolicySettings) -> Decision:
    down = s.sun_on_facade and s.poa_wm2 > 150.0
    return Decision(100.0 if down else 0.0, "auto", "threshold 150 W/m²", automatic=True)


STRATEGIES = (
    Strategy("never", lambda day: (never,)),
    Strategy("sun rule", lambda day: (kill_switch, night, sun_rule(day))),
    Strategy("climate", lambda day: (kill_switch, night, climate)),
    Strategy("threshold", lambda day: (kill_switch, night, threshold)),
    Strategy("esus floor", lambda day: CHAIN),
    Strategy("esus model", lambda day: CHAIN, foresee=True, model_validated=True),
)


def season(site, location, days: list[date], cloudy: bool, summer: bool) -> dict[str, dict[str, pd.DataFrame]]:
    """Per strategy and group: the room model's hours and the moves of each counted day."""
    tz = site.site.tz
    first = days[0] - timedelta(days=WARM_UP_DAYS)
    span = (days[-1] - first).days + 2
    actual_cloud = cloud_series(first, span) if cloudy else pd.Series(0.0, index=cloud_series(first, span).index)
    truth, forecast = weather(actual_cloud, summer), weather(forecast_of(actual_cloud) if cloudy else actual_cloud,
                                                            summer)
    out: dict[str, dict[str, list]] = {s.name: {g.name: [] for g in site.shades.groups} for s in STRATEGIES}
    for group in site.shades.groups:
        state = {s.name: None for s in STRATEGIES}
        position = {s.name: 0.0 for s in STRATEGIES}
        for i in range((days[-1] - first).days + 1):
            day = first + timedelta(days=i)
            group_day = GroupDay.compute(location, group, site.shades, forecast, day)
            true_frame = facade_day(location, Facade(group.facade_azimuth_deg), truth, day) if cloudy else None
            for strategy in STRATEGIES:
                plan = plan_day(group_day, tz, position[strategy.name], state[strategy.name],
                                chain=strategy.chain(group_day), truth=true_frame, foresee=strategy.foresee,
                                sensor=True, model_validated=strategy.model_validated)
                state[strategy.name], position[strategy.name] = plan.end, plan.steps[-1].position
                if day >= days[0]:
                    out[strategy.name][group.name].append(plan.hours.assign(moves=plan.moves, day=day))
    return {name: {g: pd.concat(frames) for g, frames in groups.items()} for name, groups in out.items()}


def daylight_hours_lost(hours: pd.DataFrame, room, heating_c: float, cooling_c: float) -> int:
    """Occupied daylight hours with the blind more than half down whose sun would not have
    overheated the room: the same day replayed with the blind up for that one hour needs at most
    LOST_BELOW_WH more cooling."""
    lost = 0
    day_end = hours.groupby("day").cumcount(ascending=False).to_numpy()
    outdoor, internal = hours["outdoor_c"].to_numpy(), hours["internal_w"].to_numpy()
    solar, cooling = hours["solar_w"].to_numpy(), hours["cooling_w"].to_numpy()
    down = (hours["occupied"] & hours["daylight"] & (hours["lowered"] > 0.5)).to_numpy()
    for i in np.flatnonzero(down):
        mass, extra_wh = float(hours["mass_start_c"].iloc[i]), 0.0
        for j in range(i, i + day_end[i] + 1):
            gain = float(hours["solar_open_w"].iloc[i]) if j == i else solar[j]
            state, plant_w = ideal_hour(room, mass, outdoor[j], internal[j], gain, heating_c, cooling_c)
            mass, extra_wh = state.mass_end_c, extra_wh + max(-plant_w, 0.0) - cooling[j]
        lost += extra_wh <= LOST_BELOW_WH
    return lost


def judge(hours: pd.DataFrame, group) -> dict[str, float]:
    room = room_behind(group.window_area_m2, group.floor_area_m2)
    free = simulate(room, hours["outdoor_c"], hours["internal_w"].to_numpy(), hours["solar_w"].to_numpy(),
                    mass_start_c=float(hours["mass_start_c"].iloc[0]))
    moves = hours.groupby("day")["moves"].first()
    return {"cooling_kwh": hours["cooling_w"].sum() / 1000, "heating_kwh": hours["heating_w"].sum() / 1000,
            "peak_kw": hours["cooling_w"].max() / 1000, "hot_h": float((free["air_c"] > FREE_RUNNING_LIMIT_C).sum()),
            "lost_h": float(daylight_hours_lost(hours, room, group.heating_setpoint_c, group.cooling_setpoint_c)),
            "moves": float(moves.mean()), "moves_max": float(moves.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--year", type=int, default=2026)
    parser.add_argument("--days", type=int, default=0, help="only the first N days of each season (a quick look)")
    parser.add_argument("--season", choices=("summer", "winter"), help="only this season")
    parser.add_argument("--min-saving", type=float, help="[shades] min_saving_wh_per_m2 instead of the site's")
    args = parser.parse_args()
    site = load_site(example_site_path())
    if args.min_saving is not None:
        site = site.model_copy(update={"shades": site.shades.model_copy(update={"min_saving_wh_per_m2": args.min_saving})})
    location = site_location(site.site.latitude, site.site.longitude, site.site.altitude_m, site.site.timezone)
    rooms = {g.name: room_behind(g.window_area_m2, g.floor_area_m2) for g in site.shades.groups}
    seasons = {"summer": [date(args.year, 6, 1) + timedelta(days=i) for i in range(92)],
               "winter": [date(args.year, 12, 1) + timedelta(days=i) for i in range(90)]}
    print("TMV23 groups: " + ", ".join(f"{g.name} {g.facade_azimuth_deg:g}° ({rooms[g.name].floor_area_m2:.0f} m² "
                                       f"floor, {g.window_area_m2:.1f} m² window)" for g in site.shades.groups))
    header = (f"{'season':<7} {'sky':<6} {'group':<6} {'strategy':<9} {'cool kWh':>9} {'heat kWh':>9} "
              f"{'peak kW':>8} {'>26°C h':>8} {'lost h':>7} {'moves/d':>8} {'max':>4}")
    print(header)
    for label, days in seasons.items():
        if args.season and label != args.season:
            continue
        days = days[:args.days] if args.days else days
        for sky, cloudy in (("clear", False), ("cloudy", True)):
            started = timer.perf_counter()
            result = season(site, location, days, cloudy, summer=label == "summer")
            totals: dict[str, dict[str, float]] = {}
            for group in site.shades.groups:
                for strategy in STRATEGIES:
                    r = judge(result[strategy.name][group.name], group)
                    print(f"{label:<7} {sky:<6} {group.name:<6} {strategy.name:<9} {r['cooling_kwh']:9.1f} "
                          f"{r['heating_kwh']:9.1f} {r['peak_kw']:8.2f} {r['hot_h']:8.0f} {r['lost_h']:7.0f} "
                          f"{r['moves']:8.2f} {r['moves_max']:4.0f}")
                    t = totals.setdefault(strategy.name, dict.fromkeys(r, 0.0))
                    for key in ("cooling_kwh", "heating_kwh", "hot_h", "lost_h"):
                        t[key] += r[key]
                    t["moves_max"] = max(t["moves_max"], r["moves_max"])
            building = {s.name: pd.concat([result[s.name][g.name]["cooling_w"] for g in site.shades.groups], axis=1)
                        .sum(axis=1).max() / 1000 for s in STRATEGIES}
            base = totals["never"]
            for name, t in totals.items():
                versus = (f"  cooling {t['cooling_kwh'] / base['cooling_kwh'] - 1:+.0%}, peak "
                          f"{building[name] / building['never'] - 1:+.0%}" if base["cooling_kwh"] else "")
                print(f"{label:<7} {sky:<6} {'all':<6} {name:<9} {t['cooling_kwh']:9.1f} {t['heating_kwh']:9.1f} "
                      f"{building[name]:8.2f} {t['hot_h']:8.0f} {t['lost_h']:7.0f} {'':>8} {t['moves_max']:4.0f}"
                      f"{versus}")
            print(f"  ({timer.perf_counter() - started:.0f} s)")
    print("goal (summer, against never): esus peak cooling <= -15 %, cooling energy <= -20 %, less cooling than both "
          "rules, fewer daylight hours lost than the sun rule; winter: no more heating than never; <= 4 moves a day")


if __name__ == "__main__":
    main()
