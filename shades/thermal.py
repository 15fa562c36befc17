"""A room's air temperature and its heating and cooling need, hour by hour: the 5R1C network of
ISO 13790:2008 (the simple hourly method, Annex C; its successor ISO 52016-1 keeps the idea), with an
ideal plant that holds the room between its heating and cooling setpoints. It judges shading by what
it does to a room: the cooling energy and peak it saves, the heating it costs.

The network, all conductances in W/K:

    outdoor --H_ve-------------------------------- air (φ_ia, φ_HC)
    outdoor --H_tr_w--------- surface (φ_st) --H_tr_is-- air
    outdoor --H_tr_em-- mass (φ_m, C_m) --H_tr_ms-- surface

Internal gains go half to the air, half as radiation to the surfaces and the mass; transmitted solar
gains to the surfaces and the mass, in proportion to their areas (Annex C.2). The mass node is
integrated with Crank-Nicolson over one-hour steps (C.3). Ventilation air enters at the outdoor
temperature. Units: °C, W, J/K, m², hours."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np
import pandas as pd

STEP_S = 3600.0
H_IS_W_M2K = 3.45          # air to surface heat transfer coefficient, per m² of inner surface
H_MS_W_M2K = 9.1           # surface to mass
AIR_HEAT_CAPACITY_J_M3K = 1200.0
#: ISO 13790 Table 12, "medium" construction: effective mass area and internal heat capacity per m² of floor
MEDIUM_MASS_AREA_PER_FLOOR = 2.5
MEDIUM_CAPACITY_J_M2K = 165_000.0
INNER_AREA_PER_FLOOR = 4.5  # Λ_at: area of all surfaces facing the room, per m² of floor
TEST_POWER_W_M2 = 10.0      # the plant's test power of C.4.2


class RoomState(NamedTuple):
    """A room model's air and mass temperatures (°C) at an instant."""

    air_c: float
    mass_c: float


class RoomModel(Protocol):
    """What the policy's look ahead and the plan need of a room: this 5R1C room, or one learnt
    from the building (shades.greybox)."""

    def step(self, state: RoomState, outdoor_c: float, internal_w: float, solar_w: float,
             heating_c: float = -math.inf, cooling_c: float = math.inf) -> tuple[RoomState, float]: ...

    def at_rest(self, air_c: float) -> RoomState: ...


@dataclass(frozen=True)
class Room:
    """A room, or the rooms behind one façade taken as one zone."""

    floor_area_m2: float
    window_area_m2: float
    wall_area_m2: float = 0.0        # opaque outer wall, windows not included
    window_u_w_m2k: float = 1.1      # double glazing, warm edge
    wall_u_w_m2k: float = 0.3
    height_m: float = 2.8
    air_changes_per_h: float = 0.5   # infiltration and ventilation, as outdoor air
    mass_area_per_floor: float = MEDIUM_MASS_AREA_PER_FLOOR
    capacity_j_m2k: float = MEDIUM_CAPACITY_J_M2K

    @property
    def h_ve(self) -> float:
        return AIR_HEAT_CAPACITY_J_M3K * self.air_changes_per_h * self.floor_area_m2 * self.height_m / 3600

    @property
    def h_tr_w(self) -> float:
        return self.window_u_w_m2k * self.window_area_m2

    @property
    def inner_area_m2(self) -> float:
        return INNER_AREA_PER_FLOOR * self.floor_area_m2

    @property
    def mass_area_m2(self) -> float:
        return self.mass_area_per_floor * self.floor_area_m2

    @property
    def h_tr_is(self) -> float:
        return H_IS_W_M2K * self.inner_area_m2

    @property
    def h_tr_ms(self) -> float:
        return H_MS_W_M2K * self.mass_area_m2

    @property
    def h_tr_em(self) -> float:
        """Outdoor to mass, through the opaque wall (its conductance less the surface-to-mass part)."""
        h_op = self.wall_u_w_m2k * self.wall_area_m2
        return 0.0 if h_op <= 0 else 1 / (1 / h_op - 1 / self.h_tr_ms)

    @property
    def capacity_j_k(self) -> float:
        return self.capacity_j_m2k * self.floor_area_m2

    def step(self, state: RoomState, outdoor_c: float, internal_w: float, solar_w: float,
             heating_c: float = -math.inf, cooling_c: float = math.inf) -> tuple[RoomState, float]:
        """One hour with the ideal plant (RoomModel): the state at its end and the plant's power."""
        temps, plant_w = ideal_hour(self, state.mass_c, outdoor_c, internal_w, solar_w, heating_c, cooling_c)
        return RoomState(temps.air_c, temps.mass_end_c), plant_w

    def at_rest(self, air_c: float) -> RoomState:
        return RoomState(air_c, air_c)


class Temperatures(NamedTuple):
    air_c: float
    surface_c: float
    mass_c: float      # the mean over the hour
    mass_end_c: float  # at the hour's end: the next hour starts from it


def hour(room: Room, mass_start_c: float, outdoor_c: float, internal_w: float, solar_w: float,
         plant_w: float = 0.0) -> Temperatures:
    """One hour of the network with `plant_w` of heating (negative: cooling) into the air (C.3)."""
    h_1 = 1 / (1 / room.h_ve + 1 / room.h_tr_is)
    h_2 = h_1 + room.h_tr_w
    h_3 = 1 / (1 / h_2 + 1 / room.h_tr_ms)
    gains = 0.5 * internal_w + solar_w
    to_air = 0.5 * internal_w
    to_mass = room.mass_area_m2 / room.inner_area_m2 * gains
    to_surface = (1 - room.mass_area_m2 / room.inner_area_m2 - room.h_tr_w / (H_MS_W_M2K * room.inner_area_m2)) * gains
    mass_total_w = (to_mass + room.h_tr_em * outdoor_c
                    + h_3 * (to_surface + room.h_tr_w * outdoor_c + h_1 * ((to_air + plant_w) / room.h_ve + outdoor_c))
                    / h_2)
    c = room.capacity_j_k / STEP_S
    mass_end = (mass_start_c * (c - 0.5 * (h_3 + room.h_tr_em)) + mass_total_w) / (c + 0.5 * (h_3 + room.h_tr_em))
    mass = (mass_start_c + mass_end) / 2
    surface = ((room.h_tr_ms * mass + to_surface + room.h_tr_w * outdoor_c
                + h_1 * (outdoor_c + (to_air + plant_w) / room.h_ve)) / (room.h_tr_ms + room.h_tr_w + h_1))
    air = (room.h_tr_is * surface + room.h_ve * outdoor_c + to_air + plant_w) / (room.h_tr_is + room.h_ve)
    return Temperatures(air, surface, mass, mass_end)


def ideal_hour(room: Room, mass_start_c: float, outdoor_c: float, internal_w: float, solar_w: float,
               heating_setpoint_c: float, cooling_setpoint_c: float) -> tuple[Temperatures, float]:
    """One hour with the plant an ideal one: none where the free-running air stays between the
    setpoints, else exactly the heating or cooling (negative) that holds the nearer setpoint
    (C.4.2: the air temperature is linear in the plant's power)."""
    free = hour(room, mass_start_c, outdoor_c, internal_w, solar_w)
    if heating_setpoint_c <= free.air_c <= cooling_setpoint_c:
        return free, 0.0
    test_w = TEST_POWER_W_M2 * room.floor_area_m2
    tested = hour(room, mass_start_c, outdoor_c, internal_w, solar_w, test_w)
    target = heating_setpoint_c if free.air_c < heating_setpoint_c else cooling_setpoint_c
    plant_w = test_w * (target - free.air_c) / (tested.air_c - free.air_c)
    return hour(room, mass_start_c, outdoor_c, internal_w, solar_w, plant_w), plant_w


def simulate(room: Room, outdoor_c: pd.Series, internal_w: pd.Series | float, solar_w: pd.Series | float,
             heating_setpoint_c: float = float("-inf"), cooling_setpoint_c: float = float("inf"),
             mass_start_c: float | None = None) -> pd.DataFrame:
    """Hour by hour over `outdoor_c`'s index: air_c, heating_w, cooling_w (both ≥ 0). The mass
    starts at the first hour's outdoor temperature unless told (run a warm-up week before the
    hours that count). The default setpoints leave the room free-running."""
    index = outdoor_c.index
    internal = np.broadcast_to(np.asarray(internal_w, dtype=float), len(index))
    solar = np.broadcast_to(np.asarray(solar_w, dtype=float), len(index))
    mass = float(outdoor_c.iloc[0]) if mass_start_c is None else mass_start_c
    air, plant = np.empty(len(index)), np.empty(len(index))
    for i, outdoor in enumerate(outdoor_c.to_numpy(dtype=float)):
        state, plant[i] = ideal_hour(room, mass, outdoor, internal[i], solar[i], heating_setpoint_c,
                                     cooling_setpoint_c)
        air[i], mass = state.air_c, state.mass_end_c
    return pd.DataFrame({"air_c": air, "heating_w": np.maximum(plant, 0.0), "cooling_w": np.maximum(-plant, 0.0)},
                        index=index)


def transmitted_solar_w(facade_wm2: pd.Series | float, window_area_m2: float, g_value: float,
                        lowered_fraction: pd.Series | float = 0.0, shade_factor_fc: float = 1.0,
                        frame_fraction: float = 0.25) -> pd.Series | float:
    """Solar gain through the glazing, W: the façade irradiance on the glass (less the frame),
    times g, times the shade's Fc for the lowered fraction of the window."""
    let_through = 1 - lowered_fraction * (1 - shade_factor_fc)
    return facade_wm2 * window_area_m2 * (1 - frame_fraction) * g_value * let_through
