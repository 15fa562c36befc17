"""Forecast: cleaning, leakage, DST, baselines, the model beating them, load state."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecast.features import Horizon, WindowMeans, baselines, feature_matrix, features, target
from forecast.loadstate import DwellFlag, interval_means, rate_of_change_kw_per_min, thresholds
from forecast.model import ModelFileError, PowerModel
from forecast.series import Grid, fill_short_gaps, invalid_mask, to_grid
from forecast.training import forecast_now, is_sane, metrics, train_validated
from tests.synthetic import office_power


def test_sentinels_zeros_spikes_and_non_numbers_are_removed() -> None:
    values = np.full(2000, 10.0) + np.sin(np.arange(2000) / 50)
    values[[5, 6]] = -1.0
    values[100] = 0.0
    values[200] = 5000.0
    values[300] = np.nan
    values[400] = np.inf
    bad = invalid_mask(values)
    assert set(np.flatnonzero(bad)) == {5, 6, 100, 200, 300, 400}


def test_zeros_are_kept_where_zero_is_a_normal_reading() -> None:
    values = np.tile([0.0, 0.0, 3.0, 4.0], 100)  # a sub-meter that is often off
    assert not invalid_mask(values).any()


def test_grid_averages_duplicates_fills_short_gaps_and_keeps_long_ones() -> None:
    t = np.arange(0, 120 * 60, 60)
    v = np.full(t.size, 10.0)
    keep = np.ones(t.size, bool)
    keep[10:15] = False     # 5 minutes missing: filled
    keep[40:80] = False     # 40 minutes missing: stays missing
    t2 = np.concatenate([t[keep], [t[90]]])          # a duplicate stamp (a DST repeat)
    v2 = np.concatenate([v[keep], [20.0]])
    grid = to_grid(t2, v2)
    assert grid.step_s == 60 and len(grid) == 120
    assert np.isfinite(grid.values[10:15]).all()
    assert np.isnan(grid.values[40:80]).all()
    assert grid.values[90] == 15.0


def test_fill_short_gaps_never_extrapolates() -> None:
    out = fill_short_gaps(np.array([np.nan, 1.0, np.nan, 3.0, np.nan]), 5)
    assert np.isnan(out[0]) and out[2] == 2.0 and np.isnan(out[4])


def test_target_and_baselines_are_window_means() -> None:
    grid = Grid(0, 60, np.arange(20000, dtype=float))
    h = Horizon(60)
    k = np.array([15000])
    assert target(grid, k)[0] == np.mean(np.arange(15000 + h.ahead - 14, 15000 + h.ahead + 1))
    base = baselines(grid, k)
    assert base["persistence"][0] == np.mean(np.arange(14986, 15001))
    assert base["seasonal_naive_day"][0] == target(grid, k - 1440)[0]
    assert base["seasonal_naive_week"][0] == target(grid, k - 7 * 1440)[0]
    assert np.isnan(baselines(grid, np.array([9000]))["seasonal_naive_week"][0])  # not a week before it


def test_no_feature_uses_the_future() -> None:
    """Leakage: rewriting everything after the issue time leaves every feature unchanged."""
    grid = office_power(21, step_s=60)
    issue = np.array([len(grid) - 5000, len(grid) - 3000, len(grid) - 61])
    rng = np.random.default_rng(3)
    for k in issue:
        future = grid.values.copy()
        future[k + 1:] = rng.normal(1000, 500, future.size - k - 1)
        before = feature_matrix(grid, np.array([k]))
        after = feature_matrix(Grid(grid.t0_s, grid.step_s, future), np.array([k]))
        np.testing.assert_array_equal(before, after)


def test_the_held_out_day_does_not_leak_into_training() -> None:
    """Replace the held-out day by a signal that would make it trivially predictable: the trained
    model must be exactly the same (it never saw that day), so its score cannot improve."""
    grid = office_power(20, step_s=300, seed=1)
    day = 86400 // 300
    honest = train_validated(grid)
    future = grid.values.copy()
    future[-day:] = 7.0  # the held-out day, made constant: perfectly forecastable
    cheat = train_validated(Grid(grid.t0_s, grid.step_s, future))
    probe = np.arange(len(grid) - 3 * day, len(grid) - 2 * day)
    np.testing.assert_array_equal(honest.model.predict(grid, probe), cheat.model.predict(grid, probe))


def test_model_beats_the_baselines_and_saves_and_loads(tmp_path) -> None:
    grid = office_power(28, step_s=300, seed=2)
    result = train_validated(grid)
    assert is_sane(result)[0]
    assert result.rmse_kw < 0.6 * result.persistence_rmse_kw
    assert 0 < result.typical_persistence_rmse_kw
    path = tmp_path / "m.npz"
    result.model.save(path)
    loaded = PowerModel.load(path)
    issue = np.arange(len(grid) - 300, len(grid))
    np.testing.assert_array_equal(loaded.predict(grid, issue), result.model.predict(grid, issue))
    np.testing.assert_array_equal(loaded.upper(grid, issue, loaded.predict(grid, issue)),
                                  result.model.upper(grid, issue, result.model.predict(grid, issue)))
    assert loaded.info == result.model.info and loaded.calendar == result.model.calendar
    assert loaded.info.rmse_kw == result.rmse_kw and loaded.info.calibration_residuals > 0
    np.testing.assert_array_equal(loaded.bound.margins_kw, result.model.bound.margins_kw)
    assert (loaded.bound.margins_kw > 0).all()


def test_a_damaged_or_foreign_model_file_is_refused_in_one_line_and_never_run(tmp_path) -> None:
    """The model file is data: a pickle in its place (a writable state directory is no way to run
    code as the service), a truncated archive, another program's archive, a table that points
    outside itself: each refused as damaged, in one line."""
    import os
    import pickle

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    path = tmp_path / "m.npz"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ModelFileError, match="is not an esus model file") as refused:
        PowerModel.load(path)
    assert refused.value.damaged and not (tmp_path / "ran").exists() and "\n" not in str(refused.value)
    np.savez(path, meta=np.array([Payload()], dtype=object))   # an archive with a pickle inside it
    with pytest.raises(ModelFileError, match="holds pickled objects, which esus never loads") as refused:
        PowerModel.load(path)
    assert refused.value.damaged and not (tmp_path / "ran").exists() and "\n" not in str(refused.value)
    np.savez(path, meta=np.array('{"format": "someone-else"}'), weights=np.zeros(3))
    with pytest.raises(ModelFileError, match="not an esus power model"):
        PowerModel.load(path)
    good = train_validated(office_power(16, step_s=900, seed=3)).model
    good.save(path)
    whole = path.read_bytes()
    path.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(ModelFileError, match="is not an esus model file") as refused:
        PowerModel.load(path)
    assert refused.value.damaged
    with np.load(_saved(good, tmp_path / "g.npz")) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["power.left"] = arrays["power.left"] + 10**6   # a child outside the table
    np.savez(path, **arrays)
    with pytest.raises(ModelFileError, match="is damaged: ValueError: the power trees' tables do not agree"):
        PowerModel.load(path)
    with pytest.raises(ModelFileError, match="no model"):
        PowerModel.load(tmp_path / "absent.npz")


def _saved(model: PowerModel, path):  # type: ignore[no-untyped-def]
    model.save(path)
    return path


def test_short_history_falls_back_to_seasonal_naive_then_persistence() -> None:
    with pytest.raises(ValueError, match="training needs 14"):
        train_validated(office_power(10, step_s=300))
    week = forecast_now(office_power(9, step_s=300), None)
    assert week.method == "seasonal naive (last week)" and np.isfinite(week.kw) and week.upper_kw >= week.kw
    hours = forecast_now(office_power(1, step_s=300), None)
    assert hours.method == "persistence"
    nothing = forecast_now(Grid(0, 300, np.full(10, np.nan)), None)
    assert nothing is None


def test_forecast_across_a_dst_night_with_local_offsets() -> None:
    # Copenhagen, last Sunday of October: UTC+2 until 01:00 UTC, then UTC+1
    grid = office_power(30, step_s=300, start_s=1_790_000_000)
    switch = len(grid) - 400
    offsets = np.where(np.arange(len(grid)) < switch, 7200, 3600)
    local = Grid(grid.t0_s, grid.step_s, grid.values, offsets)
    result = train_validated(local)
    predicted = result.model.predict(local, np.arange(switch - 100, len(local) - 20))
    assert np.isfinite(predicted).all()
    hours = features(local, np.array([switch - 13, switch - 12]))["target_hour_of_day"]
    assert hours[1] - hours[0] == pytest.approx(-1 + 5 / 60)  # the clock went back an hour


def test_metrics_definitions() -> None:
    m = metrics(np.array([9.0, 11.0, 12.0]), np.array([10.0, 10.0, 10.0]))
    assert m["rmse"] == pytest.approx(np.sqrt(6 / 3))
    assert m["mae"] == pytest.approx(4 / 3)
    assert m["cv_rmse"] == pytest.approx(100 * np.sqrt(2) / 10)
    assert m["nmbe"] == pytest.approx(100 * (-2) / 30)
    assert np.isfinite(list(m.values())).all()


def test_dwell_flag_needs_the_condition_for_the_whole_dwell() -> None:
    flag = DwellFlag(900)
    assert not flag.update(True, 0)
    assert not flag.update(True, 899)
    assert flag.update(True, 900)
    assert flag.update(False, 1000)           # must stay off for 15 min before clearing
    assert flag.update(True, 1500)            # flicker resets the pending change
    assert flag.update(False, 1600)
    assert not flag.update(False, 2500)


def test_thresholds_and_slope() -> None:
    t = np.arange(0, 30 * 86400, 60)
    v = 10 + 5 * np.sin(2 * np.pi * t / 86400)
    means = interval_means(t, v)
    assert means.size == 30 * 96
    th = thresholds(means)
    assert th.high_kw > th.low_kw and th.samples == means.size
    assert thresholds(means[:50]) is None
    ramp = 3.0 + 0.2 * np.arange(15)
    ramp[7] = 40.0  # a spike from a cycling compressor
    assert rate_of_change_kw_per_min(np.arange(15) * 60, ramp) == pytest.approx(0.2)
    assert rate_of_change_kw_per_min(np.array([0]), np.array([1.0])) is None
    assert WindowMeans(np.array([1.0, np.nan, 3.0])).mean(np.array([2]), 3)[0] == 2.0


def test_a_quiet_held_out_day_does_not_reject_a_good_model() -> None:
    """A closed Sunday: persistence is nearly perfect that day; the week before sets the scale."""
    from forecast.training import TrainingResult

    sunday = TrainingResult(model=None, rmse_kw=1.17, persistence_rmse_kw=0.32, held_out_rows=1400,
                            typical_persistence_rmse_kw=3.7)
    assert is_sane(sunday)[0]
    assert not is_sane(TrainingResult(None, 9.0, 0.32, 1400, 3.7))[0]          # garbage is still garbage
    assert not is_sane(TrainingResult(None, 1.17, 0.32, 1400))[0]              # no week before: day alone
    assert not is_sane(TrainingResult(None, float("inf"), 0.32, 1400, 3.7))[0]


def test_a_model_trained_on_other_features_is_refused(tmp_path) -> None:
    """The model keeps its feature names; a file from code that computed other features (same
    version number, a forgotten bump) must not be fed columns in another meaning."""
    import dataclasses

    result = train_validated(office_power(28, step_s=300, seed=2))
    model = result.model
    model.info = dataclasses.replace(model.info, features=(*model.info.features[:-1], "a_feature_since_renamed"))
    path = tmp_path / "m.npz"
    model.save(path)
    with pytest.raises(ModelFileError, match="trained on other features.*a_feature_since_renamed"):
        PowerModel.load(path)


def test_a_model_file_of_an_earlier_version_is_refused_not_used(tmp_path) -> None:
    """A file of an earlier model version holds other features or estimators: using it could fail
    at the first forecast, so loading refuses it and the service forecasts with the fallback and
    trains."""
    from forecast.model import MODEL_VERSION

    model = train_validated(office_power(16, step_s=900, seed=3)).model
    model.info.version = MODEL_VERSION - 1
    path = tmp_path / "old.npz"
    model.save(path)
    with pytest.raises(ModelFileError, match=f"is not a version-{MODEL_VERSION} esus power model") as refused:
        PowerModel.load(path)
    assert not refused.value.damaged   # old, not broken: it is not set aside as damaged


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.floats(-50, 50)), min_size=3, max_size=40))
def test_the_robust_rate_is_scipy_s_theil_sen_slope(readings: list[tuple[int, float]]) -> None:
    """The slope in numpy (the service no longer imports scipy.stats for it) is scipy's, repeated
    times included."""
    from scipy.stats import theilslopes

    t = np.array([r[0] for r in readings], dtype=float) * 60
    v = np.array([r[1] for r in readings])
    ours = rate_of_change_kw_per_min(t, v)
    if np.ptp(t) <= 0:
        assert ours is None
        return
    assert ours == pytest.approx(float(theilslopes(v, t / 60.0).slope), rel=1e-9, abs=1e-12)
