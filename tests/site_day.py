"""One simulated day of a site's InfluxDB lines, built by esus's telemetry module (`line`), for
the dashboard tests and the portfolio bench.

Every measurement and every field of the schema appears, at the cadence the service writes them:
power at each BAS write and each minute tick, the forecast at the end of the interval it forecasts,
the BMS points every 5 minutes, shades, sun and health each minute, a demand response event in the
afternoon, a training two hours in. Power is the open-dsm building's real meter, scaled per site; the
sun is pvlib's for the example site's façades; the BMS points and shade groups are the example
site file's."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from esus.demo import MeterReplay
from esus.settings.site import load_site
from esus.state.telemetry import INTERVAL, SCHEMA, line
from shades.solar import Facade, facade_irradiance_wm2, site_location, sun_position
from tests.line_protocol import parse

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SITE = load_site(ROOT / "site.example.toml")
TZ = ZoneInfo(EXAMPLE_SITE.site.timezone)
#: The demand response event: minutes after the start of the simulated day.
EVENT_MINUTES = (14 * 60, 16 * 60)
ACTIONS = ("ahu-1-fan", "chiller-1-limit")


_REPLAY: MeterReplay | None = None


def meter() -> MeterReplay:
    global _REPLAY
    if _REPLAY is None:
        _REPLAY = MeterReplay(TZ)
    return _REPLAY


def power_kw(start: datetime, count: int, scale: float) -> np.ndarray:
    """The meter's minutes from `start` (and an hour more, for the forecast), scaled."""
    return np.array([meter().kw_at(start + timedelta(minutes=m)) * scale for m in range(count + 60)])


def site_day(site: str, start: datetime, scale: float = 1.0, count: int = 24 * 60,
             locked_group: str | None = None) -> list[str]:
    """All lines of one site for `count` minutes from `start` (tz-aware), its power the open-dsm
    building's times `scale`; `locked_group` is held in wind lockout for the whole time."""
    kw = power_kw(start, count, scale)
    minutes = [start + timedelta(minutes=m) for m in range(count)]
    out: list[str | None] = []
    info = EXAMPLE_SITE.site
    location = site_location(info.latitude, info.longitude, info.altitude_m, info.timezone)
    times = pd.DatetimeIndex(minutes)
    sun = sun_position(location, times)
    sky = location.clear_sky(times)
    groups = EXAMPLE_SITE.shades.groups
    poa = {g.name: facade_irradiance_wm2(Facade(g.facade_azimuth_deg), sun, sky).to_numpy() for g in groups}
    means = pd.Series(kw).rolling(15, min_periods=1).mean().to_numpy()
    limit_kw = float(means[:count].max())
    high_kw, low_kw = float(np.percentile(means, 90)), float(np.percentile(means, 30))
    event_start, event_end = (start + timedelta(minutes=m) for m in EVENT_MINUTES)
    gain = dict.fromkeys(poa, 0.0)
    moves = dict.fromkeys(poa, 0)
    in_events = np.array([event_start <= at < event_end for at in minutes])
    sheds = np.where(in_events, 0.15 * means[:count], 0.0)
    for i, at in enumerate(minutes):
        in_event, shed = bool(in_events[i]), float(sheds[i])
        out.append(line("power", {"input_kw": kw[i] - shed}, at + timedelta(seconds=30), None, site))
        ahead = means[i + 60]
        if at.timestamp() % INTERVAL.total_seconds() == 0:
            out += interval_lines(site, at, kw[max(i - 15, 0):i] - sheds[max(i - 15, 0):i], ahead,
                                  in_events[max(i - 15, 0):i], sheds[max(i - 15, 0):i])
        out.append(line("power", {
            "mean_15min_kw": means[i] - shed, "rate_kw_per_min": (means[i] - means[max(i - 15, 0)]) / 15,
            "forecast_kw": ahead, "forecast_upper_kw": ahead * 1.12,
            "forecast_temperature_c": 12 + 6 * math.sin((i / 1440 - 0.375) * 2 * math.pi),
            "high_load": means[i] > high_kw, "low_load": means[i] < low_kw,
            "high_threshold_kw": high_kw, "low_threshold_kw": low_kw, "stale": False}, at, None, site))
        out.append(line("forecast", {"kw": ahead, "upper_kw": ahead * 1.12}, at + timedelta(hours=1), None, site))
        out.append(line("health", {"outbox_depth": 0, "outbox_dropped": 0, "outbox_dead": 0, "bms_errors": 0,
                                   "bacnet_writes": i + 1, "tick_lag_s": 0.02, "rss_mb": 180 + i % 7}, at, None,
                        site))
        for g in groups:
            locked = g.name == locked_group
            down = poa[g.name][i] > 250 and not locked
            if i and down != (poa[g.name][i - 1] > 250):
                moves[g.name] += 1
            gain[g.name] += poa[g.name][i] * g.window_area_m2 * g.g_value * (1 - g.shade_factor_fc) * down / 60000
            out.append(line("shades", {
                "position_pct": 100.0 if down else 0.0, "target_pct": 100.0 if down else 0.0, "relay_up": False,
                "relay_down": False, "mode_code": 4 if locked else 1, "hold": False, "lockout": locked,
                "moves_today": moves[g.name],
                "reason": "sun on the façade" if down else "no sun on the façade"}, at, {"group": g.name}, site))
            out.append(line("solar", {
                "elevation_deg": sun["elevation_deg"].iloc[i], "azimuth_deg": sun["azimuth_deg"].iloc[i],
                "aoi_deg": 45.0, "poa_wm2": poa[g.name][i], "poa_forecast_wm2": poa[g.name][i] * 0.9,
                "avoided_gain_kwh": gain[g.name]}, at, {"facade": g.name}, site))
        baseline = means[i] if in_event else None
        out.append(line("demand_response", {
            "event_active": in_event, "signal_level": 2 if in_event else 0,
            "seconds_to_end": (event_end - at).total_seconds() if in_event else 0, "overrides_shed": 2 * in_event,
            "overrides_failing": 0, "overrides_lost": 0, "report_kw": kw[i] - shed, "baseline_kw": baseline,
            "standard_baseline_kw": baseline * 1.05 if baseline else None,
            "measured_kw": means[i] - shed if in_event else None, "shed_kw": shed if in_event else None},
            at, None, site))
        limiting = int(means[i] > 0.9 * limit_kw)
        out.append(line("demand_limit", {
            "level": limiting, "target_kw": limit_kw, "peak_kw": limit_kw * 0.98, "floor_kw": limit_kw * 0.9,
            "upper_kw": means[i] * 1.05, "margin_kw": 0.05 * kw[i], "headroom_kw": limit_kw - kw[i] * 1.1,
            "used_min": i // 60, "acting": True,
            "reason": "level 1: this interval's bound would pass the target" if limiting else "normal"}, at, None, site))
        for action in ACTIONS:
            out.append(line("dr_override", {"shed": in_event, "pending": False, "failing": False, "lost_count": 0,
                                            "outranked_by": 0, "state": "held" if in_event else "released",
                                            "reason": "event" if in_event else "no event"}, at, {"action": action},
                            site))
        if i % 5 == 0:
            for n, point in enumerate(EXAMPLE_SITE.bms.points):
                out.append(line("bms", {"value": bms_value(point.kind, i, n)}, at,
                                {"point": point.point_id, "room": point.room, "kind": point.kind,
                                 "unit": point.unit}, site))
        if i == 90:   # the night's room fits: two validated, the north one not (too few days)
            for number, g in enumerate(EXAMPLE_SITE.shades.groups):
                fit = {"validated": number < 2, "training_days": 21 if number < 2 else 9,
                       "held_out_days": 7 if number < 2 else 0, "reason": "validated" if number < 2 else "9 days"}
                if number < 2:
                    fit |= {"rmse_k": 0.12 + 0.05 * number, "worst_k": 0.4, "ua_air_w_k": 40.0, "ua_mass_w_k": 400.0,
                            "ua_wall_w_k": 15.0, "c_air_kj_k": 300.0, "c_mass_kj_k": 5000.0,
                            "mass_time_constant_h": 3.3, "solar_factor": 1.4, "solar_to_mass": 0.8,
                            "occupied_gain_w": 450.0, "unoccupied_gain_w": 90.0, "wall_s": 3.1}
                out.append(line("shade_room", fit, at, {"group": g.name}, site))
        if i == 120:
            out.append(line("model", {"rmse_kw": 0.21 * scale, "persistence_rmse_kw": 0.35 * scale, "cpu_s": 41.0,
                                      "wall_s": 55.0, "rows": 50_000, "accepted": True}, at, None, site))
    return [text for text in out if text]


def interval_lines(site: str, end: datetime, measured_kw: np.ndarray, forecast_kw: float, in_event: np.ndarray,
                   shed_kw: np.ndarray) -> list[str | None]:
    """The interval ending at `end` as the forecasting and demand parts log it (the minutes before
    it), and the forecast made at its end for the interval an hour later."""
    return [line("interval_15min", {"mean_kw": measured_kw.mean() if measured_kw.size >= 8 else None}, end, None, site),
            line("interval_15min", {"forecast_kw": forecast_kw, "forecast_upper_kw": forecast_kw * 1.12},
                 end + timedelta(hours=1), None, site),
            line("interval_15min", {"event_active": bool(in_event.any()),
                                    "shed_kw": shed_kw[in_event].mean() if in_event.any() else None}, end, None, site)]


def bms_value(kind: str, minute: int, n: int) -> float:
    daily = math.sin((minute / 1440 - 0.375) * 2 * math.pi)
    return {"temperature": 21.5 + 1.5 * daily + 0.1 * n, "setpoint_heating": 20.0, "setpoint_cooling": 24.0,
            "co2": 450 + 350 * max(daily, 0), "irradiance": max(0.0, 600 * daily), "wind_speed": 4 + 2 * daily,
            "outdoor_temperature": 12 + 6 * daily}.get(kind, 1.0)


def covered_names(lines: list[str]) -> dict[str, set[str]]:
    """Which fields of which measurements the lines carry (to check the day covers the schema)."""
    seen: dict[str, set[str]] = {name: set() for name in SCHEMA}
    for text in lines:
        measurement, _, fields = parse(text)
        seen[measurement].update(fields)
    return seen
