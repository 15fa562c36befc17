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


def test_stale_reading_and_frost_lock() -> None:
    lockout = Lockout(S)
    lockout.update(0, 2.0, 0)
    assert not lockout.update(700, 2.0, 700).locked
    assert lockout.update(2000, 2.0, 1000).locked and "stale" in lockout.state.reason
    frost = Lockout(S)
    frost.update(0, 2.0, 0)
    frost.update(600, 2.0, 600)
    state = frost.update(700, 2.0, 700, temperature_c=-1.5, precipitation=True)
    assert state.locked and state.kind == "frost" and "frost" in state.reason
    assert frost.update(800, 2.0, 800, temperature_c=-1.5, precipitation=False).locked  # calm wait again


def test_a_new_lockout_starts_locked_until_it_has_a_reading() -> None:
    assert Lockout(S).state.locked
