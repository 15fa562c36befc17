"""The outdoor temperature the power forecast takes: its target hour's, as known when it is made.

Live, each minute: the weather forecast's for the target hour while the forecast is fresh, else
the BMS outdoor thermometer's latest reading (over one hour a fair forecast of itself), as the
site file's `[forecast] outdoor_temperature` allows. The value is kept in the history store at the
minute it was known, so the nightly training learns from exactly what the live forecast had; for
the time before esus kept any, the BMS point's own history stands in. A missing value is never
guessed: the model forecasts from power alone (`forecast.model`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np

from esus.parts.bms import series_name
from esus.settings.site import Site
from esus.state.store import HistoryStore
from forecast.exogenous import known_at_slots
from forecast.series import Grid
from shades.weather import Weather

log = logging.getLogger(__name__)

#: what the forecast knew, at the minute it knew it (°C)
TEMPERATURE_SERIES = "forecast.outdoor_temperature_c"
BMS_MAX_AGE = timedelta(minutes=20)


def history_point(site: Site) -> str | None:
    """The BMS point whose history stands in where nothing was kept (None: the mode allows none)."""
    return site.outdoor_temperature_point if site.forecast.outdoor_temperature in ("auto", "bms") else None


def known_temperature(store: HistoryStore, grid: Grid, point: str | None,
                      since_s: int | None = None) -> np.ndarray | None:
    """For each slot of `grid` (epoch seconds), the target-hour temperature as the forecast knew it
    then (read from `since_s` on, NaN before); None when there is none at all."""
    start, end = max(int(grid.t0_s), since_s or 0), int(grid.times_s(np.array([len(grid) - 1]))[0]) + 1
    known = known_at_slots(grid, *store.range(TEMPERATURE_SERIES, start, end))
    if point is not None:
        measured = known_at_slots(grid, *store.range(series_name(point), start, end))
        known = np.where(np.isfinite(known), known, measured)
    return known if np.isfinite(known).any() else None


class OutdoorTemperature:
    def __init__(self, site: Site, weather: Callable[[], Weather] | None,
                 bms_value: Callable[[str, timedelta], float | None] | None) -> None:
        """`weather` gives the current forecast; `bms_value(point, max_age)` a point's latest reading."""
        self.mode = site.forecast.outdoor_temperature
        self.weather, self.bms_value = weather, bms_value
        self.point = site.outdoor_temperature_point
        self.history_point = history_point(site)
        self.last: tuple[float, str] | None = None
        self.error: str | None = None

    def target_hour(self, target: datetime) -> tuple[float, str] | None:
        """The temperature of the hour at `target` as known now (°C) and where it came from."""
        if self.mode in ("auto", "weather") and self.weather is not None:
            weather = self.weather()
            value = weather.now("temperature_c", target) if weather.source == "forecast" else None
            if value is not None:
                return value, "weather forecast"
        if self.mode in ("auto", "bms") and self.bms_value is not None and self.point is not None:
            value = self.bms_value(self.point, BMS_MAX_AGE)
            if value is not None:
                return value, f"BMS point {self.point}"
        return None

    def record(self, store: HistoryStore, now: datetime, target: datetime) -> None:
        """Keep what is known now of the target hour, for this minute's forecast and later trainings.
        A source that fails is said once and leaves the forecast to power alone, never stops it."""
        try:
            self.last = self.target_hour(target) if self.mode != "none" else None
            if self.last is not None:
                store.append(TEMPERATURE_SERIES, now, self.last[0])
        except Exception as exc:  # noqa: BLE001 - any failure of a source: the forecast goes on from power alone
            if self.error != str(exc):
                log.warning("outdoor temperature for the forecast failed (%s: %s); forecasting from power alone",
                            type(exc).__name__, exc)
            self.error, self.last = str(exc), None
        else:
            self.error = None
