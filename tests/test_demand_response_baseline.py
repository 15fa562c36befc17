"""What a shed delivered: the standard high-5-of-10 baseline, the forecast baseline carried by the
building's profile, the delivered shed and the event's summary, each against a hand-computed case."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from demand_response.baseline import Baseline, forecast_baseline, high_5_of_10, interval_means, interval_starts
from demand_response.delivered import Delivered, delivered, summarize
from demand_response.ledger import SUMMARIES_KEPT, Ledger

TZ = ZoneInfo("America/Chicago")
EVENT_DAY = date(2026, 7, 15)          # a Wednesday
HOLIDAY = date(2026, 7, 3)             # Independence Day observed, a Friday


def working(day: date) -> bool:
    return day.weekday() < 5 and day != HOLIDAY


def at(day: date, hour: float) -> float:
    return datetime.combine(day, datetime.min.time(), tzinfo=TZ).timestamp() + hour * 3600


def history(level: dict[date, float], shape=lambda hour: 0.0) -> tuple[np.ndarray, np.ndarray]:
    """1-minute samples: each day flat at its level (plus a shape by hour of day)."""
    times, kw = [], []
    for day in sorted(level):
        t = at(day, 0) + 60 * np.arange(1440)
        times.append(t)
        kw.append(level[day] + np.array([shape(h) for h in (t - at(day, 0)) / 3600]))
    return np.concatenate(times), np.concatenate(kw)


def test_interval_starts_and_means() -> None:
    starts = interval_starts(at(EVENT_DAY, 14.1), at(EVENT_DAY, 15))
    assert (starts[0], starts[-1], starts.size) == (at(EVENT_DAY, 14), at(EVENT_DAY, 14.75), 4)
    t = at(EVENT_DAY, 14) + 60 * np.arange(15)
    assert interval_means(t, np.arange(15.0), starts[:1])[0] == 7.0
    assert np.isnan(interval_means(t[:5], np.arange(5.0), starts[:1])[0])    # a third of the minutes: unknown
    assert interval_means(t[:5], np.arange(5.0), starts[:1], min_share=0.0)[0] == 2.0


def test_high_5_of_10_averages_the_five_highest_of_the_last_ten_working_days() -> None:
    days = [EVENT_DAY - timedelta(days=d) for d in range(1, 22)]
    level = {day: float(100 + i) for i, day in enumerate(days)}   # the nearer the day, the lower
    level[EVENT_DAY - timedelta(days=1)] = 500.0                     # yesterday ran hot
    times, kw = history(level)
    starts = interval_starts(at(EVENT_DAY, 14), at(EVENT_DAY, 16))
    last_ten = [d for d in days if working(d)][:10]                  # weekends and the holiday skipped
    assert HOLIDAY not in last_ten and all(d.weekday() < 5 for d in last_ten)
    expected = np.mean(sorted((level[d] for d in last_ten), reverse=True)[:5])
    np.testing.assert_allclose(high_5_of_10(times, kw, starts, TZ, working), expected)
    few = {d: v for d, v in level.items() if d > EVENT_DAY - timedelta(days=6)}
    assert np.isnan(high_5_of_10(*history(few), starts, TZ, working)).all()   # 4 working days: no baseline


def test_the_forecast_baseline_takes_the_forecasts_level_and_the_days_shape() -> None:
    days = {EVENT_DAY - timedelta(days=d): 20.0 for d in range(1, 15)}
    times, kw = history(days, shape=lambda hour: hour)               # the typical day ramps 1 kW an hour
    starts = interval_starts(at(EVENT_DAY, 14), at(EVENT_DAY, 15))
    forecast_start = at(EVENT_DAY, 13.75)                             # the forecast's interval: 13:45-14:00
    same_kind = working
    base, method = forecast_baseline(50.0, forecast_start, starts, times, kw, TZ, same_kind)
    # the profile's interval means are 20 + the mean hour of each interval; the forecast's is 20 + 13.8667
    profile = 20 + np.array([14.1167, 14.3667, 14.6167, 14.8667])
    np.testing.assert_allclose(base, 50.0 + profile - (20 + 13.8667), atol=1e-3)
    assert method == "forecast carried by the typical profile"
    flat, method = forecast_baseline(50.0, forecast_start, starts, times[:0], kw[:0], TZ, same_kind)
    assert (flat == 50.0).all() and "flat" in method
    typical, method = forecast_baseline(None, forecast_start, starts, times, kw, TZ, same_kind)
    np.testing.assert_allclose(typical, profile, atol=1e-3)
    assert "no forecast" in method


def test_delivered_and_the_summary_of_an_event() -> None:
    start = at(EVENT_DAY, 14)
    baseline = Baseline("e1", start, (40.0, 40.0, 42.0, None), (38.0, 38.0, 38.0, 38.0), "forecast")
    t = start + 60 * np.arange(60)
    measured = np.where(t < start + 1800, 30.0, 36.0)                # shed 10, 10, then 6 kW; last unknown
    rows = delivered(baseline, t[:50], measured[:50], start + 50 * 60)
    assert [r.shed_kw for r in rows] == [10.0, 10.0, 6.0, None]
    assert rows[-1].measured_kw == 36.0 and rows[-1].standard_shed_kw == 2.0   # the interval so far
    summary = summarize(baseline, 2, start + 3600, rows, {"AHU-1": "active"})
    assert summary.intervals == 3 and summary.mean_shed_kw == pytest.approx(26 / 3)
    assert summary.min_shed_kw == 6.0 and summary.kwh_shed == pytest.approx(26 * 0.25)
    assert summary.standard_mean_shed_kw == pytest.approx((8 + 8 + 2 + 2) / 4)
    assert "shed 8.7 kW on average (least 6.0 kW), 6.5 kWh over 3 intervals" in summary.line()
    assert summary.start_s == baseline.start_s   # where the event's own start is not known
    # an event that began 13 minutes into its first quarter hour is shown from then (the page's row)
    assert summarize(baseline, 2, start + 3600, rows, {}, start_s=start + 13 * 60).start_s == start + 13 * 60
    assert Delivered(start, None, 40.0, None).shed_kw is None


def test_the_ledger_keeps_baselines_until_the_summary_replaces_them(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "dr.db")
    baseline = Baseline("e1", 1000.0, (40.0, None), (38.0, 39.0), "forecast carried by the typical profile")
    ledger.put_baseline(baseline, 1000.0)
    ledger.close()
    ledger = Ledger(tmp_path / "dr.db")                               # a restart mid-event keeps it
    assert ledger.baselines() == {"e1": baseline}
    summary = summarize(baseline, 1, 2800.0, delivered(baseline, np.array([1000.0]), np.array([30.0]), 2800.0), {})
    ledger.put_summary(summary)
    assert ledger.baselines() == {} and ledger.summaries() == [summary]
    for n in range(SUMMARIES_KEPT + 5):
        ledger.put_summary(summarize(Baseline(f"x{n}", n, (1.0,), (1.0,), "m"), 1, 5000.0 + n, [], {}))
    assert len(ledger.summaries(100)) == SUMMARIES_KEPT and ledger.summaries(1)[0].event_id == f"x{SUMMARIES_KEPT + 4}"
    ledger.close()
