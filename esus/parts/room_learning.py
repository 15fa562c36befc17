"""Each shade group's rooms learnt from the building's record (shades.identify), every night in the
training process (never on the event loop), kept with their validation, and handed to the shades:
a room whose fit meets its bound on the held-out days lets the room forecast decide; any other
stays with the VDI 3813 rule, and the refit each night on the newest days is what takes a room
whose predictions have started to miss back to the rule.

The record: the rooms' air temperatures and setpoints (the BMS points of the group's rooms), the
outdoor temperature (the BMS thermometer, else what the weather forecast knew), the façade's
irradiance and the blind's position (kept by the shades every 5 minutes), the office hours.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from bms_wrapper.poller import PointRef
from esus.parts.bms import series_name
from esus.parts.outdoor import TEMPERATURE_SERIES
from esus.parts.training_job import in_own_process
from esus.runtime.supervisor import Health
from esus.settings.config import Settings
from esus.settings.site import ShadeGroup, ShadeSettings
from esus.state.files import StateFiles
from esus.state.store import HistoryStore
from esus.state.telemetry import Telemetry
from shades.identify import (
    HELD_OUT_DAYS,
    MIN_TRAINING_DAYS,
    WARM_UP_DAYS,
    RoomFit,
    fit_room,
    not_fitted,
    site_prior,
)
from shades.planner import occupied_at
from shades.thermal import transmitted_solar_w

log = logging.getLogger(__name__)

PART = "room learning"
#: the libraries whose thread pools a room's fit uses (SciPy's LAPACK), limited to one thread
ROOM_FIT_LIBRARIES = ("scipy.linalg", "scipy.optimize", "scipy.signal")
#: The record a fit reads: four weeks and the days the mass needs to settle, and a spare.
RECORD_DAYS = 35
#: The shades keep the façade's irradiance and the blind's position this often.
KEEP_EVERY_MINUTES = 5
STATE_KEY = "shades.room.{number}"


def poa_series(group: str) -> str:
    return f"shade.{group}.poa_wm2"


def position_series(group: str) -> str:
    return f"shade.{group}.position_pct"


@dataclass(frozen=True)
class RoomSeries:
    """The store's series a group's record is read from."""

    temperature: tuple[str, ...]   # the rooms' air temperatures: the zone is their mean
    heating: tuple[str, ...]
    cooling: tuple[str, ...]
    outdoor: tuple[str, ...]       # in order of preference


def points_by_room(settings: Settings, points: Sequence[PointRef]) -> dict[int, list[tuple[str, dict[str, str]]]]:
    """Per group, its rooms' point ids by kind: the site file's points, or those the BMS adapter
    chose by filter once it has listed them."""
    by_room: dict[str, dict[str, str]] = {}
    for p in points:
        by_room.setdefault(p.room, {})[p.kind] = p.point_id
    return {g.number: [(room, by_room.get(room, {})) for room in g.rooms] for g in settings.site.shades.groups}


def room_series_of(settings: Settings, points: Sequence[PointRef]) -> dict[int, RoomSeries]:
    """Per group, the store's series its rooms are learnt from."""
    site = settings.site
    outdoor = [series_name(p) for p in dict.fromkeys((site.shades.outdoor_temperature_point,
                                                      site.outdoor_temperature_point)) if p is not None]
    found = {}
    for number, rooms in points_by_room(settings, points).items():
        def kind(name: str, rooms: list[tuple[str, dict[str, str]]] = rooms) -> tuple[str, ...]:
            return tuple(series_name(kinds[name]) for _, kinds in rooms if name in kinds)
        found[number] = RoomSeries(kind("temperature"), kind("setpoint_heating"), kind("setpoint_cooling"),
                                   (*outdoor, TEMPERATURE_SERIES))
    return found


def _series(store: HistoryStore, name: str, start_s: int, end_s: int) -> pd.Series:
    times, values = store.range(name, start_s, end_s)
    return pd.Series(values, index=pd.to_datetime(times, unit="s", utc=True), dtype=float)


def _at_hours(store: HistoryStore, names: Sequence[str], hours: pd.DatetimeIndex, start_s: int, end_s: int,
              hold: bool = False) -> pd.Series:
    """The mean over `names` at each hour's start: 5-minute means, a gap of up to half an hour
    bridged (a setpoint, `hold`, carried until it changes: many BMSs log one only then)."""
    found = []
    for name in names:
        s = _series(store, name, start_s, end_s)
        if s.empty:
            continue
        five = s.resample("5min").mean()
        if hold:
            found.append(five.dropna().reindex(five.dropna().index.union(hours)).ffill().reindex(hours))
        else:
            found.append(five.interpolate(limit=6, limit_area="inside").reindex(hours))
    return pd.concat(found, axis=1).mean(axis=1) if found else pd.Series(np.nan, index=hours)


def room_record(store: HistoryStore, group: ShadeGroup, shades: ShadeSettings, tz: ZoneInfo, series: RoomSeries,
                start_s: int, end_s: int) -> pd.DataFrame:
    """The group's hours between two instants (shades.identify.COLUMNS), from the store."""
    hours = pd.date_range(pd.Timestamp(start_s, unit="s", tz="UTC").ceil("h"),
                          pd.Timestamp(end_s, unit="s", tz="UTC").floor("h"), freq="h", inclusive="left")
    air = _at_hours(store, series.temperature, hours, start_s, end_s)
    heating = _at_hours(store, series.heating, hours, start_s, end_s, hold=True).fillna(group.heating_setpoint_c)
    cooling = _at_hours(store, series.cooling, hours, start_s, end_s, hold=True).fillna(group.cooling_setpoint_c)
    outdoor = pd.Series(np.nan, index=hours)
    for name in series.outdoor:
        hourly = _series(store, name, start_s, end_s).resample("1h").mean().reindex(hours)
        outdoor = outdoor.fillna(hourly)
    poa = _series(store, poa_series(group.name), start_s, end_s).resample(f"{KEEP_EVERY_MINUTES}min").mean()
    lowered = _series(store, position_series(group.name), start_s, end_s).resample(
        f"{KEEP_EVERY_MINUTES}min").mean() / 100.0
    gain = pd.Series(np.asarray(transmitted_solar_w(poa, group.window_area_m2, group.g_value,
                                                    lowered.reindex(poa.index), group.shade_factor_fc)),
                     index=poa.index, dtype=float)
    solar = gain.resample("1h").mean().reindex(hours) if len(gain) else pd.Series(np.nan, index=hours)
    local = hours.tz_convert(tz)
    occupied = [float(occupied_at(shades, t.to_pydatetime())) for t in local]
    return pd.DataFrame({"air_c": air.to_numpy(), "heating_c": heating.to_numpy(), "cooling_c": cooling.to_numpy(),
                         "outdoor_c": outdoor.to_numpy(), "solar_w": solar.to_numpy(), "occupied": occupied},
                        index=local)


def fit_group(store: HistoryStore, group: ShadeGroup, shades: ShadeSettings, tz: ZoneInfo, series: RoomSeries,
              until_s: int, now: datetime | None = None) -> RoomFit:
    """One group's fit on the `RECORD_DAYS` before `until_s`."""
    if not series.temperature:
        return not_fitted("no room temperature: give the group's rooms (rooms = [...]) and their temperature "
                          "points in the site file")
    record = room_record(store, group, shades, tz, series, until_s - RECORD_DAYS * 86400, until_s)
    prior = site_prior(group.window_area_m2, group.floor_area_m2, group.internal_gains_w_m2)
    return fit_room(record, prior, now=now)


def fit_rooms_from_store(db_path: str, shades: ShadeSettings, tz_name: str, series: dict[int, RoomSeries],
                         until_s: int) -> dict[int, dict]:
    """In the training process: every group fitted; a group that fails is that group's (said in
    its reason), never the others'."""
    from forecast.estimators import one_core

    tz, fits = ZoneInfo(tz_name), {}
    with one_core(ROOM_FIT_LIBRARIES), HistoryStore(Path(db_path), readonly=True) as store:
        for group in shades.groups:
            started = time.monotonic()
            try:
                fit = fit_group(store, group, shades, tz, series[group.number], until_s,
                                now=datetime.fromtimestamp(until_s, tz))
            except Exception as exc:  # noqa: BLE001 - one group's record or fit is that group's fault
                fit = not_fitted(f"the fit failed ({type(exc).__name__}: {exc})")
            fits[group.number] = fit.to_dict() | {"wall_s": time.monotonic() - started}
    return fits


def kept_fits(store: HistoryStore, shades: ShadeSettings) -> dict[int, RoomFit]:
    """The fits the service kept (the newest night's), by group; an unreadable one is left out, said."""
    fits = {}
    for g in shades.groups:
        kept = store.get_state(STATE_KEY.format(number=g.number))
        if isinstance(kept, dict):
            try:
                fits[g.number] = RoomFit.from_dict(kept)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("shade %s: the kept room model is unreadable (%s); the rule decides until tonight's fit",
                            g.name, exc)
    return fits


def kept_fits_in(settings: Settings) -> dict[int, RoomFit]:
    """The fits the service kept, read from its state directory by another process (the doctor,
    `esus shades plan`); none when there is no store yet or it cannot be read (`esus doctor`'s
    store check says why)."""
    path = StateFiles(settings.state_dir).history
    if not path.exists():
        return {}
    try:
        with HistoryStore(path, readonly=True) as store:
            return kept_fits(store, settings.site.shades)
    except (sqlite3.Error, ValueError) as exc:
        log.warning("the learnt rooms cannot be read (%s): the rule decides for every group", exc)
        return {}


class RoomLearning:
    """The nightly fit in the service: the fits kept in the store's state, given to the shades,
    written to InfluxDB (`shade_room`), a change of a group's mode said once."""

    def __init__(self, shades: ShadeSettings, tz: ZoneInfo, store: HistoryStore, telemetry: Telemetry,
                 health: Health, series: Callable[[], dict[int, RoomSeries]],
                 on_fit: Callable[[int, RoomFit], None], timeout_s: float = 900.0) -> None:
        self.shades, self.tz, self.store, self.telemetry, self.health = shades, tz, store, telemetry, health
        self.series, self.on_fit, self.timeout_s = series, on_fit, timeout_s
        self.job = fit_rooms_from_store   # module-level so the spawned process can import it
        self.fits = kept_fits(store, shades)
        for number, fit in self.fits.items():
            on_fit(number, fit)

    def wanted_now(self) -> bool:
        """At a start: a group has no kept fit, and a record long enough for one (a site's first
        weeks, or a store carried over from a BMS backfill) need not wait for the night."""
        needed_s = (MIN_TRAINING_DAYS + HELD_OUT_DAYS + WARM_UP_DAYS) * 86400
        for number, series in self.series().items():
            span = self.store.span(series.temperature[0]) if series.temperature else None
            if number not in self.fits and span is not None and (span[1] - span[0]).total_seconds() >= needed_s:
                return True
        return False

    async def nightly(self, due: datetime) -> None:
        try:
            results = await in_own_process(self.job, str(self.store.path), self.shades, self.tz.key, self.series(),
                                           int(due.timestamp()), timeout_s=self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - a crashed, hung or failing job keeps yesterday's fits
            self.health.failed(PART, f"the room fit failed ({type(exc).__name__}: "
                                     f"{str(exc) or f'no result within {self.timeout_s:g} s'}); yesterday's "
                                     "room models stay, tried again tomorrow night")
            return
        self.health.recovered(PART)
        for g in self.shades.groups:
            values = results.get(g.number)
            if values is None:
                continue
            wall_s = values.pop("wall_s", 0.0)
            fit = RoomFit.from_dict(values)
            self.keep(g, fit, due, wall_s)

    def keep(self, group: ShadeGroup, fit: RoomFit, at: datetime, wall_s: float = 0.0) -> None:
        before = self.fits.get(group.number)
        if before is None or before.validated != fit.validated:
            log.info("shade %s: %s; %s", group.name, fit.reason,
                     "the room forecast decides" if fit.validated else "the VDI 3813 rule decides")
        self.fits[group.number] = fit
        self.store.set_state(STATE_KEY.format(number=group.number), fit.to_dict())
        self.on_fit(group.number, fit)
        fields: dict[str, Any] = {"validated": int(fit.validated), "training_days": fit.training_days,
                                  "held_out_days": fit.held_out_days, "reason": fit.reason, "wall_s": wall_s}
        if fit.model is not None:
            fields |= {"rmse_k": fit.rmse_k, "worst_k": fit.worst_k, **fit.model.to_dict(),
                       "mass_time_constant_h": fit.model.mass_time_constant_h()}
        self.telemetry.record("shade_room", fields, at, {"group": group.name})
