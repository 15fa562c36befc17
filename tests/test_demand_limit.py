"""Demand limiting's pure parts: the projection and its learnt margin, the plan that sets the level
and the stepper, the replayed building, the perfect-foresight oracle and the judging of a month."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demand_response.limiting import (
    ERRORS_NEEDED,
    Flexibility,
    LevelStepper,
    Projection,
    ProjectionErrors,
    Rebound,
)
from demand_response.replay import Building, Esus, Meter, Run, _hold, judge, no_action, oracle, replay
from demand_response.shed_plan import Outlook, choose

FLEX = Flexibility(shares=(0.05, 0.10, 0.15), response_min=2, max_minutes_per_day=60)


def meter(load: list[float] | np.ndarray, interval_min: int = 15) -> Meter:
    load = np.asarray(load, dtype=float)
    return Meter(load, np.arange(len(load)) // 1440, interval_min)


def spiky_days(days: int = 3, seed: int = 7) -> np.ndarray:
    """A building that idles at night and cycles a big load by day, with one heavier afternoon."""
    rng = np.random.default_rng(seed)
    minute = np.arange(days * 1440) % 1440
    load = 10 + 15 * ((minute > 8 * 60) & (minute < 18 * 60)) + rng.normal(0, 1, days * 1440)
    load += 8 * (rng.random(days * 1440) < 0.2) * ((minute > 8 * 60) & (minute < 18 * 60))
    load[1440 + 14 * 60: 1440 + 15 * 60] += 6
    return np.clip(load, 1, None)


def test_the_projection_is_metered_so_far_plus_the_rest() -> None:
    p = Projection(elapsed_min=5, interval_min=15, metered_kw=30.0, rest_kw=15.0, margin_kw=2.0)
    assert p.mean_kw == pytest.approx(30 * 5 / 15 + 15 * 10 / 15)
    assert p.upper_kw == pytest.approx(p.mean_kw + 2.0)


def outlook(rest: int, kw: float, next_kw: float, metered_kw: float = 0.0, n: int = 15) -> Outlook:
    """The rest of an interval (`rest` minutes at `kw`, after `n - rest` metered at `metered_kw`),
    then the next at `next_kw`, and the one after at it too."""
    unshed = np.concatenate([np.full(rest, kw), np.full(n, next_kw)])
    return Outlook(unshed, rest, metered_kw * (n - rest), n, next_kw)


def test_no_level_while_every_interval_in_sight_stays_at_the_target() -> None:
    plan = choose(outlook(12, 20.0, 20.5, metered_kw=20.0), 0, [0, 0], 0.0, 60, 21.0, FLEX, Rebound())
    assert plan.level == 0 and plan.excess_kw <= 0


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 14), st.floats(0.0, 1.0), st.lists(st.floats(0.0, 1.0), min_size=31, max_size=31),
       st.floats(0.0, 1.0), st.integers(0, 180))
def test_no_shed_is_ever_ordered_from_normal_while_every_interval_in_sight_stays_under_the_target(
        elapsed: int, metered_share: float, shares: list[float], tail_share: float, allowance: int) -> None:
    """The issue's rule: no flexibility is spent below a peak already paid for. Whatever the power
    ahead and the allowance left, a plan from normal sheds nothing while this interval, the next
    and the one after stay at or under the target."""
    target, n = 30.0, 15
    rest = n - elapsed
    unshed = np.array(shares[:rest + n]) * target
    metered = metered_share * target * elapsed
    limit = (target * n - metered) / rest   # the most this interval's rest may draw and stay at the target
    unshed[:rest] = np.minimum(unshed[:rest], limit)
    plan = choose(Outlook(unshed, rest, metered, n, tail_share * target), 0, [0, 0], 0.0, allowance,
                  target, FLEX, Rebound())
    assert plan.level == 0 and plan.excess_kw <= 1e-9


def test_a_shed_waits_for_the_last_minute_that_can_still_hold_the_interval() -> None:
    quiet_next = 50.0
    # 1 kW over with 13 minutes left: a level 3 reached two minutes later still takes 10 kW off the mean
    early = choose(outlook(13, 100.0, quiet_next, metered_kw=100.0), 0, [0, 0], 0.0, 60, 99.0, FLEX, Rebound())
    assert early.level == 0
    # three minutes left: the shed must start now (a stage: level 1), and it still cannot hold it
    late = choose(outlook(3, 100.0, quiet_next, metered_kw=100.0), 0, [0, 0], 0.0, 60, 99.0, FLEX, Rebound())
    assert late.level == 1 and late.pressing == 0 and late.excess_kw > 0


def test_a_release_waits_while_its_rebound_would_set_the_next_interval_over_the_target() -> None:
    # level 3 in force (85 kW metered of 100); the next interval is 100 kW unshed too
    shed = outlook(3, 100.0, 100.0, metered_kw=85.0)
    held = choose(shed, 3, [3, 3], 300.0, 120, 90.0, FLEX, Rebound())
    assert held.level == 3 and held.excess_kw <= 0
    # a quiet next interval with room for the rebound: the release begins, a stage a minute
    quiet = outlook(3, 100.0, 60.0, metered_kw=85.0)
    assert choose(quiet, 3, [3, 3], 300.0, 120, 90.0, FLEX, Rebound()).level == 2
    # the same with a rebound so large that the quiet interval cannot take it at once
    assert choose(quiet, 3, [3, 3], 300.0, 120, 62.0, FLEX, Rebound(ratio=5.0, saturation_min=600)).level == 3


def test_a_shed_past_the_days_allowance_is_not_counted_on() -> None:
    over = outlook(13, 100.0, 50.0, metered_kw=100.0)
    assert choose(over, 0, [0, 0], 0.0, 60, 99.0, FLEX, Rebound()).level == 0
    spent = choose(over, 0, [0, 0], 0.0, 0, 99.0, FLEX, Rebound())
    assert spent.level == 0 and spent.excess_kw == pytest.approx(1.0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=200), st.integers(1, 15))
def test_the_stepper_moves_a_stage_a_minute_and_falls_only_after_its_dwell(wanted: list[int], dwell: int) -> None:
    stepper = LevelStepper(dwell_min=dwell)
    held = 10**6
    for want in wanted:
        before = stepper.level
        held += 1
        after = stepper.set(want)
        assert 0 <= after <= 3 and abs(after - before) <= 1
        assert (after > before) == (want > before)
        if after < before:
            assert want < before and held >= dwell
        if after != before:
            held = 0


def test_the_margin_is_learnt_from_misses_near_the_target() -> None:
    errors = ProjectionErrors(15, quantile=0.9)
    assert errors.margin_kw(0, target_kw=50, fallback_kw=7.0) == 7.0
    rng = np.random.default_rng(1)
    for _ in range(ERRORS_NEEDED * 2):
        projected = 48 + rng.normal(0, 1)
        errors.add([projected] * 15, projected + rng.normal(0, 2))   # misses of 2 kW spread near 50
        errors.add([5.0] * 15, 25.0)                                 # a far-off projection's miss does not count
    margin = errors.margin_kw(0, target_kw=50, fallback_kw=7.0)
    assert 1.5 < margin < 4.0   # the 90 % quantile of N(0, 2) is 2.6


def test_the_margin_is_learnt_from_a_record_as_the_projection_would_have_missed() -> None:
    steady = ProjectionErrors(15)
    steady.learn(np.full(15 * 200, 40.0))
    assert steady.margin_kw(0, 40.0, fallback_kw=9.0) == pytest.approx(0.0)
    cycling = ProjectionErrors(15)
    minute = np.arange(15 * 200)
    cycling.learn(30 + 10 * ((minute // 4) % 3 == 0))   # a compressor on 4 minutes in 12
    assert cycling.margin_kw(0, 32.0, 9.0) > cycling.margin_kw(12, 32.0, 9.0) > 0
    gappy = ProjectionErrors(15)
    record = np.full(15 * 200, 40.0)
    record[::7] = np.nan                                  # every interval has a gap: none is learnt from
    gappy.learn(record)
    assert gappy.margin_kw(0, 40.0, fallback_kw=9.0) == 9.0


def test_the_building_answers_after_its_response_within_the_days_allowance() -> None:
    m = meter(np.full(3000, 100.0))
    building = Building(m, FLEX, Rebound(ratio=0.0))
    for t in range(3000):
        building.minute(t, 3)
    run = building.run
    assert run.acting[:2].tolist() == [0, 0] and run.acting[2] == 3
    assert run.metered_kw[2] == pytest.approx(85.0)
    per_day = [(run.acting[d * 1440:(d + 1) * 1440] > 0).sum() for d in range(2)]
    assert per_day == [60, 60]


def test_what_a_shed_saves_comes_back_as_its_rebound() -> None:
    m = meter(np.full(600, 100.0))
    building = Building(m, FLEX, Rebound(ratio=0.5, time_constant_min=30))
    for t in range(600):
        building.minute(t, 3 if t < 20 else 0)
    saved = 20 * 15.0
    assert m.load_kw.sum() - building.run.metered_kw.sum() == pytest.approx(saved * 0.5, rel=1e-3)
    assert building.run.rebound_kw[22] == pytest.approx(saved * 0.5 / 30)


def test_the_oracle_holds_the_lowest_target_it_reports_within_the_allowance() -> None:
    m = meter(spiky_days())
    flex = Flexibility((0.05, 0.10, 0.15), 2, 90)
    best = oracle(m, flex, Rebound(), tolerance_kw=0.01)
    assert best.target_kw is not None
    assert m.intervals(best.metered_kw).max() <= best.target_kw + 1e-6
    assert best.target_kw < m.intervals(m.load_kw).max() - 1.0
    for day in range(3):
        assert (best.acting[day * 1440:(day + 1) * 1440] > 0).sum() <= 90
    assert _hold(m, flex, Rebound(), best.target_kw - 0.05) is None


def test_esus_sheds_nothing_while_the_target_is_out_of_reach() -> None:
    m = meter(spiky_days())
    run = replay(m, FLEX, Rebound(), Esus(m, FLEX), lambda minute, peak: 1e6)
    assert not run.ordered.any()


def test_esus_holds_a_reachable_target_that_doing_nothing_exceeds() -> None:
    m = meter(spiky_days())
    flex = Flexibility((0.05, 0.10, 0.15), 2, 180)
    target = m.intervals(m.load_kw).max() * 0.95
    run = replay(m, flex, Rebound(), Esus(m, flex), lambda minute, peak: target)
    idle = replay(m, flex, Rebound(), no_action, lambda minute, peak: target)
    assert m.intervals(idle.metered_kw).max() > target
    assert m.intervals(run.metered_kw).max() < m.intervals(idle.metered_kw).max()


def test_once_the_days_allowance_is_spent_the_reason_says_so_not_that_a_shed_can_still_hold_it() -> None:
    from demand_response.limiting import Limiter, Minute

    flex = Flexibility((0.05, 0.10, 0.15), 2, 20)
    limiter = Limiter(15, flex)
    reasons = []
    for t in range(60):   # 40 kW against a target of 30 kW: the 20 minutes go, then nothing is left
        reasons.append(limiter.decide(Minute(t % 15, 40.0 if t % 15 else None, 40.0, 0.5, 30.0, day=0)).reason)
    assert limiter.used_min[0] == 20 and limiter.level == 0
    assert reasons[-1].startswith("level 0: the day's 20 minutes of shedding are spent; the bound ")
    assert reasons[-1].endswith("over the target 30.0 kW, nothing left to hold it")
    assert not any("a shed later can still hold it" in r for r in reasons[25:])


def test_a_month_is_judged_against_the_oracle() -> None:
    load = np.full(1440, 10.0)
    load[600:615] = 40.0          # the one interval that needs a shed
    m = meter(load)
    ordered = np.zeros(1440, dtype=np.int8)
    ordered[300:310] = 1          # a shed where nothing needed one
    ordered[598:615] = 3
    acting = np.roll(ordered, 2)
    metered = load * (1 - np.array([0, 0.05, 0.1, 0.15])[acting])
    run = Run(metered, ordered, acting, np.zeros(1440))
    outcome = judge(m, run, oracle_peak_kw=35.0)
    assert outcome.sheds == 2 and outcome.unnecessary == 1
    assert outcome.cut_kw == pytest.approx(40.0 - 34.0)
    assert not outcome.release_set_peak
    assert outcome.shed_hours == pytest.approx(27 / 60)


def test_a_long_shed_owes_no_more_than_its_first_hour_saved_and_a_lower_level_gives_back_the_difference() -> None:
    rebound = Rebound(ratio=0.5, saturation_min=60, time_constant_min=30)
    owed = 0.0
    for _ in range(300):
        owed, back = rebound.step(owed, 10.0)
        assert back == 0.0
    assert owed == pytest.approx(10.0 * 0.5 * 60)
    owed, back = rebound.step(owed, 5.0)              # a level down: half of it is no longer due
    assert back == pytest.approx((300 - 150) / 30)
    owed, back = rebound.step(owed, 0.0)              # released: the rest comes back
    assert back == pytest.approx(owed / 29, rel=0.01)


def test_the_forecast_of_the_interval_under_way_counts_when_it_is_above_the_power_now() -> None:
    from demand_response.limiting import Limiter, Minute

    def first_level(this_forecast: tuple[float, float] | None) -> int:
        limiter = Limiter(15, Flexibility((0.05, 0.10, 0.15), 2, 180))
        return limiter.decide(Minute(0, None, 20.0, 0.5, 25.0, day=0, this_forecast=this_forecast)).level

    assert first_level(None) == 0               # 20 kW now against 25: nothing to shed
    assert first_level((24.0, 24.8)) == 0       # a forecast bound under the target changes nothing
    assert first_level((31.0, 32.0)) == 1       # a bound of 32 kW: every minute of shed counts, from now


@pytest.mark.parametrize("response_min", [0, 1, 4])
def test_a_shed_that_shows_at_once_or_late_is_planned_all_the_same(response_min: int) -> None:
    from demand_response.limiting import Limiter, Minute

    limiter = Limiter(15, Flexibility((0.05, 0.10, 0.15), response_min, 180))
    levels = [limiter.decide(Minute(t % 15, 27.0 if t % 15 else None, 27.0, 0.5, 25.0, day=0)).level
              for t in range(30)]
    assert max(levels) == 3 and len(limiter._ordered) == response_min


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 3), st.booleans(), st.integers(1, 120))
def test_every_plan_moves_a_stage_a_minute_and_a_release_never_dips_to_rise_again(
        level_now: int, may_fall: bool, horizon: int) -> None:
    from demand_response.shed_plan import plans

    ordered, keys = plans(level_now, may_fall, horizon, 3)
    assert ordered.shape == (len(keys), horizon) and ordered.min() >= 0 and ordered.max() <= 3
    steps = np.diff(np.concatenate([np.full((len(ordered), 1), level_now), ordered], axis=1), axis=1)
    assert np.abs(steps).max(initial=0) <= 1
    falling = ordered[:, 0] < level_now
    assert not falling.any() or may_fall
    assert (np.diff(ordered[falling], axis=1) <= 0).all()
