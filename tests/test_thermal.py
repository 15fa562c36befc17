"""The 5R1C room model against cases worked out independently of its stepping formulas: the
steady state of the same network solved by nodal analysis, the exact discrete step response of
its one capacity, the heat balance of the ideal plant."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shades.thermal import H_MS_W_M2K, Room, hour, ideal_hour, simulate, transmitted_solar_w

ROOM = Room(floor_area_m2=20.0, window_area_m2=6.0, wall_area_m2=15.0)


def nodal_steady_state(room: Room, outdoor_c: float, internal_w: float, solar_w: float,
                       plant_w: float = 0.0) -> np.ndarray:
    """(air, surface, mass) where every node's flows balance: Kirchhoff on the network, not ISO's steps."""
    gains = 0.5 * internal_w + solar_w
    share_m = room.mass_area_m2 / room.inner_area_m2
    share_s = 1 - share_m - room.h_tr_w / (H_MS_W_M2K * room.inner_area_m2)
    ve, w, em, is_, ms = room.h_ve, room.h_tr_w, room.h_tr_em, room.h_tr_is, room.h_tr_ms
    conductance = np.array([[ve + is_, -is_, 0.0],
                            [-is_, is_ + w + ms, -ms],
                            [0.0, -ms, ms + em]])
    inflow = np.array([ve * outdoor_c + 0.5 * internal_w + plant_w,
                       w * outdoor_c + share_s * gains,
                       em * outdoor_c + share_m * gains])
    return np.linalg.solve(conductance, inflow)


def settle(room: Room, outdoor_c: float, internal_w: float, solar_w: float, plant_w: float = 0.0):
    mass, state = outdoor_c, None
    for _ in range(5000):   # about a hundred time constants
        state = hour(room, mass, outdoor_c, internal_w, solar_w, plant_w)
        mass = state.mass_end_c
    return state


def test_without_gains_every_node_settles_at_the_outdoor_temperature() -> None:
    state = settle(ROOM, 7.5, 0.0, 0.0)
    assert state.air_c == pytest.approx(7.5) and state.surface_c == pytest.approx(7.5)


@given(outdoor=st.floats(-15, 35), internal=st.floats(0, 2000), solar=st.floats(0, 3000),
       plant=st.floats(-3000, 3000), window=st.floats(1, 15), wall=st.floats(0, 40))
@settings(max_examples=40, deadline=None)
def test_the_steady_state_is_the_networks_nodal_solution(outdoor: float, internal: float, solar: float,
                                                          plant: float, window: float, wall: float) -> None:
    room = Room(floor_area_m2=20.0, window_area_m2=window, wall_area_m2=wall)
    state = settle(room, outdoor, internal, solar, plant)
    air, surface, mass = nodal_steady_state(room, outdoor, internal, solar, plant)
    assert (state.air_c, state.surface_c, state.mass_c) == pytest.approx((air, surface, mass), abs=1e-6)


def test_a_step_of_internal_gains_is_the_capacitys_exact_discrete_response() -> None:
    """The air and surface nodes have no capacity, so the mass sees one conductance to the outside,
    H = H_tr_3 + H_tr_em, and Crank-Nicolson over an hour gives θ_n = θ_∞ + (θ_0 − θ_∞)·r^n with
    r = (C/3600 − H/2) / (C/3600 + H/2)."""
    room = ROOM
    h_1 = 1 / (1 / room.h_ve + 1 / room.h_tr_is)
    h_3 = 1 / (1 / (h_1 + room.h_tr_w) + 1 / room.h_tr_ms)
    h = h_3 + room.h_tr_em
    c = room.capacity_j_k / 3600
    r = (c - h / 2) / (c + h / 2)
    final = nodal_steady_state(room, 0.0, 800.0, 0.0)[2]
    mass = 0.0
    for n in range(1, 241):
        mass = hour(room, mass, 0.0, 800.0, 0.0).mass_end_c
        assert mass == pytest.approx(final * (1 - r**n), rel=1e-9)
    tau_h = room.capacity_j_k / h / 3600
    assert 20 < tau_h < 100   # a medium-weight office room: a day or two
    after_tau = 0.0
    for _ in range(round(tau_h)):
        after_tau = hour(room, after_tau, 0.0, 800.0, 0.0).mass_end_c
    assert after_tau / final == pytest.approx(1 - math.exp(-1), abs=0.01)


def test_the_ideal_plant_holds_the_nearer_setpoint_and_balances_the_losses() -> None:
    winter = ideal_hour(ROOM, 15.0, -5.0, 200.0, 0.0, 21.0, 25.0)
    summer = ideal_hour(ROOM, 26.0, 28.0, 600.0, 2500.0, 21.0, 25.0)
    between = ideal_hour(ROOM, 22.0, 18.0, 300.0, 200.0, 21.0, 26.0)
    assert winter[0].air_c == pytest.approx(21.0) and winter[1] > 0
    assert summer[0].air_c == pytest.approx(25.0) and summer[1] < 0
    assert between[1] == 0.0 and 21.0 <= between[0].air_c <= 26.0
    # in a steady state, what the plant and the gains put in leaves through the three paths to the outside
    hours = pd.Series(-5.0, index=pd.date_range("2026-01-01", periods=3000, freq="h", tz="UTC"))
    result = simulate(ROOM, hours, 200.0, 0.0, heating_setpoint_c=21.0, cooling_setpoint_c=25.0)
    heating = result["heating_w"].iloc[-1]
    air, surface, mass = nodal_steady_state(ROOM, -5.0, 200.0, 0.0, heating)
    assert air == pytest.approx(21.0, abs=1e-6) and result["air_c"].iloc[-1] == pytest.approx(21.0)
    losses = ROOM.h_ve * (air + 5) + ROOM.h_tr_w * (surface + 5) + ROOM.h_tr_em * (mass + 5)
    # ISO's share of the radiant gains that leaves straight through the glass (C.2, φ_st)
    through_glass = ROOM.h_tr_w / (H_MS_W_M2K * ROOM.inner_area_m2) * 0.5 * 200.0
    assert heating + 200.0 - through_glass == pytest.approx(losses, rel=1e-6)
    assert result["cooling_w"].max() == 0.0


def test_the_shade_lets_through_fc_of_the_lowered_part_of_the_window() -> None:
    full = transmitted_solar_w(500.0, 4.0, 0.6)
    assert full == pytest.approx(500 * 4 * 0.75 * 0.6)
    assert transmitted_solar_w(500.0, 4.0, 0.6, lowered_fraction=1.0, shade_factor_fc=0.1) == pytest.approx(full * 0.1)
    assert transmitted_solar_w(500.0, 4.0, 0.6, lowered_fraction=0.5, shade_factor_fc=0.1) == pytest.approx(full * 0.55)
