"""The policy: a summer and a winter day for each façade with the room model as the rooms, the
priority chain, the VDI 3813 thermal automatic that decides until a room model is validated (and a
cooled room protected whatever the model says), the room forecast's choice, the rate limits and the
glare geometry."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shades.foresight import Option
from shades.planner import GroupDay, RoomState, plan_day, plan_json
from shades.policy import Decision, PolicySettings, Situation, decide
from shades.solar import glare_position_pct
from shades.weather import Weather, clear_sky
from tests.shade_harness import LOCATION, SHADES, TZ

GROUP = {g.name: g for g in SHADES.groups}
SUMMER, WINTER, LATE_WINTER = date(2026, 6, 22), date(2026, 12, 21), date(2027, 2, 24)   # Mon, Mon, Wed


def cold_clear(day: date) -> Weather:
    """A clear winter day at -2 to 4 °C."""
    hours = pd.date_range(pd.Timestamp(day, tz=TZ).tz_convert("UTC") - pd.Timedelta(hours=2), periods=30, freq="h")
    return Weather("forecast", hours[0].to_pydatetime(), pd.DataFrame(
        {"cloud_fraction": 0.0, "temperature_c": 1.0 + 3.0 * np.cos(2 * np.pi * (hours.hour - 13) / 24)}, index=hours))


def local(day: date, hhmm: str) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return datetime(day.year, day.month, day.day, h, m, tzinfo=TZ)


def moves(plan) -> list[tuple[datetime, float]]:
    return [(s.time, s.position) for s in plan.steps if s.moved]


@pytest.mark.parametrize("name", ["east", "south", "west"])
def test_a_clear_summer_day_shades_while_the_sun_is_on_the_facade_and_raises_after(name: str) -> None:
    day = GroupDay.compute(LOCATION, GROUP[name], SHADES, clear_sky(), SUMMER)
    plan = plan_day(day, TZ)
    made = moves(plan)
    assert made and made[0][1] > 0 and made[-1][1] == 0.0 and plan.moves <= SHADES.max_moves_per_day
    first = next(s for s in plan.steps if s.moved)
    assert first.poa_wm2 >= SHADES.glare_min_wm2                               # never lowered in dim light
    sunlit = [s for s in plan.steps if s.sun_on_facade and s.poa_wm2 > 300]
    assert sum(s.position >= 50 for s in sunlit) / len(sunlit) > 0.7          # the strong sun is kept out
    never = plan_day(day, TZ, chain=(never_shaded,), foresee=False)
    assert plan.cooling_kwh < 0.6 * never.cooling_kwh and plan.avoided_gain_kwh > 5


def never_shaded(s: Situation, p: PolicySettings) -> Decision:
    return Decision(0.0, "auto", "never shaded", automatic=True)


def test_summer_facades_follow_the_sun_round_the_building() -> None:
    starts = {n: GroupDay.compute(LOCATION, GROUP[n], SHADES, clear_sky(), SUMMER).window.start
              for n in GROUP}
    assert starts["east"] < starts["south"] < starts["west"]
    assert local(SUMMER, "04:30") < starts["east"] < local(SUMMER, "06:00")


def test_a_cool_room_takes_more_of_the_sun_than_a_warm_one() -> None:
    day = GroupDay.compute(LOCATION, GROUP["south"], SHADES, clear_sky(), SUMMER)
    warm = plan_day(day, TZ, start=RoomState(24.5, 24.5), model_validated=True)
    cool = plan_day(day, TZ, start=RoomState(21.0, 19.0), model_validated=True)
    strong = day.frame.index[day.frame["direct_wm2"] >= 300][0]       # the sun's beam is strong from here
    assert moves(warm)[0][0] <= strong + timedelta(minutes=15)
    shaded = {name: sum(s.position for s in plan.steps) for name, plan in (("warm", warm), ("cool", cool))}
    assert shaded["cool"] < 0.85 * shaded["warm"]
    assert cool.cooling_kwh < warm.cooling_kwh


@pytest.mark.parametrize(("name", "when", "start"), [
    ("east", WINTER, RoomState(21.0, 20.0)), ("south", WINTER, RoomState(21.0, 20.0)),
    ("west", WINTER, RoomState(21.0, 20.0)),
    # late February: the sun is strong, a south room warms past the middle of its band by noon
    ("south", LATE_WINTER, RoomState(21.0, 20.5)), ("west", LATE_WINTER, RoomState(21.0, 20.5))])
@pytest.mark.parametrize("validated", [False, True])
def test_a_winter_day_costs_no_more_than_never_shading_and_lowers_only_in_the_sun(
        name: str, when: date, start: RoomState, validated: bool) -> None:
    """In December nothing is lowered; in late February a south room the sun warms to its cooling
    setpoint is protected (a cooled room always is), which costs a little heating at night but less
    than the cooling it saves."""
    day = GroupDay.compute(LOCATION, GROUP[name], SHADES, cold_clear(when), when)
    plan = plan_day(day, TZ, start=start, model_validated=validated)
    never = plan_day(day, TZ, start=start, chain=(never_shaded,), foresee=False)
    assert plan.heating_kwh + plan.cooling_kwh <= never.heating_kwh + never.cooling_kwh + 0.01
    assert plan.heating_kwh <= never.heating_kwh + (0.01 if when == WINTER else 0.5)
    for step in plan.steps:
        if step.position > 0:  # only while people are in and the sun is in front
            assert step.sun_on_facade
            assert SHADES.occupied_from <= step.time.astimezone(TZ).time() < SHADES.occupied_until
    assert plan.moves <= SHADES.max_moves_per_day


def test_an_overcast_cool_day_is_not_shaded() -> None:
    times = pd.date_range(local(SUMMER, "00:00"), periods=30, freq="1h").tz_convert("UTC")
    overcast = Weather("forecast", local(SUMMER, "00:00"), pd.DataFrame(
        {"cloud_fraction": 1.0, "temperature_c": 12.0, "wind_mps": 3.0, "precipitation_mm": 0.0}, index=times))
    plan = plan_day(GroupDay.compute(LOCATION, GROUP["south"], SHADES, overcast, SUMMER), TZ, model_validated=True)
    assert plan.moves == 0 and plan.steps[150].reason.startswith("up")


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
        assert set(entry) >= {"time", "position", "mode", "reason", "sun_on_facade", "poa_wm2", "room_c"}
        assert sum(e["moved"] for e in group["timeline"]) == group["moves"]


# -- the chain -------------------------------------------------------------------------------------

#: 10:00 on a summer morning, sun on the façade, people in; what each position costs today
HOT = (Option(0.0, 0.0, 3.1), Option(40.0, 0.0, 2.6), Option(100.0, 0.0, 1.2))
BASE = Situation(now=local(SUMMER, "10:00"), tz=TZ, position_pct=0.0, sun_up=True, sun_on_facade=True, direct_wm2=450,
                 occupied=True, poa_wm2=600, glare_pct=40.0, room="room 1.217 24.2 °C", room_c=24.2, options=HOT,
                 room_model_validated=True)
P = PolicySettings(min_saving_kwh=0.25)


def test_automation_shades_when_it_saves_cooling() -> None:
    d = decide(BASE, P)
    assert (d.target_pct, d.mode, d.automatic) == (100.0, "auto", True)
    assert d.reason == "down: saves 1.40 kWh of cooling today against the glare position (room 1.217 24.2 °C)"


def test_the_room_forecast_picks_the_most_open_position_worth_its_cost() -> None:
    mild = (Option(0.0, 0.0, 0.5), Option(40.0, 0.0, 0.4), Option(100.0, 0.0, 0.3))
    d = decide(replace(BASE, options=mild), P)
    assert d.target_pct == 40.0 and d.reason.startswith("the glare position: keeps direct sun off the work zone")
    nobody = decide(replace(BASE, options=mild, occupied=False), P)
    assert nobody.target_pct is None and nobody.reason.startswith("up")          # already up: no glare to mind
    cold = (Option(0.0, 0.8, 0.0), Option(40.0, 0.9, 0.0), Option(100.0, 1.1, 0.0))
    winter = decide(replace(BASE, options=cold, position_pct=100.0, room_c=22.0), P)
    assert winter.target_pct == 0.0 and "lower half of its band" in winter.reason   # its heat is welcome
    heated = decide(replace(BASE, room_c=21.2), P)                                # whatever the afternoon brings
    assert heated.target_pct is None and "no lowering: the room is at its heating setpoint" in heated.reason
    dim = decide(replace(BASE, poa_wm2=120.0, direct_wm2=0.0, options=HOT), P)
    assert dim.target_pct is None                                              # no lowering in dim light


def test_a_lowered_blind_opens_only_for_a_clear_gain() -> None:
    down = replace(BASE, position_pct=100.0)
    close_call = (Option(0.0, 0.0, 0.40), Option(40.0, 0.0, 0.38), Option(100.0, 0.0, 0.30))
    assert decide(replace(down, options=close_call, occupied=False, glare_pct=0.0), P).target_pct is None
    clearly = (Option(0.0, 0.0, 0.32), Option(100.0, 0.0, 0.30))
    assert decide(replace(down, options=clearly, occupied=False, glare_pct=0.0), P).target_pct == 0.0
    partly = replace(BASE, position_pct=60.0, glare_pct=40.0,
                     options=(Option(0.0, 0.0, 0.6), Option(40.0, 0.0, 0.31), Option(60.0, 0.0, 0.30),
                              Option(100.0, 0.0, 0.29)))
    assert decide(partly, P).target_pct is None                              # 20 points up: not worth a move


def test_priority_wind_then_bas_then_hold_then_kill_switch() -> None:
    everything = replace(BASE, lockout="wind", lockout_reason="wind 14.0 m/s >= 12 m/s", bas_command_pct=60,
                         hold_until=BASE.now + timedelta(hours=1), automation_enabled=False)
    assert decide(everything, P).mode == "wind" and decide(everything, P).target_pct == 0
    assert decide(replace(everything, lockout="frost"), P).mode == "frost"
    assert decide(replace(everything, lockout="wind-data-lost"), P).mode == "wind-data-lost"
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


def test_an_escape_door_raised_by_hand_is_not_lowered_by_automation() -> None:
    door = replace(BASE, door_opened_by_hand=True)
    d = decide(door, P)
    assert (d.target_pct, d.mode) == (None, "manual") and "escape door raised by hand" in d.reason
    assert decide(replace(door, bas_command_pct=80), P).target_pct == 80        # the BAS still commands it
    assert decide(replace(door, lockout="wind", lockout_reason="x"), P).target_pct == 0


def test_rate_limits_apply_to_automation_only() -> None:
    soon = replace(BASE, last_auto_move=BASE.now - timedelta(minutes=10))
    d = decide(soon, P)
    assert d.target_pct is None and "next move from 10:05" in d.reason
    assert decide(replace(soon, bas_command_pct=30), P).target_pct == 30          # the BAS is not limited
    assert decide(replace(BASE, position_pct=97), P).target_pct is None            # < 5 % change
    capped = decide(replace(BASE, auto_moves_today=P.max_moves_per_day), P)
    assert capped.target_pct is None and "daily cap" in capped.reason
    last = decide(replace(BASE, auto_moves_today=P.max_moves_per_day - 1), P)
    assert last.target_pct is None and "kept for raising" in last.reason
    raising = replace(BASE, position_pct=100.0, occupied=False, sun_on_facade=False,
                      options=(Option(0.0, 0.0, 0.3), Option(100.0, 0.0, 0.3)), auto_moves_today=P.max_moves_per_day - 1)
    assert decide(raising, P).target_pct == 0.0
    assert decide(replace(BASE, last_auto_move=BASE.now - timedelta(minutes=15)), P).target_pct == 100


def test_a_cooled_room_in_strong_sun_may_take_the_move_kept_for_raising() -> None:
    """The forecast's moves must not leave a cooled room to the sun; weak sun is not worth the
    evening's raising (the blind would stay down until the next day's first move)."""
    cooled = replace(BASE, room_c=24.9, cooling_c=25.0, auto_moves_today=P.max_moves_per_day - 1)
    strong = decide(cooled, P)
    assert strong.target_pct == 100.0 and strong.trace[-1].rule == "cooled_room"
    weak = decide(replace(cooled, poa_wm2=200.0, direct_wm2=100.0), P)
    assert weak.target_pct is None and "kept for raising" in weak.reason
    assert decide(replace(cooled, auto_moves_today=P.max_moves_per_day), P).target_pct is None   # the cap holds


def test_the_room_forecast_does_not_reopen_a_blind_it_has_just_moved() -> None:
    """Second thoughts within the hour (its costs wobble with the sun and the room) spend moves."""
    free = (Option(0.0, 0.0, 0.30), Option(40.0, 0.0, 0.30), Option(100.0, 0.0, 0.30))
    down = replace(BASE, position_pct=100.0, room_c=22.0, occupied=False, options=free)
    just = decide(replace(down, last_auto_move=down.now - timedelta(minutes=25)), P)
    assert just.target_pct in (None, 100.0) and just.trace[-1].rule == "room_forecast"
    settled = decide(replace(down, last_auto_move=down.now - timedelta(minutes=61)), P)
    assert settled.target_pct == 0.0


def test_night_position() -> None:
    night = replace(BASE, sun_up=False, sun_on_facade=False, options=())
    assert decide(night, replace(P, night_position_pct=100)).target_pct == 100
    assert decide(replace(night, position_pct=100), P).target_pct == 0


def test_glare_position_from_window_geometry() -> None:
    profile = pd.Series([5.0, 30.0, 60.0, 89.0])
    position = glare_position_pct(profile, window_height_m=2.0, glare_distance_m=1.0)
    # open height = 1 m x tan(profile): 0.087, 0.577, 1.73, 2.0 (capped) of 2 m -> 96, 71, 13, 0 % down
    assert position.tolist() == [100.0, 80.0, 20.0, 0.0]


def test_the_decision_keeps_its_whole_trace() -> None:
    """Which rule matched, which passed and why, and a rate limit that held a move back."""
    decision = decide(BASE, P)
    rules = [(t.rule, t.outcome) for t in decision.trace]
    assert rules == [("lockout", "passed"), ("bas_command", "passed"), ("wall_switch", "passed"),
                     ("kill_switch", "passed"), ("escape_door", "passed"), ("night", "passed"),
                     ("cooled_room", "passed"), ("thermal_automatic", "passed"), ("room_forecast", "matched")]
    assert decision.trace[0].why == "no wind, ice or wind-data lockout"
    soon = decide(replace(BASE, last_auto_move=BASE.now - timedelta(minutes=5)), P)
    assert soon.target_pct is None and soon.trace[-1].outcome == "limited"
    assert soon.trace[-1].why.startswith("next move from") and "room_forecast limited" in soon.explain()
    unknown = decide(replace(BASE, options=()), P)
    assert unknown.trace[-2].why == "no room forecast" and unknown.trace[-1].rule == "default"


def test_plan_json_keeps_each_steps_trace_and_the_room_model() -> None:
    plan = plan_day(GroupDay.compute(LOCATION, GROUP["south"], SHADES, clear_sky(), SUMMER), TZ, model_validated=True)
    doc = plan_json([plan], SUMMER, "clear-sky")["groups"]["south"]
    moved = [e for e in doc["timeline"] if e["moved"]]
    assert moved[0]["trace"][-1]["rule"] == "room_forecast" and moved[0]["trace"][-1]["outcome"] == "matched"
    assert doc["cooling_kwh"] == round(plan.cooling_kwh, 3) and doc["heating_kwh"] == round(plan.heating_kwh, 3)
    assert all(21.0 - 0.01 <= e["room_c"] <= 25.0 + 0.01 for e in doc["timeline"])


# -- the floor: VDI 3813 until the room model is validated, a cooled room always protected -----------

RULE = replace(BASE, room_model_validated=False, options=())


def test_until_the_room_model_is_validated_the_thermal_automatic_decides() -> None:
    down = decide(RULE, P)
    assert down.target_pct == 100.0 and down.trace[-1].rule == "thermal_automatic"
    assert down.reason.startswith("down: 600 W/m² on the façade, from 150") and "not yet validated" in down.reason
    between = decide(replace(RULE, position_pct=100.0, poa_wm2=130.0), P)       # hysteresis: stays down
    assert between.target_pct is None and between.reason.startswith("staying: 130 W/m²")
    assert decide(replace(RULE, position_pct=100.0, poa_wm2=110.0), P).target_pct == 0.0
    assert decide(replace(RULE, position_pct=100.0, sun_on_facade=False), P).target_pct == 0.0
    heated = decide(replace(RULE, room_c=21.2, position_pct=100.0), P)           # a heated room takes the sun
    assert heated.target_pct == 0.0 and "at its 21 °C heating setpoint" in heated.reason
    # the room model, validated, decides from the same situation (HOT: down saves the most cooling)
    assert decide(replace(RULE, room_model_validated=True, options=HOT), P).trace[-1].rule == "room_forecast"


def test_a_room_held_at_its_cooling_setpoint_with_the_sun_on_its_glass_is_protected_whatever_the_model_says() -> None:
    free = (Option(0.0, 0.0, 0.0), Option(40.0, 0.0, 0.0), Option(100.0, 0.0, 0.0))   # a model that sees no cost
    cooled = replace(BASE, room_c=24.9, cooling_c=25.0, options=free)
    d = decide(cooled, P)
    assert d.target_pct == 100.0 and d.trace[-1].rule == "cooled_room" and "cooled" in d.reason
    assert decide(replace(cooled, room_c=24.5), P).trace[-1].rule == "room_forecast"   # not at its setpoint
    assert decide(replace(cooled, poa_wm2=100.0), P).trace[-1].rule != "cooled_room"   # no sun to keep out


@pytest.mark.parametrize("name", ["east", "south", "west"])
def test_a_plan_without_a_validated_model_is_the_threshold_rule_within_the_rate_limits(name: str) -> None:
    """Down once the façade gets 150 W/m², up once it is below 120: the conventional rule, which a
    room model must beat on the building's own data before it may decide otherwise."""
    day = GroupDay.compute(LOCATION, GROUP[name], SHADES, clear_sky(), SUMMER)
    plan = plan_day(day, TZ)
    made = moves(plan)
    assert [position for _, position in made] == [100.0, 0.0] and plan.moves <= SHADES.max_moves_per_day
    lowered, raised = (next(s for s in plan.steps if s.moved and s.position == p) for p in (100.0, 0.0))
    assert lowered.poa_wm2 >= 150 and "VDI 3813" in lowered.reason
    before = [s for s in plan.steps if s.time < lowered.time]
    assert all(s.poa_wm2 < 150 or not s.sun_on_facade for s in before)
    assert raised.poa_wm2 < 120 or not raised.sun_on_facade


@settings(max_examples=400, deadline=None)
@given(poa=st.floats(0, 1000), on_facade=st.booleans(), room_c=st.floats(17, 28), occupied=st.booleans(),
       position=st.sampled_from([0.0, 30.0, 50.0, 100.0]),
       saved=st.lists(st.floats(0, 2), min_size=4, max_size=4), heat=st.lists(st.floats(0, 0.5), min_size=4, max_size=4))
def test_in_office_hours_a_room_model_lowers_past_half_only_where_the_rule_would(
        poa: float, on_facade: bool, room_c: float, occupied: bool, position: float, saved: list[float],
        heat: list[float]) -> None:
    """Never worse than the rule for the people in the room: below the rule's threshold, whatever
    the room forecast says, the blind keeps the view (at most half down) while people are in."""
    positions = (0.0, 30.0, 50.0, 100.0)
    cooling, heating = np.cumsum([0, *saved[1:]])[::-1] + 1.0, np.cumsum(heat)
    options = tuple(Option(p, float(h), float(c)) for p, h, c in zip(positions, heating, cooling, strict=True))
    s = Situation(now=local(SUMMER, "11:00"), tz=TZ, position_pct=position, sun_up=True, sun_on_facade=on_facade,
                  occupied=occupied, poa_wm2=poa, direct_wm2=poa, glare_pct=30.0, room_c=room_c, heating_c=21.0,
                  cooling_c=24.0, options=options, room_model_validated=True, outdoor_max_c=22.0)
    p = PolicySettings()
    decision = decide(s, p)
    rule_down = on_facade and poa >= p.protect_above_wm2
    if occupied and not rule_down and decision.target_pct is not None:
        assert decision.target_pct <= 50.0, decision.explain()


def test_the_plan_plot_shows_the_sun_the_moves_with_their_reasons_and_the_rooms() -> None:
    from shades.report import plan_figure

    plans = [plan_day(GroupDay.compute(LOCATION, GROUP[name], SHADES, clear_sky(), SUMMER), TZ)
             for name in ("east", "west")]
    fig = plan_figure(plans, SUMMER, "clear-sky", TZ)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    for plan in plans:
        for step in (s for s in plan.steps if s.moved):
            assert any(t.startswith(f"{step.time.astimezone(TZ):%H:%M} {step.reason.split(' (')[0][:40]}")
                       for t in texts), (step.reason, texts)
    assert "local time (Europe/Copenhagen)" in {ax.get_xlabel() for ax in fig.axes}
    rooms = [ax for ax in fig.axes if ax.get_ylabel() == "°C"]
    assert len(rooms) == 2 and all(len(ax.lines[0].get_xdata()) == 24 for ax in rooms)
    spans = [p for ax in fig.axes for p in ax.patches if p.get_label() == "sun on the façade"]
    assert len(spans) == 2
