"""Wind/frost lockout: properties over random weather (hypothesis), restart, frost, stale readings."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shades.lockout import Lockout, LockoutSettings

S = LockoutSettings(retract_mps=12, release_mps=8, release_after_s=600, stale_after_s=900)

reading = st.one_of(st.none(), st.floats(0, 30, allow_nan=False))
steps = st.lists(st.tuples(st.floats(0.1, 400), reading, st.floats(0, 2000), st.booleans()), max_size=60)


@settings(max_examples=400, deadline=None)
@given(steps)
def test_locked_in_wind_and_released_only_after_ten_calm_minutes(sequence) -> None:
    lockout = Lockout(S)
    now = 0.0
    history: list[tuple[float, bool]] = []  # (time, reading counts as calm for release)
    for dt, wind, age, restart in sequence:
        now += dt
        if restart:  # the process restarts: state comes back from the store
            lockout = Lockout.from_dict(S, lockout.to_dict())
        state = lockout.update(now, wind, now - age if wind is not None else None)
        known = wind is not None and age <= S.stale_after_s
        history.append((now, known and wind < S.release_mps))
        if not known or wind >= S.retract_mps:
            assert state.locked, "wind or an unknown reading must lock"
        if not state.locked:
            # every reading in the last ten minutes (and the one before them) was known and calm
            window = [calm for t, calm in history if t > now - S.release_after_s]
            earlier = [calm for t, calm in history if t <= now - S.release_after_s]
            assert all(window) and earlier and earlier[-1], "released without ten calm minutes"


def test_release_needs_ten_calm_minutes_and_gusts_restart_the_wait() -> None:
    lockout = Lockout(S)
    assert lockout.update(0, 13.0, 0).locked
    assert lockout.update(60, 5.0, 60).locked
    assert "releasing after" in lockout.state.reason
    assert lockout.update(400, 9.0, 400).locked        # between the thresholds: the wait restarts
    assert lockout.update(460, 5.0, 460).locked
    assert lockout.update(1059, 5.0, 1059).locked
    assert not lockout.update(1060, 5.0, 1060).locked


def test_lost_wind_data_is_its_own_reason() -> None:
    lockout = Lockout(S)
    assert lockout.state.locked and lockout.state.kind == "wind-data-lost"      # before the first reading
    lockout.update(0, 2.0, 0)
    assert not lockout.update(700, 2.0, 700).locked
    stale = lockout.update(2000, 2.0, 1000)
    assert stale.locked and stale.kind == "wind-data-lost" and "17 min old" in stale.reason
    gone = Lockout(S)
    gone.update(0, 2.0, 0)
    gone.update(700, 2.0, 700)
    assert gone.update(800, None, None).kind == "wind-data-lost" and "no wind reading" in gone.state.reason
    assert gone.update(900, 13.0, 900).kind == "wind"                           # wind, once it is known again


@settings(max_examples=300, deadline=None)
@given(temperature=st.floats(-20, 10), precipitation=st.booleans(), frost_below=st.floats(-10, 2))
def test_ice_locks_at_or_below_the_frost_temperature_with_precipitation(temperature: float, precipitation: bool,
                                                                       frost_below: float) -> None:
    settings_ = LockoutSettings(release_after_s=600, frost_below_c=frost_below)
    lockout = Lockout(settings_)
    lockout.update(0, 2.0, 0)
    assert not lockout.update(600, 2.0, 600).locked
    state = lockout.update(700, 2.0, 700, temperature_c=temperature, precipitation=precipitation)
    iced = precipitation and temperature <= frost_below
    assert state.locked == iced
    if iced:
        assert state.kind == "frost" and state.reason.startswith("ice: precipitation at")
        assert lockout.update(800, 2.0, 800, temperature_c=temperature, precipitation=False).locked  # dry wait
        assert not lockout.update(1400, 2.0, 1400, temperature_c=temperature, precipitation=False).locked


def test_ice_at_the_default_minus_two_degrees() -> None:
    lockout = Lockout(S)
    lockout.update(0, 2.0, 0)
    lockout.update(600, 2.0, 600)
    assert not lockout.update(700, 2.0, 700, temperature_c=-1.5, precipitation=True).locked
    assert lockout.update(800, 2.0, 800, temperature_c=-2.0, precipitation=True).kind == "frost"
