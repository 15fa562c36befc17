"""A room learnt from the building: two heat capacities, the air (with the furniture and the light
surfaces it warms within minutes) and the mass (floors, walls, ceilings, hours to days), and three
conductances, all identified from the room's own temperatures (shades.identify). A 5R1C network
has more parameters than a room's temperature record can tell apart; two capacities are what it
can, and what decides whether the morning's sun comes back as the afternoon's cooling.

    outdoor --ua_air-- air (C_air; internal gains, the solar share to the air, the plant)
    outdoor --ua_wall-- mass (C_mass; the solar share to the mass) --ua_mass-- air

Each hour is integrated exactly (zero-order hold: the hour's inputs held constant), so any
parameters the fit tries are stable. The plant is an ideal one like the 5R1C model's: none while
the air ends the hour between the setpoints, else exactly what holds the nearer one (the air's
end-of-hour temperature is linear in the plant's power). Units: °C, W, kJ/K, hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np

from shades.thermal import AIR_HEAT_CAPACITY_J_M3K, Room, RoomState

STEP_S = 3600.0
#: The air node's capacity as a multiple of the air's own: the furniture and light surfaces.
FURNISHED_AIR = 5.0


@dataclass(frozen=True)
class GreyBox:
    """The fitted parameters of one group's rooms, taken as one zone."""

    ua_air_w_k: float        # air to outdoor: windows, ventilation, infiltration
    ua_mass_w_k: float       # air to mass
    ua_wall_w_k: float       # mass to outdoor, through the opaque walls
    c_air_kj_k: float
    c_mass_kj_k: float
    solar_factor: float      # the transmitted solar gain the site file's window gives, scaled by this
    solar_to_mass: float     # share of the solar gain the mass absorbs (the rest warms the air)
    occupied_gain_w: float   # internal gains while occupied (people, equipment, light)
    unoccupied_gain_w: float

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    @classmethod
    def from_dict(cls, values: dict[str, float]) -> GreyBox:
        names = {f.name for f in fields(cls)}
        missing = names - set(values)
        if missing:
            raise ValueError(f"a room model lacks {', '.join(sorted(missing))}")
        return cls(**{name: float(values[name]) for name in names})

    @classmethod
    def like(cls, room: Room, occupied_gain_w: float, unoccupied_gain_w: float) -> GreyBox:
        """The two-capacity room nearest a 5R1C one: where a fit starts from (the site file's room)."""
        return cls(ua_air_w_k=room.h_ve + room.h_tr_w, ua_mass_w_k=1 / (1 / room.h_tr_is + 1 / room.h_tr_ms),
                   ua_wall_w_k=max(room.h_tr_em, 1.0),
                   c_air_kj_k=FURNISHED_AIR * AIR_HEAT_CAPACITY_J_M3K * room.floor_area_m2 * room.height_m / 1000,
                   c_mass_kj_k=room.capacity_j_k / 1000, solar_factor=1.0, solar_to_mass=0.5,
                   occupied_gain_w=occupied_gain_w, unoccupied_gain_w=max(unoccupied_gain_w, 1.0))

    @cached_property
    def discrete(self) -> tuple[np.ndarray, np.ndarray]:
        """(Ad, Bd): x_end = Ad x + Bd u over one hour, x = (air, mass), u = (outdoor °C, W into the
        air, W into the mass)."""
        ca, cm = self.c_air_kj_k * 1000, self.c_mass_kj_k * 1000
        a = np.array([[-(self.ua_air_w_k + self.ua_mass_w_k) / ca, self.ua_mass_w_k / ca],
                      [self.ua_mass_w_k / cm, -(self.ua_mass_w_k + self.ua_wall_w_k) / cm]])
        b = np.array([[self.ua_air_w_k / ca, 1 / ca, 0.0], [self.ua_wall_w_k / cm, 0.0, 1 / cm]])
        from scipy.linalg import expm  # here: the service that only plans with a fit imports it once, lazily

        augmented = np.zeros((5, 5))
        augmented[:2, :2], augmented[:2, 2:] = a, b
        held = expm(augmented * STEP_S)
        return held[:2, :2], held[:2, 2:]

    def inputs(self, outdoor_c, internal_w, solar_w, plant_w=0.0) -> np.ndarray:
        """u for one hour (or arrays of hours): what goes to the air and what to the mass."""
        solar = self.solar_factor * np.asarray(solar_w, dtype=float)
        return np.stack(np.broadcast_arrays(np.asarray(outdoor_c, dtype=float),
                                            np.asarray(internal_w, dtype=float) + (1 - self.solar_to_mass) * solar
                                            + np.asarray(plant_w, dtype=float),
                                            self.solar_to_mass * solar))

    def step(self, state: RoomState, outdoor_c: float, internal_w: float, solar_w: float,
             heating_c: float = -math.inf, cooling_c: float = math.inf) -> tuple[RoomState, float]:
        """One hour with the ideal plant: the state at its end and the plant's power (W, cooling
        negative)."""
        ad, bd = self.discrete
        free = ad @ np.array(state) + bd @ self.inputs(outdoor_c, internal_w, solar_w)
        if heating_c <= free[0] <= cooling_c:
            return RoomState(float(free[0]), float(free[1])), 0.0
        target = heating_c if free[0] < heating_c else cooling_c
        plant_w = (target - free[0]) / bd[0, 1]
        held = free + bd[:, 1] * plant_w
        return RoomState(float(held[0]), float(held[1])), float(plant_w)

    def at_rest(self, air_c: float) -> RoomState:
        """A room whose mass is at its air's temperature (what is assumed when nothing else is known)."""
        return RoomState(air_c, air_c)

    def mass_time_constant_h(self) -> float:
        return self.c_mass_kj_k * 1000 / (self.ua_mass_w_k + self.ua_wall_w_k) / 3600

    def describe(self) -> str:
        """The fit in a line a user can check against the building."""
        return (f"UA to outdoors {self.ua_air_w_k + 1 / (1 / self.ua_mass_w_k + 1 / self.ua_wall_w_k):.0f} W/K "
                f"(air {self.ua_air_w_k:.0f}, walls {self.ua_wall_w_k:.0f}), mass {self.c_mass_kj_k / 1000:.1f} MJ/K "
                f"(time constant {self.mass_time_constant_h():.0f} h), solar x{self.solar_factor:.2f} "
                f"({self.solar_to_mass:.0%} to the mass), gains {self.occupied_gain_w:.0f} W occupied, "
                f"{self.unoccupied_gain_w:.0f} W not")


def simulate_days(model: GreyBox, start: np.ndarray, outdoor_c: np.ndarray, internal_w: np.ndarray,
                  solar_w: np.ndarray, heating_c: np.ndarray, cooling_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Many days at once, each from its own start state: arrays are (days, hours), `start` is
    (days, 2). Returns the air at each hour's end and the plant's power (W, cooling negative)."""
    ad, bd = model.discrete
    x = np.array(start, dtype=float).T          # (2, days)
    days, hours = outdoor_c.shape
    air, plant = np.empty((days, hours)), np.empty((days, hours))
    for h in range(hours):
        free = ad @ x + bd @ model.inputs(outdoor_c[:, h], internal_w[:, h], solar_w[:, h])
        target = np.clip(free[0], heating_c[:, h], cooling_c[:, h])
        power = (target - free[0]) / bd[0, 1]
        x = free + np.outer(bd[:, 1], power)
        air[:, h], plant[:, h] = x[0], power
    return air, plant


def mass_following(model: GreyBox, air_c: np.ndarray, outdoor_c: np.ndarray, solar_w: np.ndarray,
                   mass_start_c: float) -> np.ndarray:
    """The mass's temperature at each hour's start, driven by the measured air (an observer: the
    model's mass follows the building's own air, so a prediction starts where the room is).
    Between two readings the air is taken as their mean."""
    from scipy.signal import lfilter

    k = model.ua_mass_w_k + model.ua_wall_w_k
    decay = math.exp(-k * STEP_S / (model.c_mass_kj_k * 1000))
    air_mean = (air_c[:-1] + air_c[1:]) / 2
    equilibrium = (model.ua_mass_w_k * air_mean + model.ua_wall_w_k * outdoor_c[:-1]
                   + model.solar_to_mass * model.solar_factor * solar_w[:-1]) / k
    drive = (1 - decay) * equilibrium
    following, _ = lfilter([1.0], [1.0, -decay], drive, zi=[decay * mass_start_c])
    return np.concatenate([[mass_start_c], following])

