"""A room learnt from its own record (shades.identify, shades.greybox): judged on a room of another
model (the ISO 13790 5R1C network) and on days it was not fitted on."""

from __future__ import annotations

import json
import math
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from shades.foresight import room_behind
from shades.greybox import GreyBox, simulate_days
from shades.identify import VALID_RMSE_K, RoomFit, fit_room, plant_hours
from shades.thermal import Room, RoomState

TZ = ZoneInfo("Europe/Copenhagen")
#: The room that is really there: lighter, leakier and more glazed than the site file's default.
TRUE_ROOM = Room(floor_area_m2=22.0, window_area_m2=7.2, wall_area_m2=4.8, air_changes_per_h=0.8,
                 capacity_j_m2k=120_000.0)
WINDOW_M2 = 7.2


def weeks(days: int, seed: int = 3) -> pd.DataFrame:
    """Hourly inputs of a changeable early summer: outdoor temperature, transmitted sun, occupancy."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-05-04", periods=days * 24, freq="h", tz=TZ)
    hour = index.hour.to_numpy()
    daily_cloud = np.repeat(rng.uniform(0, 1, days), 24)
    outdoor = 14 + 3 * (1 - daily_cloud) + 5 * np.cos(2 * np.pi * (hour - 15) / 24) + rng.normal(0, 0.3, len(index))
    sun = np.clip(np.sin(np.pi * (hour - 5) / 9), 0, None) * (hour < 14)    # an east façade's morning
    solar_w = sun * 700 * (1 - 0.8 * daily_cloud) * WINDOW_M2 * 0.75 * 0.6
    occupied = (index.day_of_week.to_numpy() < 5) & (hour >= 7) & (hour < 18)
    return pd.DataFrame({"outdoor_c": outdoor, "solar_w": solar_w, "occupied": occupied}, index=index)


def lived_in(inputs: pd.DataFrame, cooling: str = "always", seed: int = 4) -> pd.DataFrame:
    """The true room under an ideal plant (heating 21 °C always, cooling 24 °C as `cooling` says),
    as its BMS reads it: the air at each hour's start with noise, rounded to 0.1 K."""
    rng = np.random.default_rng(seed)
    state, air = TRUE_ROOM.at_rest(22.0), []
    gains = np.where(inputs["occupied"], 15.0 * 22, 1.5 * 22)
    for i, (outdoor, solar, occupied) in enumerate(inputs[["outdoor_c", "solar_w", "occupied"]].to_numpy()):
        air.append(state.air_c)
        cooled = cooling == "always" or (cooling == "office" and occupied)
        state, _ = TRUE_ROOM.step(state, outdoor, gains[i], solar, 21.0, 24.0 if cooled else math.inf)
    record = inputs.assign(air_c=np.round(np.array(air) + rng.normal(0, 0.1, len(air)), 1), heating_c=21.0,
                           cooling_c=24.0)
    return record.astype({"occupied": float})


def prior() -> GreyBox:
    room = room_behind(WINDOW_M2)      # what the site file alone gives: 6 m² of floor per m² of window
    return GreyBox.like(room, 15.0 * room.floor_area_m2, 1.5 * room.floor_area_m2)


def test_a_room_of_another_model_is_learnt_within_the_bound_from_four_weeks() -> None:
    fit = fit_room(lived_in(weeks(28)), prior())
    assert fit.validated, fit.reason
    assert fit.rmse_k <= VALID_RMSE_K and fit.held_out_days == 7 and fit.training_days >= 14
    assert fit.worst_k < 1.5
    assert "validated" in fit.reason and f"{fit.rmse_k:.2f} K" in fit.reason
    # the held-out days, measured against modelled, for the user's plot
    assert len(fit.held_out) == 7 * 24 and fit.held_out.index.tz is not None
    assert np.sqrt(((fit.held_out["modelled_c"] - fit.held_out["measured_c"]) ** 2).mean()) == pytest.approx(fit.rmse_k)


def test_the_plant_hours_are_read_from_the_record() -> None:
    record = lived_in(weeks(28), cooling="office")
    plant = plant_hours(record)
    # cooled in office hours on working days (the air never ends such an hour above 24.4 °C) ...
    assert set(range(7, 17)) <= set(plant.cooled["workday"])
    # ... not at night after warm days, nor through a warm weekend afternoon
    assert not set(range(18, 24)) <= set(plant.cooled["workday"])
    assert not set(range(12, 18)) <= set(plant.cooled["day off"])
    assert set(plant.heated["workday"]) == set(range(24))      # never below 20.6 °C: heating holds it
    fit = fit_room(record, prior())
    assert fit.validated, fit.reason
    assert "cooled workday" in fit.plant.describe()


def test_too_short_a_record_is_not_fitted_and_says_what_is_needed() -> None:
    fit = fit_room(lived_in(weeks(12)), prior())
    assert not fit.validated and fit.model is None
    assert "21 needed" in fit.reason and "9 whole days" in fit.reason   # the last day ends the record: its end unread


def test_a_room_the_model_cannot_predict_is_not_validated() -> None:
    """The check can fail: a record whose air temperature is not driven by the inputs (a sensor
    in the wrong room, say) is fitted as well as it can be, and refused."""
    record = lived_in(weeks(28))
    rng = np.random.default_rng(9)
    record["air_c"] = np.round(22.5 + np.cumsum(rng.normal(0, 0.35, len(record))).clip(-4, 4), 1)
    fit = fit_room(record, prior())
    assert fit.model is not None and not fit.validated
    assert fit.rmse_k > VALID_RMSE_K and "not validated" in fit.reason


def test_a_hole_in_the_record_costs_its_days_only() -> None:
    record = lived_in(weeks(30))
    record.iloc[200:230, record.columns.get_loc("air_c")] = np.nan
    fit = fit_room(record, prior())
    assert fit.validated, fit.reason
    # less the warm-up, the last day (its end unread) and the two days the hole falls in
    assert fit.training_days + fit.held_out_days == 30 - 2 - 1 - 2


def test_a_fit_is_kept_as_json_and_read_back() -> None:
    fit = fit_room(lived_in(weeks(28)), prior())
    again = RoomFit.from_dict(json.loads(json.dumps(fit.to_dict())))
    assert again == fit and again.validated
    with pytest.raises(ValueError, match="lacks c_mass_kj_k"):
        GreyBox.from_dict({k: v for k, v in fit.model.to_dict().items() if k != "c_mass_kj_k"})


def test_the_ideal_plant_holds_its_setpoint_exactly() -> None:
    model = prior()
    hot, cold = model.step(RoomState(24.0, 25.0), 30.0, 500.0, 2000.0, 21.0, 24.0), \
        model.step(RoomState(21.0, 18.0), -5.0, 0.0, 0.0, 21.0, 24.0)
    assert hot[0].air_c == pytest.approx(24.0) and hot[1] < 0
    assert cold[0].air_c == pytest.approx(21.0) and cold[1] > 0
    free, plant = model.step(RoomState(22.0, 22.0), 20.0, 300.0, 0.0, 21.0, 24.0)
    assert plant == 0.0 and 21.0 < free.air_c < 24.0
    # the vectorised days agree with the hour-by-hour step
    air, power = simulate_days(model, np.array([[24.0, 25.0]]), np.array([[30.0]]), np.array([[500.0]]),
                               np.array([[2000.0]]), np.array([[21.0]]), np.array([[24.0]]))
    assert air[0, 0] == pytest.approx(hot[0].air_c) and power[0, 0] == pytest.approx(hot[1])


def test_the_air_is_stable_for_any_parameters_the_fit_may_try() -> None:
    """The hour is integrated exactly: a light air node and a long hour do not blow up."""
    model = GreyBox(ua_air_w_k=400.0, ua_mass_w_k=900.0, ua_wall_w_k=5.0, c_air_kj_k=20.0, c_mass_kj_k=500.0,
                    solar_factor=1.0, solar_to_mass=0.5, occupied_gain_w=300.0, unoccupied_gain_w=30.0)
    state = model.at_rest(20.0)
    for _ in range(200):
        state, _ = model.step(state, 10.0, 100.0, 0.0)
    assert 10.0 < state.air_c < 11.0 and 10.0 < state.mass_c < 11.0
