"""The weather forecast for the shading policy: Open-Meteo over HTTP, cached on disk, and clear
sky when it cannot be had.

A forecast is an hourly frame in UTC with `cloud_fraction` (0-1), `temperature_c`, `wind_mps`,
`precipitation_mm` and the sun's irradiance at each hour, `ghi_wm2`, `dni_wm2` and `dhi_wm2` (global
horizontal, direct normal, diffuse horizontal: the weather model's own, which pvlib transposes onto
each façade; cloud cover scaling clear sky is the fallback where they are missing). Any column may be
missing (NaN). A forecast a few hours old is still good; one older than `MAX_AGE` is not used.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import requests

log = logging.getLogger(__name__)

OPEN_METEO_URL = "https://api.open-meteo.com/v1/forecast"
#: `_instant`: the irradiance at the hour (Open-Meteo's plain ones are the mean of the hour before)
IRRADIANCE = {"shortwave_radiation_instant": "ghi_wm2", "direct_normal_irradiance_instant": "dni_wm2",
              "diffuse_radiation_instant": "dhi_wm2"}
COLUMNS = {"cloud_cover": "cloud_fraction", "temperature_2m": "temperature_c",
           "wind_speed_10m": "wind_mps", "precipitation": "precipitation_mm"} | IRRADIANCE
HOURLY = tuple(COLUMNS)
#: Fetch again after this long; use a cached forecast up to MAX_AGE when the source is down.
REFRESH = timedelta(hours=1)
MAX_AGE = timedelta(hours=36)


class WeatherError(Exception):
    """The weather source failed or answered with something that is not a forecast."""


@dataclass(frozen=True)
class Weather:
    source: str                  # "forecast" or "clear-sky"
    fetched_at: datetime | None
    hourly: pd.DataFrame         # UTC index; columns as in COLUMNS' values

    def cloud_fraction(self, times: pd.DatetimeIndex) -> pd.Series:
        """Cloud cover at `times` (0 = clear sky when unknown)."""
        return self._at(times, "cloud_fraction").fillna(0.0).clip(0, 1)

    def temperature_c(self, times: pd.DatetimeIndex) -> pd.Series:
        return self._at(times, "temperature_c")

    def irradiance_wm2(self, times: pd.DatetimeIndex) -> pd.DataFrame:
        """Columns ghi, dni, dhi (W/m²) at `times` as the forecast has them; NaN where it has not."""
        return pd.DataFrame({"ghi": self._at(times, "ghi_wm2"), "dni": self._at(times, "dni_wm2"),
                             "dhi": self._at(times, "dhi_wm2")}, index=times)

    def _at(self, times: pd.DatetimeIndex, column: str) -> pd.Series:
        if self.hourly.empty or column not in self.hourly:
            return pd.Series(np.nan, index=times)
        series = self.hourly[column].dropna()
        if series.empty:
            return pd.Series(np.nan, index=times)
        x, xp = _epoch_s(times), _epoch_s(series.index)
        inside = (x >= xp[0] - 3600) & (x <= xp[-1] + 3600)  # beyond the forecast: unknown
        values = np.where(inside, np.interp(x, xp, series.to_numpy(float)), np.nan)
        return pd.Series(values, index=times)

    def now(self, column: str, now: datetime) -> float | None:
        """The forecast `column` (e.g. wind_mps) for the current hour, or None."""
        value = self._at(pd.DatetimeIndex([now]).tz_convert("UTC"), column).iloc[0]
        return None if np.isnan(value) else float(value)

    def covers(self, when: datetime) -> bool:
        """A forecast with cloud cover for `when` (clear sky covers nothing)."""
        return self.now("cloud_fraction", when) is not None


_CLEAR_SKY = Weather("clear-sky", None, pd.DataFrame(columns=list(COLUMNS.values()),
                                                     index=pd.DatetimeIndex([], tz="UTC")))


def clear_sky() -> Weather:
    """No forecast: the policy assumes a cloudless sky and knows no temperature."""
    return _CLEAR_SKY


def parse_open_meteo(payload: object) -> pd.DataFrame:
    """The `hourly` block of an Open-Meteo reply (timeformat=unixtime) as a frame; raises WeatherError."""
    if not isinstance(payload, dict) or not isinstance(payload.get("hourly"), dict):
        reason = payload.get("reason") if isinstance(payload, dict) else None
        raise WeatherError(f"the weather reply has no hourly block{f' ({reason})' if reason else ''}")
    hourly = payload["hourly"]
    times = hourly.get("time")
    if not isinstance(times, list) or not times or not all(isinstance(t, int | float) for t in times):
        raise WeatherError("the weather reply's hourly.time is not a list of unix times")
    frame = pd.DataFrame(index=pd.to_datetime(np.asarray(times, dtype="int64"), unit="s", utc=True))
    for name, column in COLUMNS.items():
        values = hourly.get(name)
        if values is None:
            frame[column] = np.nan
            continue
        if not isinstance(values, list) or len(values) != len(times):
            raise WeatherError(f"the weather reply's hourly.{name} does not match hourly.time")
        frame[column] = pd.to_numeric(pd.Series(values, dtype="object"), errors="coerce").to_numpy(float)
    frame["cloud_fraction"] = frame["cloud_fraction"] / 100.0
    frame.loc[~frame["cloud_fraction"].between(0, 1), "cloud_fraction"] = np.nan
    frame.loc[~frame["wind_mps"].between(0, 100), "wind_mps"] = np.nan
    frame.loc[~frame["temperature_c"].between(-80, 70), "temperature_c"] = np.nan
    for column in IRRADIANCE.values():   # above the solar constant is no irradiance on Earth
        frame.loc[~frame[column].between(0, 1400), column] = np.nan
    return frame[~frame.index.duplicated()].sort_index()


class OpenMeteo:
    """Hourly forecast for one place; no key needed. `fetch()` raises WeatherError."""

    def __init__(self, latitude: float, longitude: float, url: str = OPEN_METEO_URL,
                 timeout_s: float = 10.0, session: requests.Session | None = None) -> None:
        self.url, self.timeout_s = url, timeout_s
        self.params: dict[str, str | int] = {"latitude": f"{latitude:.4f}", "longitude": f"{longitude:.4f}",
                       "hourly": ",".join(HOURLY), "wind_speed_unit": "ms", "timeformat": "unixtime",
                       "timezone": "UTC", "past_days": 1, "forecast_days": 3}
        self.session = session or requests.Session()

    def fetch(self) -> dict:
        try:
            reply = self.session.get(self.url, params=self.params, timeout=(3.05, self.timeout_s))
        except requests.RequestException as exc:
            raise WeatherError(f"weather source {self.url} unreachable ({type(exc).__name__})") from None
        if reply.status_code != 200:
            raise WeatherError(f"weather source {self.url} answered HTTP {reply.status_code}")
        try:
            payload = reply.json()
        except ValueError:
            raise WeatherError(f"weather source {self.url} did not answer JSON") from None
        parse_open_meteo(payload)  # validate before it is cached
        return payload

    def close(self) -> None:
        self.session.close()


class WeatherCache:
    """The last good reply on disk (atomic replace), so a restart or an outage keeps the forecast."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> tuple[datetime, dict] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return datetime.fromisoformat(data["fetched_at"]), data["payload"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("weather cache %s unreadable (%s): ignoring it", self.path, exc)
            return None

    def save(self, fetched_at: datetime, payload: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False, encoding="utf-8") as tmp:
            json.dump({"fetched_at": fetched_at.isoformat(), "payload": payload}, tmp)
        os.replace(tmp.name, self.path)


class WeatherService:
    """Fresh forecast when possible, the cached one while it is young enough, else clear sky."""

    def __init__(self, source: OpenMeteo | None, cache: WeatherCache, now: Callable[[], datetime]) -> None:
        self.source, self.cache, self.now = source, cache, now
        self.current = clear_sky()
        self.last_error: str | None = None
        self._last_try: datetime | None = None
        cached = cache.load()
        if cached is not None:
            self._adopt(*cached)

    def _adopt(self, fetched_at: datetime, payload: dict) -> None:
        try:
            self.current = Weather("forecast", fetched_at, parse_open_meteo(payload))
        except WeatherError as exc:
            log.warning("cached weather is not usable (%s)", exc)

    def refresh(self) -> Weather:
        """Fetch when due (blocking: call it from a worker thread); never raises."""
        now = self.now()
        due = self.current.fetched_at is None or now - self.current.fetched_at >= REFRESH
        retry_ok = self._last_try is None or now - self._last_try >= timedelta(minutes=10)
        if self.source is not None and due and retry_ok:
            self._last_try = now
            try:
                payload = self.source.fetch()
            except WeatherError as exc:
                if self.last_error != str(exc):
                    log.warning("%s: using %s", exc, "the cached forecast" if self.usable() else "clear sky")
                self.last_error = str(exc)
            else:
                self.cache.save(now, payload)
                self._adopt(now, payload)
                self.last_error = None
        return self.weather()

    def usable(self) -> bool:
        fetched = self.current.fetched_at
        return fetched is not None and self.now() - fetched <= MAX_AGE

    def weather(self) -> Weather:
        return self.current if self.usable() else clear_sky()

    def close(self) -> None:
        if self.source is not None:
            self.source.close()


def _epoch_s(times: pd.DatetimeIndex) -> np.ndarray:
    return times.tz_convert("UTC").astype("datetime64[s, UTC]").asi8.astype(float)
