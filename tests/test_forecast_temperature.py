"""Forecast v5: the outdoor temperature as an input, only as it was known at the forecast's time; a
temperature that is missing falls back to power alone; the temperature is kept only where it helped."""

from __future__ import annotations

import numpy as np
import pytest

from forecast.exogenous import known_at_slots
from forecast.features import TEMPERATURE_FEATURES, Horizon, feature_matrix, feature_names, features, target
from forecast.model import PowerModel
from forecast.series import Grid
from forecast.training import OutOfSample, judge_temperature, train_validated
from tests.synthetic import office_power

STEP_S = 900


def cooled_office(days: int, seed: int = 5) -> tuple[Grid, np.ndarray, np.ndarray]:
    """An office whose chiller follows the outdoor temperature, and a temperature that jumps from hour
    to hour (weather power history cannot foretell). Returns the power grid, and the temperature's
    times and values every 15 minutes."""
    rng = np.random.default_rng(seed)
    t = 1_656_633_600 + np.arange(days * 86400 // STEP_S) * STEP_S
    hour = (t % 86400) / 3600
    working = (((t // 86400) + 3) % 7 < 5) & (hour >= 7) & (hour < 18)
    hourly = np.repeat(rng.normal(0, 5.0, t.size // 4 + 1), 4)[: t.size]  # a new level every hour
    temperature = 22 + 6 * np.sin(2 * np.pi * (hour - 9) / 24) + hourly
    power = 6 + 15 * working + 1.5 * np.maximum(temperature - 18, 0) + rng.normal(0, 0.5, t.size)
    return Grid(int(t[0]), STEP_S, power), t, temperature


def test_known_at_slots_takes_the_latest_value_at_or_before_each_slot_and_never_a_later_one() -> None:
    grid = Grid(0, 60, np.zeros(10))
    known = known_at_slots(grid, np.array([300, 30, 120, 121, 200]), np.array([9.0, 1.0, 2.0, np.nan, 3.0]),
                           max_age_s=240)
    #              slot 0 (0 s) 1 (60) 2 (120) 3 (180) 4 (240) 5 (300) 6 (360) 7 (420) 8 (480) 9 (540)
    expected = [np.nan, 1.0, 2.0, 2.0, 3.0, 9.0, 9.0, 9.0, 9.0, 9.0]
    np.testing.assert_array_equal(known, expected)
    stale = known_at_slots(grid, np.array([0]), np.array([5.0]), max_age_s=120)
    np.testing.assert_array_equal(stale, [5.0, 5.0, 5.0] + [np.nan] * 7)   # too old to be known any more
    assert np.isnan(known_at_slots(grid, np.array([], dtype=np.int64), np.array([]))).all()


def test_temperature_features_use_only_what_was_known_at_the_issue_time() -> None:
    """Leakage: rewriting every temperature reading after the issue time leaves every feature unchanged."""
    grid, times, temperature = cooled_office(21)
    rng = np.random.default_rng(1)
    for k in (len(grid) - 700, len(grid) - 5):
        honest = grid.with_temperature(known_at_slots(grid, times, temperature))
        future = temperature.copy()
        future[times > grid.times_s(np.array([k]))[0]] = rng.normal(100, 50, int((times > honest.times_s(
            np.array([k]))[0]).sum()))
        rewritten = grid.with_temperature(known_at_slots(grid, times, future))
        np.testing.assert_array_equal(feature_matrix(honest, np.array([k])), feature_matrix(rewritten, np.array([k])))
        assert set(TEMPERATURE_FEATURES) <= set(features(honest, np.array([k])))


def test_a_future_only_temperature_cannot_help_the_forecast() -> None:
    """A 'temperature' that is the building's own power, measured at its time, tells the forecast
    nothing about the next hour beyond what power tells: the model with it must do no better than
    without. The same readings known an hour early (what a leak would give) make it near perfect, so
    this test can fail."""
    grid = office_power(30, step_s=STEP_S, seed=6)
    h = Horizon(STEP_S)
    slots = np.arange(len(grid))
    window_mean = target(grid, slots - h.ahead)          # the 15-minute mean ending at each slot
    power_only = train_validated(grid).rmse_kw
    honest = train_validated(grid.with_temperature(known_at_slots(grid, grid.times_s(), window_mean)))
    leaked = train_validated(grid.with_temperature(known_at_slots(grid, grid.times_s() - h.ahead * STEP_S,
                                                                  window_mean)))
    assert honest.rmse_kw >= 0.9 * power_only, (honest.rmse_kw, power_only)
    assert leaked.rmse_kw < 0.3 * power_only, (leaked.rmse_kw, power_only)   # the leak, had there been one


@pytest.mark.slow
def test_a_temperature_forecast_for_the_target_hour_improves_the_forecast_and_is_kept() -> None:
    grid, times, temperature = cooled_office(35)
    ahead_s = Horizon(STEP_S).ahead * STEP_S
    # a perfect weather forecast for the target hour, issued an hour before it
    forecast = grid.with_temperature(known_at_slots(grid, times - ahead_s, temperature))
    cold = train_validated(grid)
    warm = train_validated(forecast)
    assert warm.model.with_temperature is not None
    assert warm.model.info.temperature_gain_pct is not None and warm.model.info.temperature_gain_pct < -20
    assert warm.rmse_kw < 0.8 * cold.rmse_kw, (warm.rmse_kw, cold.rmse_kw)
    assert warm.model.info.features == tuple(feature_names(STEP_S, temperature=True))


def test_missing_temperature_falls_back_to_power_alone(tmp_path) -> None:
    grid, times, temperature = cooled_office(28)
    ahead_s = Horizon(STEP_S).ahead * STEP_S
    warm = train_validated(grid.with_temperature(known_at_slots(grid, times - ahead_s, temperature))).model
    assert warm.with_temperature is not None
    issue = np.arange(len(grid) - 96, len(grid))
    power_only = warm.predict(grid, issue, temperature=False)
    # the sensor or the weather source stopped six hours ago: its last value is too old after three
    stopped = times < grid.times_s(np.array([len(grid) - 24]))[0]
    gone = known_at_slots(grid, times[stopped] - ahead_s, temperature[stopped])
    out = warm.predict(grid.with_temperature(gone), issue)
    np.testing.assert_array_equal(out[-10:], power_only[-10:])
    assert np.isfinite(out).all()
    assert not np.array_equal(out[:60], power_only[:60])       # while it was known, it was used
    np.testing.assert_array_equal(warm.predict(grid, issue), power_only)   # a site without any: power alone
    path = tmp_path / "model.npz"
    warm.save(path)
    loaded = PowerModel.load(path)
    assert loaded.with_temperature is not None
    np.testing.assert_array_equal(loaded.predict(grid.with_temperature(gone), issue), out)


def test_a_temperature_blend_that_did_worse_out_of_sample_is_dropped() -> None:
    grid, times, temperature = cooled_office(16)
    model = PowerModel(STEP_S).fit(grid.with_temperature(known_at_slots(grid, times, temperature)),
                                   np.arange(len(grid) - 8))
    assert model.with_temperature is not None
    actual = np.linspace(10, 20, 50)
    worse = OutOfSample(np.arange(50), actual, actual + 2.0, actual + 1.0)
    judge_temperature(model, worse)
    assert model.with_temperature is None and model.info.temperature_gain_pct == pytest.approx(100.0)
    assert model.info.features == tuple(feature_names(STEP_S))
