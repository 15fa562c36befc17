"""Learn a group's rooms from the building's own record (shades.greybox), and say how well the
learnt room predicts days it was not fitted on.

The record is hourly: the room's air temperature at each hour's start, its heating and cooling
setpoints, the outdoor temperature, the solar gain through the windows with the blind where it
was (from the site file's glazing and the façade's irradiance, measured or forecast), and whether
people were in. Whether the plant holds a setpoint in an hour is not in any BMS point; it is read
from the record: in which hours of a working day and of a day off the air never ends above its
cooling setpoint (or below its heating one). The fit minimises the error of what matters to the
policy: the air temperature predicted a whole day ahead from midnight, with the mass where the
building's own air has led it (`greybox.mass_following`). The last days are held out: the error
on them is the model's stated bound, and only a room within `VALID_RMSE_K` is let decide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from shades.foresight import UNOCCUPIED_GAIN_SHARE, room_behind
from shades.greybox import GreyBox, mass_following, simulate_days

#: The held-out days' 24-hour-ahead error a room model must meet before it decides (K, RMSE).
VALID_RMSE_K = 0.5
MIN_TRAINING_DAYS = 14
HELD_OUT_DAYS = 7
#: The first days only bring the observed mass to where the building's is.
WARM_UP_DAYS = 2
#: The air ending an hour this far past a setpoint: the plant does not hold it then.
HELD_TOLERANCE_K = 0.4
#: The record's columns (hourly, index = the hours' starts, tz-aware).
COLUMNS = ("air_c", "heating_c", "cooling_c", "outdoor_c", "solar_w", "occupied")
DAY_KINDS = ("workday", "day off")


@dataclass(frozen=True)
class PlantHours:
    """The hours (0-23, local) of each day kind in which the plant holds the heating and the
    cooling setpoint."""

    heated: dict[str, tuple[int, ...]]
    cooled: dict[str, tuple[int, ...]]

    def setpoints(self, kind: str, heating_c: np.ndarray, cooling_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One day's setpoints where the plant holds them, ±inf where it does not."""
        hours = np.arange(len(heating_c))
        heated, cooled = np.isin(hours, self.heated.get(kind, ())), np.isin(hours, self.cooled.get(kind, ()))
        return np.where(heated, heating_c, -np.inf), np.where(cooled, cooling_c, np.inf)

    def describe(self) -> str:
        def spans(hours: tuple[int, ...]) -> str:
            if not hours:
                return "never"
            if len(hours) == 24:
                return "all day"
            runs, start = [], hours[0]
            for a, b in zip(hours, (*hours[1:], None), strict=True):
                if b != a + 1:
                    runs.append(f"{start:02d}-{a + 1:02d}")
                    start = b if b is not None else start
            return ", ".join(runs)
        return "; ".join(f"{what} {kind} {spans(hours[kind])}" for what, hours in (("cooled", self.cooled),
                                                                               ("heated", self.heated))
                         for kind in DAY_KINDS if kind in hours)

    def to_dict(self) -> dict:
        return {"heated": {k: list(v) for k, v in self.heated.items()},
                "cooled": {k: list(v) for k, v in self.cooled.items()}}

    @classmethod
    def from_dict(cls, values: dict) -> PlantHours:
        return cls({k: tuple(int(h) for h in v) for k, v in values["heated"].items()},
                   {k: tuple(int(h) for h in v) for k, v in values["cooled"].items()})


@dataclass(frozen=True)
class RoomFit:
    """A fitted room with its validation: what `esus shades rooms` shows and the policy trusts."""

    model: GreyBox | None
    plant: PlantHours | None
    rmse_k: float                  # 24-hour-ahead error on the held-out days
    worst_k: float                 # the worst hour's error on them
    worst_at: str                  # when that was (ISO)
    training_days: int
    held_out_days: int
    reason: str                    # why the room is (not) validated, in a line for people
    fitted_at: str = ""
    held_out: pd.DataFrame = field(default_factory=pd.DataFrame, compare=False)  # measured vs modelled

    @property
    def validated(self) -> bool:
        return self.model is not None and self.rmse_k <= VALID_RMSE_K

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict() if self.model else None,
                "plant": self.plant.to_dict() if self.plant else None,
                "rmse_k": self.rmse_k, "worst_k": self.worst_k, "worst_at": self.worst_at,
                "training_days": self.training_days, "held_out_days": self.held_out_days, "reason": self.reason,
                "fitted_at": self.fitted_at}

    @classmethod
    def from_dict(cls, values: dict) -> RoomFit:
        return cls(GreyBox.from_dict(values["model"]) if values.get("model") else None,
                   PlantHours.from_dict(values["plant"]) if values.get("plant") else None,
                   float(values["rmse_k"]), float(values["worst_k"]), str(values["worst_at"]),
                   int(values["training_days"]), int(values["held_out_days"]), str(values["reason"]),
                   str(values.get("fitted_at", "")))


def site_prior(window_area_m2: float, floor_area_m2: float | None, internal_gains_w_m2: float) -> GreyBox:
    """Where a fit starts: the room the site file describes (shades.foresight.room_behind)."""
    room = room_behind(window_area_m2, floor_area_m2)
    gains_w = internal_gains_w_m2 * room.floor_area_m2
    return GreyBox.like(room, gains_w, UNOCCUPIED_GAIN_SHARE * gains_w)


def not_fitted(reason: str, training_days: int = 0) -> RoomFit:
    return RoomFit(None, None, math.inf, math.inf, "", training_days, 0, reason)


def day_kind(occupied: pd.Series) -> pd.Series:
    """Each hour's day kind: a working day if people are in at any hour of it."""
    by_day = occupied.groupby(occupied.index.date).transform("any")
    return by_day.map({True: DAY_KINDS[0], False: DAY_KINDS[1]})


def plant_hours(record: pd.DataFrame) -> PlantHours:
    """When the plant holds each setpoint, read from the record: in an hour of a day kind where the
    air never ended the hour past a setpoint by more than `HELD_TOLERANCE_K`. (Where the air never
    came near, holding or not predicts the same.)"""
    end_air = record["air_c"].shift(-1)
    kind, hour = day_kind(record["occupied"].astype(bool)), record.index.hour
    over = (end_air > record["cooling_c"] + HELD_TOLERANCE_K).groupby([kind, hour]).any()
    under = (end_air < record["heating_c"] - HELD_TOLERANCE_K).groupby([kind, hour]).any()
    cooled = {k: tuple(int(h) for h in range(24) if not over.get((k, h), False)) for k in set(kind)}
    heated = {k: tuple(int(h) for h in range(24) if not under.get((k, h), False)) for k in set(kind)}
    return PlantHours(heated, cooled)


@dataclass
class _Days:
    """Whole local days of the record as (days, 24) arrays, and the measured air at each hour's end."""

    starts: pd.DatetimeIndex
    kinds: list[str]
    first_row: np.ndarray          # the row of each day's first hour in the record
    outdoor: np.ndarray
    internal_occupied: np.ndarray  # bool
    solar: np.ndarray
    heating: np.ndarray
    cooling: np.ndarray
    measured_end: np.ndarray

    @classmethod
    def of(cls, record: pd.DataFrame, plant: PlantHours) -> _Days:
        local_days = pd.Series(record.index.date, index=record.index)
        kinds = day_kind(record["occupied"].astype(bool))
        rows, starts, kind_of = [], [], []
        position = np.arange(len(record))
        for hours in local_days.groupby(local_days.to_numpy()).groups.values():
            at = position[record.index.get_indexer(hours)]
            complete = len(at) == 24 and at[-1] + 1 < len(record) and np.all(np.diff(at) == 1)
            if complete and not record.iloc[at[0]:at[-1] + 2].isna().any().any():
                rows.append(at[0])
                starts.append(record.index[at[0]])
                kind_of.append(str(kinds.iloc[at[0]]))
        take = np.array(rows, dtype=int)[:, None] + np.arange(24) if rows else np.empty((0, 24), dtype=int)

        def grid(column: str) -> np.ndarray:
            return record[column].to_numpy(float)[take]

        heating, cooling = grid("heating_c"), grid("cooling_c")
        held = [plant.setpoints(k, heating[i], cooling[i]) for i, k in enumerate(kind_of)]
        return cls(pd.DatetimeIndex(starts), kind_of, np.array(rows, dtype=int), grid("outdoor_c"),
                   grid("occupied") > 0.5, grid("solar_w"),
                   np.array([h for h, _ in held]).reshape(-1, 24), np.array([c for _, c in held]).reshape(-1, 24),
                   record["air_c"].to_numpy(float)[take + 1])

    def subset(self, which: np.ndarray) -> _Days:
        return _Days(self.starts[which], [self.kinds[i] for i in which], self.first_row[which], self.outdoor[which],
                     self.internal_occupied[which], self.solar[which], self.heating[which], self.cooling[which],
                     self.measured_end[which])


def predict(model: GreyBox, record: pd.DataFrame, days: _Days) -> np.ndarray:
    """Each day's air at the end of every hour, predicted from its midnight: the air measured then,
    the mass as the record's air has led it (across a gap, as if the air had gone straight from
    the reading before it to the one after)."""
    air = record["air_c"].to_numpy(float)
    mass = mass_following(model, air, record["outdoor_c"].to_numpy(float), record["solar_w"].to_numpy(float),
                          float(air[0]))
    start = np.column_stack([air[days.first_row], mass[days.first_row]])
    internal = np.where(days.internal_occupied, model.occupied_gain_w, model.unoccupied_gain_w)
    predicted, _ = simulate_days(model, start, days.outdoor, internal, days.solar, days.heating, days.cooling)
    return predicted


#: The parameters the fit moves, in the order of its vector; positive ones on a log scale.
_POSITIVE = ("ua_air_w_k", "ua_mass_w_k", "ua_wall_w_k", "c_air_kj_k", "c_mass_kj_k", "solar_factor",
             "occupied_gain_w", "unoccupied_gain_w")
#: How far from the prior (the site file's room) the fit may go, as a factor either way.
_SPAN = {"ua_air_w_k": 10, "ua_mass_w_k": 20, "ua_wall_w_k": 20, "c_air_kj_k": 30, "c_mass_kj_k": 10,
         "solar_factor": 4, "occupied_gain_w": 10, "unoccupied_gain_w": 30}


def _vector(model: GreyBox) -> np.ndarray:
    return np.array([*(math.log(max(getattr(model, n), 1e-3)) for n in _POSITIVE), model.solar_to_mass])


def _model(x: np.ndarray) -> GreyBox:
    values = {name: float(v) for name, v in zip(_POSITIVE, np.exp(x[:len(_POSITIVE)]), strict=True)}
    return GreyBox(**values, solar_to_mass=float(x[-1]))


def fit_room(record: pd.DataFrame, prior: GreyBox, *, held_out_days: int = HELD_OUT_DAYS,
             now: datetime | None = None) -> RoomFit:
    """Fit `prior`'s parameters to the record's days but the last `held_out_days`, and validate on
    those: the stated error bound. `record` has COLUMNS, hourly, index the hours' starts (local)."""
    missing = [c for c in COLUMNS if c not in record.columns]
    if missing:
        raise ValueError(f"the room record lacks {', '.join(missing)}")
    record = record.loc[:, list(COLUMNS)].astype(float)
    plant = plant_hours(record)
    days = _Days.of(record, plant)          # whole days only: a day with a gap is neither fitted nor judged
    record = record.interpolate(limit_direction="both").fillna(0.0)
    usable = np.flatnonzero(days.first_row >= WARM_UP_DAYS * 24)
    training, held_out = usable[:-held_out_days], usable[-held_out_days:]
    if len(training) < MIN_TRAINING_DAYS or len(held_out) < held_out_days:
        return not_fitted(f"{len(usable)} whole days of room record, {MIN_TRAINING_DAYS + held_out_days} needed "
                          f"(air temperature, setpoints, outdoor temperature and façade irradiance each hour)",
                          len(usable))
    train = days.subset(training)
    lower = _vector(prior) - np.log([_SPAN[n] for n in _POSITIVE] + [math.e]) * np.r_[np.ones(len(_POSITIVE)), 0]
    upper = _vector(prior) + np.log([_SPAN[n] for n in _POSITIVE] + [math.e]) * np.r_[np.ones(len(_POSITIVE)), 0]
    lower[-1], upper[-1] = 0.05, 0.95

    def residuals(x: np.ndarray) -> np.ndarray:
        return (predict(_model(x), record, train) - train.measured_end).ravel()

    from scipy.optimize import least_squares  # here: only a fit pays for the import

    best = None
    for mass_scale in (1.0, 3.0, 0.3):   # the mass is the parameter a local search most often misses
        start = prior.to_dict() | {"c_mass_kj_k": prior.c_mass_kj_k * mass_scale}
        x0 = np.clip(_vector(GreyBox.from_dict(start)), lower + 1e-9, upper - 1e-9)
        result = least_squares(residuals, x0, bounds=(lower, upper), x_scale=1.0, max_nfev=200)
        if best is None or result.cost < best.cost:
            best = result
    assert best is not None
    model = _model(best.x)
    check = days.subset(held_out)
    error = predict(model, record, check) - check.measured_end
    rmse = float(np.sqrt(np.mean(error ** 2)))
    worst = np.unravel_index(int(np.argmax(np.abs(error))), error.shape)
    worst_at = check.starts[worst[0]] + pd.Timedelta(hours=int(worst[1]) + 1)
    validated = rmse <= VALID_RMSE_K
    reason = (f"{'validated' if validated else 'not validated'}: a day ahead it misses the held-out "
              f"{len(held_out)} days by {rmse:.2f} K (RMSE; at most {VALID_RMSE_K:g} K needed), the worst hour by "
              f"{float(np.abs(error).max()):.1f} K")
    hours = pd.DatetimeIndex([start + pd.Timedelta(hours=h) for start in check.starts for h in range(1, 25)])
    shown = pd.DataFrame({"measured_c": check.measured_end.ravel(), "modelled_c": (error + check.measured_end).ravel()},
                         index=hours)
    return RoomFit(model, plant, rmse, float(np.abs(error).max()), worst_at.isoformat(), len(training),
                   len(held_out), reason, (now or datetime.now().astimezone()).isoformat(timespec="seconds"), shown)
