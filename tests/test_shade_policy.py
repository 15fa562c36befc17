"""The policy: a summer and a winter day for each façade, the priority chain, the rate limits,
glare geometry and the season choice."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from shades.planner import GroupDay, plan_day, plan_json
from shades.policy import COOLING, HEATING, PolicySettings, Situation, choose_season, decide
from shades.solar import glare_position_pct
from shades.weather import Weather, clear_sky
from tests.shade_harness import LOCATION, SHADES, TZ

GROUP = {g.name: g for g in SHADES.groups}
SUMMER, WINTER = date(2026, 6, 22), date(2026, 12, 21)   # both Mondays


def local(day: date, hhmm: str) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return datetime(day.year, day.month, day.day, h, m, tzinfo=TZ)


def moves(plan) -> list[tuple[datetime, float]]:
    return [(s.time, s.position) for s in plan.steps if s.moved]


@pytest.mark.parametrize("name", ["east", "south", "west"])
def test_summer_day_lowers_before_the_sun_arrives_and_raises_after_it_leaves(name: str) -> None:
    day = GroupDay.compute(LOCATION, GROUP[name], SHADES, clear_sky(), SUMMER)
    plan = plan_day(day, TZ)
    assert plan.season == COOLING
    (down_at, down), (up_at, up) = moves(plan)
    assert (down, up) == (100.0, 0.0)
    assert down_at <= day.window.start - timedelta(minutes=SHADES.lead_minutes) + timedelta(minutes=5)
    assert down_at < day.window.start <= day.window.end <= up_at
    # every step with the sun on the façade is shaded: the plan keeps out the whole avoidable gain
    assert all(s.position == 100 for s in plan.steps if s.sun_on_facade)
    assert plan.moves == 2 and plan.avoided_gain_kwh > 10


def test_summer_facades_follow_the_sun_round_the_building() -> None:
    starts = {n: GroupDay.compute(LOCATION, GROUP[n], SHADES, clear_sky(), SUMMER).window.start
              for n in GROUP}
    assert starts["east"] < starts["south"] < starts["west"]
    assert local(SUMMER, "04:30") < starts["east"] < local(SUMMER, "06:00")


@pytest.mark.parametrize("name", ["east", "south", "west"])
def test_winter_day_keeps_the_blinds_up_for_solar_gain_except_glare(name: str) -> None:
    plan = plan_day(GroupDay.compute(LOCATION, GROUP[name], SHADES, clear_sky(), WINTER), TZ)
    assert plan.season == HEATING
    for step in plan.steps:
        if step.position > 0:  # only glare control, only when occupied and the sun is in front
            assert "glare" in step.reason and step.sun_on_facade
            assert SHADES.occupied_from <= step.time.astimezone(TZ).time() < SHADES.occupied_until
    assert plan.moves <= 4
    if name != "south":   # the low winter sun barely touches east and west: nothing to do
        assert plan.moves == 0


def test_a_cloudy_forecast_day_is_not_shaded() -> None:
    times = pd.date_range(local(SUMMER, "00:00"), periods=30, freq="1h").tz_convert("UTC")
    overcast = Weather("forecast", local(SUMMER, "00:00"), pd.DataFrame(
        {"cloud_fraction": 1.0, "temperature_c": 24.0, "wind_mps": 3.0, "precipitation_mm": 0.0}, index=times))
    plan = plan_day(GroupDay.compute(LOCATION, GROUP["south"], SHADES, overcast, SUMMER), TZ)
    assert plan.season == COOLING and "forecast maximum 24.0" in plan.season_reason
    assert plan.moves == 0 and "no sunny forecast" in plan.steps[150].reason


def test_plan_json_has_the_spec_shape_and_an_entry_every_15_minutes() -> None:
    plans = [plan_day(GroupDay.compute(LOCATION, g, SHADES, clear_sky(), SUMMER), TZ) for g in SHADES.groups]
    doc = plan_json(plans, SUMMER, "clear-sky")
    assert doc["date"] == "2026-06-22" and doc["weather"] == "clear-sky"
    for name, group in doc["groups"].items():
        assert {"facade_azimuth", "moves", "avoided_gain_kwh", "timeline"} <= set(group)
        times = [datetime.fromisoformat(e["time"]) for e in group["timeline"]]
        assert all(t.utcoffset() == timedelta(hours=2) for t in times)
        assert max(b - a for a, b in zip(times, times[1:])) <= timedelta(minutes=15)
        entry = group["timeline"][0]
        assert set(entry) >= {"time", "position", "mode", "reason", "sun_on_facade", "poa_wm2"}
        assert sum(e["moved"] for e in group["timeline"]) == group["moves"]


# -- the chain -------------------------------------------------------------------------------------

BASE = Situation(now=local(SUMMER, "10:00"), tz=TZ, position_pct=0.0, season=COOLING, sun_up=True,
                 sun_on_facade=True, sun_start=local(SUMMER, "08:30"), sun_end=local(SUMMER, "18:20"),
                 shading_day=True, shading_reason="forecast peak 640 W/m²", occupied=True, poa_wm2=600)
P = PolicySettings()


def test_automation_shades_a_sunny_cooling_day() -> None:
    d = decide(BASE, P)
    assert (d.target_pct, d.mode, d.automatic) == (100.0, "auto", True)
    assert "cooling" in d.reason and "08:30-18:20" in d.reason


def test_priority_wind_then_bas_then_hold_then_kill_switch() -> None:
    everything = replace(BASE, lockout="wind", lockout_reason="wind 14.0 m/s >= 12 m/s", bas_command_pct=60,
                         hold_until=BASE.now + timedelta(hours=1), automation_enabled=False)
    assert decide(everything, P).mode == "wind" and decide(everything, P).target_pct == 0
    assert decide(replace(everything, lockout="frost"), P).mode == "frost"
    no_wind = replace(everything, lockout=None)
    assert (decide(no_wind, P).mode, decide(no_wind, P).target_pct) == ("bas", 60)
    no_bas = replace(no_wind, bas_command_pct=None)
    held = decide(no_bas, P)
    assert (held.mode, held.target_pct) == ("manual", None) and "held until 11:00" in held.reason
    expired = replace(no_bas, hold_until=BASE.now)
    assert decide(expired, P).mode == "disabled" and decide(expired, P).target_pct is None
    assert decide(replace(expired, automation_enabled=True), P).mode == "auto"


def test_the_kill_switch_stops_automation_but_not_safety() -> None:
    off = replace(BASE, automation_enabled=False, position_pct=100)
    assert decide(off, P).target_pct is None
    assert decide(replace(off, lockout="wind", lockout_reason="x"), P).target_pct == 0


def test_rate_limits_apply_to_automation_only() -> None:
    soon = replace(BASE, last_auto_move=BASE.now - timedelta(minutes=10))
    d = decide(soon, P)
    assert d.target_pct is None and "next move from 10:05" in d.reason
    assert decide(replace(soon, bas_command_pct=30), P).target_pct == 30          # the BAS is not limited
    assert decide(replace(BASE, position_pct=97), P).target_pct is None            # < 5 % change
    capped = decide(replace(BASE, auto_moves_today=P.max_moves_per_day), P)
    assert capped.target_pct is None and "daily cap" in capped.reason
    assert decide(replace(BASE, last_auto_move=BASE.now - timedelta(minutes=15)), P).target_pct == 100


def test_night_position_and_raising_after_the_sun_has_left() -> None:
    evening = replace(BASE, now=local(SUMMER, "19:00"), sun_on_facade=False, position_pct=100)
    assert decide(evening, P).target_pct == 0 and "left the façade" in decide(evening, P).reason
    night = replace(evening, sun_up=False, position_pct=0)
    assert decide(night, replace(P, night_position_pct=100)).target_pct == 100


def test_glare_position_from_window_geometry() -> None:
    profile = pd.Series([5.0, 30.0, 60.0, 89.0])
    position = glare_position_pct(profile, window_height_m=2.0, glare_distance_m=1.0)
    # open height = 1 m x tan(profile): 0.087, 0.577, 1.73, 2.0 (capped) of 2 m -> 96, 71, 13, 0 % down
    assert position.tolist() == [100.0, 80.0, 20.0, 0.0]


def test_season_from_rooms_then_forecast_then_hysteresis_then_calendar() -> None:
    warm = (("1.213", 23.5, 21.0, 24.0),)
    upper = (("1.213", 23.2, 21.0, 25.0),)      # the upper half of its band, on a cool day: an office's gains
    cool = (("1.213", 21.3, 21.0, 24.0),)
    middle = (("1.213", 22.0, 21.0, 24.0),)
    assert choose_season(warm, 5.0, 1, 18.0, 1.0, None)[0] == COOLING
    assert choose_season(upper, 12.0, 6, 18.0, 1.0, HEATING)[0] == COOLING      # the rooms, not the forecast
    assert choose_season(cool, 25.0, 7, 18.0, 1.0, None)[0] == HEATING           # a cool room takes the gain
    assert choose_season(middle, 17.0, 1, 18.0, 1.0, COOLING)[0] == COOLING       # near the middle: it holds
    assert choose_season(middle, 17.0, 1, 18.0, 1.0, HEATING)[0] == HEATING
    temperature_only = (("1.213", 22.0, None, None),)                            # no setpoints: the forecast
    assert choose_season(temperature_only, 25.0, 1, 18.0, 1.0, None)[0] == COOLING
    assert choose_season(temperature_only, 10.0, 7, 18.0, 1.0, None)[0] == HEATING
    assert choose_season((), None, 7, 18.0, 1.0, None)[0] == COOLING
    assert choose_season((), None, 12, 18.0, 1.0, None)[0] == HEATING


def test_the_decision_keeps_its_whole_trace() -> None:
    """Which rule matched, which passed and why, and a rate limit that held a move back."""
    s = BASE
    decision = decide(s, PolicySettings())
    rules = [(t.rule, t.outcome) for t in decision.trace]
    assert rules[:4] == [("wind_frost", "passed"), ("bas_command", "passed"), ("wall_switch", "passed"),
                         ("kill_switch", "passed")]
    assert rules[-1] == ("preemptive_cooling", "matched") and decision.target_pct == 100.0
    assert decision.trace[0].why == "no wind or frost lockout"
    soon = decide(replace(s, last_auto_move=s.now - timedelta(minutes=5)), PolicySettings())
    assert soon.target_pct is None and soon.trace[-1].outcome == "limited"
    assert soon.trace[-1].why.startswith("next move from") and "preemptive_cooling limited" in soon.explain()
    night = decide(replace(s, sun_up=False, sun_start=None, sun_end=None), PolicySettings())
    passed = {t.rule: t.why for t in night.trace if t.outcome == "passed"}
    assert passed["preemptive_cooling"] == "the sun does not reach the façade today"
    assert night.trace[-1].rule == "night"


def cool_sunny(day: date, temperature_c: float = 14.0) -> Weather:
    """A clear day whose forecast maximum stays well below the cooling threshold."""
    hours = pd.date_range(pd.Timestamp(day, tz=TZ).tz_convert("UTC") - pd.Timedelta(hours=2), periods=30, freq="h")
    return Weather("forecast", hours[0].to_pydatetime(),
                   pd.DataFrame({"cloud_fraction": 0.0, "temperature_c": temperature_c}, index=hours))


def test_a_cool_sunny_day_protects_an_office_whose_rooms_say_it_needs_cooling() -> None:
    """An office with its gains sits in the upper half of its band while the forecast maximum is
    14 °C: the outdoor forecast alone chose heating and kept the west façade up at 18:00 with
    about 500 W/m² on it. The rooms decide now; the forecast is the fallback."""
    day = GroupDay.compute(LOCATION, GROUP["west"], SHADES, cool_sunny(SUMMER), SUMMER)
    six_pm = next(i for i, t in enumerate(day.frame.index) if t.to_pydatetime() >= local(SUMMER, "18:00"))
    assert day.frame["poa_wm2"].iloc[six_pm] > 400                       # the sun is on the west façade
    assert day.outdoor_max_c is not None and day.outdoor_max_c < SHADES.cooling_outdoor_max_c - 2
    unknown = plan_day(day, TZ)                                           # no room known: the forecast
    assert unknown.season == HEATING and unknown.steps[six_pm].position < 100.0   # gain in (glare aside)
    office = plan_day(day, TZ, rooms=(("west office", 23.5, 21.0, 25.0),))
    assert office.season == COOLING and "upper half" in office.season_reason
    assert office.steps[six_pm].position == 100.0                        # kept out
    chilly = plan_day(day, TZ, rooms=(("west office", 21.4, 21.0, 25.0),))
    assert chilly.season == HEATING and chilly.steps[six_pm].position < 100.0    # a cool room takes the gain
