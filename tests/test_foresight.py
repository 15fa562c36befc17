"""The room forecast the policy looks ahead with: what each position costs the rooms, the room that
speaks for a group, and the partial position the sun's profile angle gives."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pytest
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from shades.foresight import FLOOR_PER_WINDOW, RoomDay, options, rest_of_day, room_behind
from shades.planner import GLARE_AHEAD, GroupDay, RoomState, normal_outdoor_c, plan_day, speaking_room
from shades.solar import Facade, glare_position_pct, profile_angle_deg, sun_position
from shades.weather import clear_sky
from tests.shade_harness import LOCATION, SHADES, TZ

GROUP = {g.name: g for g in SHADES.groups}


def a_day(poa_wm2: float, outdoor_c: float, sun_hours: range = range(9, 17)) -> RoomDay:
    """A day with `poa_wm2` on the façade in `sun_hours`, a constant outdoor temperature, office gains."""
    hours = pd.date_range(datetime(2026, 7, 1, tzinfo=TZ), periods=24, freq="h")
    sun = np.array([h in sun_hours for h in range(24)])
    room = room_behind(8.64)
    gains = np.where((np.arange(24) >= 7) & (np.arange(24) < 18), 15.0 * room.floor_area_m2, 1.5 * room.floor_area_m2)
    return RoomDay(room, hours, np.full(24, outdoor_c), np.where(sun, poa_wm2, 0.0), sun, gains, 0.6, 0.15, 8.64)


def test_the_default_room_behind_a_facade() -> None:
    room = room_behind(8.64)
    assert room.floor_area_m2 == FLOOR_PER_WINDOW * 8.64 and room.window_area_m2 == 8.64
    assert room_behind(8.64, 30.0).floor_area_m2 == 30.0


def test_without_sun_every_position_costs_the_same() -> None:
    day = a_day(0.0, 10.0)
    found = options(day, datetime(2026, 7, 1, 10, tzinfo=TZ), 22.0, (0.0, 40.0, 100.0), 21.0, 25.0)
    assert [o.position_pct for o in found] == [0.0, 40.0, 100.0]
    assert len({round(o.kwh, 9) for o in found}) == 1


def test_on_a_hot_day_lowering_saves_cooling_and_never_more_than_the_gain_it_keeps_out() -> None:
    day = a_day(600.0, 24.0)
    up, down = (rest_of_day(day, 10, 24.8, position, 21.0, 25.0) for position in (0.0, 100.0))
    kept_out_kwh = (day.solar_w(10, 0.0) - day.solar_w(10, 100.0)) / 1000
    assert 0.3 * kept_out_kwh < up.cooling_kwh - down.cooling_kwh <= kept_out_kwh + 1e-9
    assert up.heating_kwh == down.heating_kwh == 0.0


def test_a_cold_day_the_sun_saves_heating() -> None:
    day = a_day(400.0, -2.0, range(10, 14))
    up, down = (rest_of_day(day, 10, 21.0, position, 21.0, 25.0) for position in (0.0, 100.0))
    assert down.heating_kwh > up.heating_kwh and up.cooling_kwh == down.cooling_kwh == 0.0


@settings(max_examples=60, deadline=None)
@given(outdoor=st.floats(-15, 32), air=st.floats(18, 28), poa=st.floats(0, 900), start=st.integers(0, 23))
def test_costs_are_finite_and_never_negative(outdoor: float, air: float, poa: float, start: int) -> None:
    day = a_day(poa, outdoor)
    for position in (0.0, 50.0, 100.0):
        option = rest_of_day(day, start, air, position, 21.0, 25.0)
        assert np.isfinite(option.kwh) and option.heating_kwh >= 0 and option.cooling_kwh >= 0


def test_the_room_that_speaks_for_a_group() -> None:
    south = GROUP["south"]
    rooms = (("1.217", 23.0, 21.0, 25.0), ("1.229", 22.0, 20.0, 23.0), ("1.230", None, 21.0, 25.0))
    speaker = speaking_room(rooms, south)
    assert (speaker.label.split()[1], speaker.air_c, speaker.measured) == ("1.229", 22.0, True)  # 2/3 up its band
    filled = speaking_room((("1.217", 24.0, None, None),), south)
    assert (filled.heating_c, filled.cooling_c) == (south.heating_setpoint_c, south.cooling_setpoint_c)
    unknown = speaking_room((("1.217", None, None, None),), south)
    assert not unknown.measured and unknown.air_c == (south.heating_setpoint_c + south.cooling_setpoint_c) / 2
    assert "unknown" in unknown.label


def test_the_stand_in_outdoor_temperature_follows_the_seasons() -> None:
    assert normal_outdoor_c(date(2026, 7, 19), 57.0) > 16.5 and normal_outdoor_c(date(2026, 1, 17), 57.0) < 1.5
    assert normal_outdoor_c(date(2026, 1, 17), -33.0) > 16.5


def test_a_partial_position_keeps_the_sun_off_the_work_zone_for_the_sun_profile_angle() -> None:
    """A spring day on the south façade, the room model validated and the room starting cool: the
    plan's glare positions are the ones the sun's profile angle gives for the window's height and the
    glare distance, the highest over the next hours."""
    day_date = date(2026, 4, 14)
    group = GROUP["south"]
    plan = plan_day(GroupDay.compute(LOCATION, group, SHADES, clear_sky(), day_date), TZ, start=RoomState(22.0, 21.5),
                    model_validated=True)
    partial = [s for s in plan.steps if s.moved and s.reason.startswith("the glare position")]
    assert partial, [s.reason for s in plan.steps if s.moved]
    for step in partial:
        times = pd.date_range(step.time, step.time + GLARE_AHEAD - timedelta(minutes=5), freq="5min")
        profile = profile_angle_deg(Facade(group.facade_azimuth_deg), sun_position(LOCATION, times))
        expected = glare_position_pct(profile, group.window_height_m, SHADES.glare_distance_m).max()
        assert 0 < step.position == expected < 100


def test_the_facade_sensor_corrects_the_next_hours_of_the_forecast_fading() -> None:
    """A forecast that misses the sun now misses the coming hours alike: the sensor's ratio to it
    scales the next three hours, fading, within a quarter to four times."""
    from shades.foresight import corrected_poa_wm2

    day = a_day(300.0, 24.0)
    poa = corrected_poa_wm2(day, 10, 600.0)
    assert poa[10] == 600.0 and poa[11:15].tolist() == pytest.approx([525.0, 450.0, 375.0, 300.0])
    assert poa[:10].tolist() == day.poa_wm2[:10].tolist()
    assert corrected_poa_wm2(day, 10, 3000.0)[11] == pytest.approx(300 * (1 + 3 * 0.75))   # at most 4 times
    assert corrected_poa_wm2(day, 10, None).tolist() == day.poa_wm2.tolist()
    dark = corrected_poa_wm2(day, 20, 30.0)      # both dim (night, no sun): nothing to scale
    assert dark[21:].tolist() == day.poa_wm2[21:].tolist()
    # what it changes: a sunnier afternoon than forecast makes shading now worth more
    forecast = rest_of_day(day, 10, 23.5, 0.0, 21.0, 24.0, 300.0)
    measured = rest_of_day(day, 10, 23.5, 0.0, 21.0, 24.0, 600.0)
    assert measured.cooling_kwh > forecast.cooling_kwh
