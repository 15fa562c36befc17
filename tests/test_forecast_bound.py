"""Forecast v5: the 90 % upper bound is calibrated by regime (on data with known noise it covers
90 +/- 2 % of the intervals overall and no hour falls far below, though the noise differs by hour),
and public holidays are non-working days."""

from __future__ import annotations

import numpy as np
import pytest

from forecast.backtest import walk_forward
from forecast.calendar import WorkCalendar
from forecast.calibration import UpperBound, calibrate, conformal_quantile, pinball_kw
from forecast.series import Grid


def noisy_office(days: int, step_s: int = 900, seed: int = 3) -> Grid:
    """An office whose noise is four times larger in working hours than at night (so one margin for all
    hours would over-cover the night and under-cover the day)."""
    rng = np.random.default_rng(seed)
    t = 1_656_633_600 + np.arange(days * 86400 // step_s) * step_s
    hour = (t % 86400) / 3600
    working = (((t // 86400) + 3) % 7 < 5) & (hour >= 7) & (hour < 18)
    noise = rng.normal(0, np.where(working, 4.0, 1.0))
    return Grid(int(t[0]), step_s, 10 + 30 * working + 2 * np.sin(2 * np.pi * hour / 24) + noise)


@pytest.mark.slow
def test_the_bound_covers_ninety_percent_overall_and_in_every_hour() -> None:
    summary = walk_forward(noisy_office(70)).summary("kW")
    bound = summary["models"]["esus"]
    assert 88.0 <= bound["p90_coverage"] <= 92.0, bound
    assert bound["p90_worst_hour_coverage"] >= 80.0, bound
    assert 0 < bound["p90_width_kw"] < 10 and bound["pinball_p90"] > 0


def test_margins_follow_each_regimes_spread_and_borrow_where_it_has_few() -> None:
    rng = np.random.default_rng(0)
    hour = np.tile(np.arange(24), 400)
    working = np.repeat(np.arange(800) % 7 < 5, 12)[: hour.size]
    spread = np.where((hour >= 8) & (hour < 17), 4.0, 1.0)
    residual = rng.normal(0, spread)
    bound = calibrate(residual, working, hour)
    assert bound.margin_kw(np.array([1]), np.array([12]))[0] == pytest.approx(1.2816 * 4, rel=0.15)
    assert bound.margin_kw(np.array([1]), np.array([3]))[0] == pytest.approx(1.2816, rel=0.15)
    covered = residual <= bound.margin_kw(working, hour)
    assert covered.mean() == pytest.approx(0.9, abs=0.01)
    few = calibrate(np.array([5.0, -1.0, 0.5]), np.array([1, 1, 1]), np.array([9, 9, 9]))
    assert np.isfinite(few.margins_kw).all()          # no regime is left with an infinite bound
    assert few.margins_kw[1, 9] == pytest.approx(5.0)   # three residuals: the largest (conformal rank)


def test_conformal_quantile_and_pinball() -> None:
    scores = np.arange(1.0, 10.0)               # 9 scores: ceil(10 * 0.9) = 9th smallest
    assert conformal_quantile(scores) == 9.0
    assert conformal_quantile(np.arange(1.0, 20.0)) == 18.0   # ceil(20 * 0.9) = 18
    actual = np.array([1.0, 2.0, 3.0])
    assert pinball_kw(actual, np.array([2.0, 2.0, 2.0])) == pytest.approx((0.1 + 0 + 0.9) / 3)
    assert UpperBound.flat(-3.0).margins_kw.max() == 0.0   # a bound is never below the forecast


def test_a_holiday_is_a_sunday_and_unknown_countries_say_so() -> None:
    from datetime import date

    from forecast.calendar import CalendarError

    day = (date(2022, 7, 4) - date(1970, 1, 1)).days     # Independence Day, a Monday
    assert WorkCalendar().day_kinds(np.array([day]))[0] == 0
    assert WorkCalendar("US-WI").day_kinds(np.array([day, day + 1]))[0] == 6
    assert WorkCalendar("US-WI").day_kinds(np.array([day, day + 1]))[1] == 1
    assert not WorkCalendar("DK").working_at(np.array([(date(2026, 12, 25) - date(1970, 1, 1)).days * 86400]))[0]
    with pytest.raises(CalendarError, match="holidays 'XX'.*country code such as DK"):
        WorkCalendar("XX")
    with pytest.raises(CalendarError, match="subdivision"):
        WorkCalendar("US-ZZ")


LABOR_DAY = 19_240   # Monday 2022-09-05, in days since 1970-01-01


def office_with_a_holiday(step_s: int = 900) -> Grid:
    """Working hours on weekdays, but the office is shut on Labor Day; the data ends two days after it."""
    rng = np.random.default_rng(5)
    t = (LABOR_DAY - 20) * 86400 + np.arange(22 * 86400 // step_s) * step_s
    hour = (t % 86400) / 3600
    shut = t // 86400 == LABOR_DAY
    working = (((t // 86400) + 3) % 7 < 5) & ~shut & (hour >= 7) & (hour < 18)
    return Grid(int(t[0]), step_s, 5 + 30 * working + rng.normal(0, 1.0, t.size))


@pytest.mark.slow
def test_a_holiday_in_the_test_window_is_forecast_as_one() -> None:
    grid = office_with_a_holiday()
    holiday = (grid.times_s(np.arange(len(grid))) // 86400 == LABOR_DAY)
    errors = {}
    for country in (None, "US-WI"):
        result = walk_forward(grid, calendar=WorkCalendar(country))
        rows = holiday[result.issue + 4] & result.rows()        # forecasts whose target is on the holiday
        errors[country] = np.sqrt(np.mean((result.predictions["esus"][rows] - result.actual[rows]) ** 2))
    assert errors["US-WI"] < 0.5 * errors[None], errors


def test_features_see_a_holiday_monday_as_a_sunday() -> None:
    from forecast.features import features

    grid = office_with_a_holiday()
    issue = np.array([int((LABOR_DAY * 86400 + 10 * 3600 - grid.t0_s) // 900)])   # 10:00 on Labor Day
    plain, aware = features(grid, issue), features(grid, issue, calendar=WorkCalendar("US"))
    assert plain["target_day_kind"][0] == 0 and aware["target_day_kind"][0] == 6
    assert aware["target_is_non_working"][0] == 1
    assert plain["weekday_profile_kw"][0] > 30 > 10 > aware["weekday_profile_kw"][0]   # Mondays vs Sundays


def test_holidays_the_building_works_stay_working_days_and_unknown_names_say_which_there_are() -> None:
    from datetime import date

    from forecast.calendar import CalendarError

    juneteenth_observed = (date(2022, 6, 20) - date(1970, 1, 1)).days    # a Monday
    labor_day = LABOR_DAY
    assert WorkCalendar("US-WI").day_kinds(np.array([juneteenth_observed, labor_day])).tolist() == [6, 6]
    worked = WorkCalendar("US-WI", ("juneteenth",))
    assert worked.day_kinds(np.array([juneteenth_observed, labor_day])).tolist() == [0, 6]
    observed_only = WorkCalendar("US-WI", ("Observed",))     # the building closes on the day itself only
    assert observed_only.day_kinds(np.array([juneteenth_observed])).tolist() == [0]
    assert date(2022, 6, 19) in observed_only.holidays_between(date(2022, 6, 1), date(2022, 6, 30))
    with pytest.raises(CalendarError, match="'Juneteenth' names no holiday of DK.*Great Prayer Day"):
        WorkCalendar("DK", ("Juneteenth",))


def test_the_site_file_names_the_holidays_worked(tmp_path) -> None:
    from esus.settings.errors import SettingsError
    from esus.settings.site import load_site

    site = tmp_path / "site.toml"
    head = '[site]\nname = "x"\nlatitude = 43.0\nlongitude = -89.4\ntimezone = "America/Chicago"\nholidays = "US-WI"\n'
    site.write_text(head + 'holidays_worked = ["Juneteenth"]\n')
    assert load_site(site).site.work_calendar() == WorkCalendar("US-WI", ("Juneteenth",))
    site.write_text(head + 'holidays_worked = ["Midsummer"]\n')
    with pytest.raises(SettingsError, match="'Midsummer' names no holiday of US-WI"):
        load_site(site)


def test_the_level_adapts_to_how_the_bounds_did_and_stays_in_range() -> None:
    from forecast.calibration import LEVEL_RANGE, QUANTILE, adapt_level

    assert adapt_level(QUANTILE, 0.1, 96) == pytest.approx(QUANTILE)               # on target: unchanged
    assert adapt_level(QUANTILE, 0.25, 96) == pytest.approx(0.9 + 0.005 * 96 * 0.15)  # a day of misses: wider
    assert adapt_level(QUANTILE, 0.0, 24) == pytest.approx(0.9 - 0.005 * 24 * 0.1)  # none missed: narrower
    assert adapt_level(0.99, 1.0, 96) == LEVEL_RANGE[1] and adapt_level(0.6, 0.0, 960) == LEVEL_RANGE[0]
    bound = calibrate(np.random.default_rng(1).normal(0, 1, 5000), np.ones(5000), np.arange(5000) % 24, 0.97)
    assert bound.level == 0.97 and bound.margins_kw.mean() == pytest.approx(1.88, abs=0.1)   # z(0.97)


def test_the_nightly_training_moves_the_level_by_the_bounds_published_the_day_before(tmp_path) -> None:
    from esus.parts.training_job import UPPER_SERIES, adapted_level, power_grid
    from esus.state.store import HistoryStore
    from tests.synthetic import office_power

    grid = office_power(3, step_s=60)
    until = int(grid.times_s(np.array([len(grid) - 1]))[0]) + 60
    store = HistoryStore(tmp_path / "h.db")
    store.append_many({"power.input_kw": list(zip(grid.times_s().tolist(), grid.values.tolist(), strict=True))})
    stored = power_grid(store, until - 3 * 86400, until)
    assert adapted_level(store, stored, until, 0.9) == 0.9                     # nothing published: unchanged
    day = grid.times_s()[-1440:-60]
    store.append_many({UPPER_SERIES: [(float(t), 0.0) for t in day]})        # a bound every actual went above
    assert adapted_level(store, stored, until, 0.9) == pytest.approx(0.995)
    store.append_many({UPPER_SERIES: [(float(t), 500.0) for t in day]})      # and one none reached
    assert adapted_level(store, stored, until, 0.9) == pytest.approx(0.9 - 0.005 * 91 * 0.1, abs=0.01)
    store.close()
