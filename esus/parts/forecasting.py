"""The forecast in the running service: published every minute, retrained every night in a
separate process, swapped in atomically when sane, reloaded at start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta

from esus.parts.bacnet import BacnetBridge
from esus.parts.outdoor import OutdoorTemperature, history_point, known_temperature
from esus.parts.power import POWER_SERIES, PowerInput
from esus.parts.training_job import UPPER_SERIES, RecentPower, in_own_process, train_from_store
from esus.runtime.clock import Clock
from esus.settings.config import Settings
from esus.state.files import StateFiles, set_aside
from esus.state.store import HistoryStore
from esus.state.telemetry import IntervalEnds, Telemetry, line
from forecast.calibration import QUANTILE
from forecast.exogenous import MAX_AGE_S
from forecast.features import DAY_S, HORIZON_S, WEEKDAY_PROFILE_WEEKS
from forecast.loadstate import DwellFlag, Thresholds, interval_means, rate_of_change_kw_per_min, thresholds
from forecast.model import ModelFileError, PowerModel
from forecast.training import MIN_TRAINING_DAYS, Forecast, forecast_now

log = logging.getLogger(__name__)

#: the oldest lag the features use (the same weekday 4 weeks back, one more when a holiday came
#: between), plus the horizon
LIVE_DAYS = 7 * (WEEKDAY_PROFILE_WEEKS + 1) + 1
TRAINING_TIMEOUT_S = 30 * 60
THRESHOLD_REFRESH_S = 3600
#: the quantile the next training calibrates the bound at (adapted each night from how it did)
BOUND_LEVEL_KEY = "forecast.bound_level"
FORECAST_DESCRIPTION = "Forecast: mean power of the 15-minute interval ending 60 minutes from now"


@dataclass
class LiveState:
    forecast: Forecast | None
    mean_15min_kw: float | None
    slope_kw_per_min: float | None


#: The load flags, kept each minute so that a restart takes them up where they were.
FLAGS_KEY = "forecast.load_flags"
FLAGS_KEPT_FOR = timedelta(hours=1)


class ForecastService:
    def __init__(self, settings: Settings, store: HistoryStore, power: PowerInput, bacnet: BacnetBridge,
                 clock: Clock, telemetry: Telemetry | None = None, outdoor: OutdoorTemperature | None = None) -> None:
        self.settings, self.store, self.power, self.bacnet, self.clock = settings, store, power, bacnet, clock
        self.telemetry = telemetry
        self.outdoor = outdoor
        self.config = settings.site.forecast
        self.model_path = StateFiles(settings.state_dir).model
        dwell_s = self.config.flag_dwell_minutes * 60
        kept = self._kept_flags(clock.now())
        self.high, self.low = DwellFlag(dwell_s, kept["high"]), DwellFlag(dwell_s, kept["low"])
        self.thresholds: Thresholds | None = None
        self._thresholds_at: datetime | None = None
        self.live: LiveState | None = None
        self.trainings = self.training_failures = 0
        self.last_training: dict | None = None
        self.job = train_from_store  # module-level so the spawned process can import it
        self.training_timeout_s = TRAINING_TIMEOUT_S
        self.model = self._load_model()
        self.recent = RecentPower(store, LIVE_DAYS)
        self.intervals = IntervalEnds()

    def _load_model(self) -> PowerModel | None:
        try:
            model = PowerModel.load(self.model_path)
        except ModelFileError as exc:
            if exc.damaged:
                set_aside(self.model_path, str(exc), "the forecast model: the fallback forecasts until the next "
                                                     "training (at once when there is enough history)")
            elif self.model_path.exists():
                log.warning("%s; forecasting with the fallback until the next training", exc)
            elif self.model_path.with_suffix(".pkl").exists():
                log.warning("%s is an earlier release's model file (a pickle), which esus no longer loads: the "
                            "fallback forecasts until the next training (at once when there is enough history) "
                            "writes %s; the old file can be deleted", self.model_path.with_suffix(".pkl"),
                            self.model_path.name)
            else:
                log.info("no forecast model yet: seasonal naive, then persistence, until the first training")
            return None
        calendar = self.settings.site.site.work_calendar()
        if model.calendar != calendar:
            log.warning("the forecast model was trained with holidays %s and the site now says %s: it uses the "
                        "site's from now on, and the next training learns them", model.calendar, calendar)
            model.calendar = calendar
        info = model.info
        log.info("forecast model loaded: trained %s on %d rows, held-out RMSE %.2f kW (persistence %.2f kW)",
                 info.trained_at, info.rows, info.rmse_kw or float("nan"), info.persistence_rmse_kw or float("nan"))
        return model

    async def start(self) -> None:
        if self.model is not None:
            self.bacnet.publish("model-rmse", self.model.info.rmse_kw or 0.0)
            self.bacnet.publish("model-training-time", self.model.info.train_seconds)
        await self.minute_tick(self.clock.now())
        if self.model is None and self._history_days() >= MIN_TRAINING_DAYS:
            log.info("enough history and no model: training now instead of waiting for midnight")
            asyncio.get_running_loop().create_task(self.nightly_training(self.clock.now()), name="first-training")

    def _history_days(self) -> float:
        span = self.store.span(POWER_SERIES)
        return (span[1] - span[0]).total_seconds() / 86400 if span else 0.0

    # -- every minute --------------------------------------------------------------------------

    def compute(self, now: datetime) -> LiveState:
        """Forecast, 15-minute mean and slope from the recent history (runs in a worker thread)."""
        now_s = int(now.timestamp())
        grid = self.recent.grid(now_s)
        if grid is not None and self.outdoor is not None and self.outdoor.mode != "none":
            # the features read the temperature now and a day ago: the last day and a bit will do
            grid = grid.with_temperature(known_temperature(self.store, grid, self.outdoor.history_point,
                                                           since_s=now_s - DAY_S - MAX_AGE_S))
        recent_t, recent_v = self.recent.last(15 * 60, now_s)
        mean = float(recent_v.mean()) if recent_v.size else None
        slope = rate_of_change_kw_per_min(recent_t, recent_v)
        forecast = forecast_now(grid, self.model) if grid is not None else None
        if self._thresholds_at is None or (now - self._thresholds_at).total_seconds() >= THRESHOLD_REFRESH_S:
            days = self.config.trailing_window_days
            times, values = self.store.range(POWER_SERIES, now_s - days * 86400, now_s + 1)
            self.thresholds = thresholds(interval_means(times, values), self.config.high_percentile,
                                         self.config.low_percentile)
            self._thresholds_at = now
        return LiveState(forecast, mean, slope)

    def _kept_flags(self, now: datetime) -> dict[str, bool]:
        """The load flags as the last run left them, if it ran within FLAGS_KEPT_FOR: a restart is
        no reason for the BAS to see a flag drop and rise again a dwell later."""
        kept = self.store.get_state(FLAGS_KEY)
        try:
            at = datetime.fromisoformat(kept["at"])
            if timedelta(0) <= now - at <= FLAGS_KEPT_FOR:
                return {"high": bool(kept["high"]), "low": bool(kept["low"])}
        except (TypeError, KeyError, ValueError):   # none kept yet, or unreadable: start from normal
            pass
        return {"high": False, "low": False}

    def _keep_flags(self, now: datetime) -> None:
        with contextlib.suppress(sqlite3.Error, OSError):   # a full disk is said by the store's users; flags go on
            self.store.set_state(FLAGS_KEY, {"high": self.high.state, "low": self.low.state, "at": now.isoformat()})

    async def minute_tick(self, due: datetime) -> None:
        now = self.clock.now()
        if self.outdoor is not None:
            self.outdoor.record(self.store, now, now + timedelta(seconds=HORIZON_S))
        self.live = live = await asyncio.to_thread(self.compute, now)
        publish = self.bacnet.publish
        stale = self.power.is_stale(now)
        fresh = live.forecast if live.forecast is not None and not stale else None
        if fresh is not None:   # its history is in InfluxDB (power.forecast_kw); the bound's also in the store
            self.store.append(UPPER_SERIES, now, fresh.upper_kw)   # how it did moves the next calibration
            publish("one-hour-future-power", fresh.kw)
            publish("one-hour-future-power-upper", fresh.upper_kw)
            self.bacnet.device.set_description("one-hour-future-power",
                                               f"{FORECAST_DESCRIPTION} (method: {fresh.method})")
        if live.slope_kw_per_min is not None:
            publish("power-rate-of-change", live.slope_kw_per_min)
        if self.thresholds is not None:
            publish("high-load-threshold", self.thresholds.high_kw)
            publish("low-load-threshold", self.thresholds.low_kw)
            if live.mean_15min_kw is not None:
                t = now.timestamp()
                high = self.high.update(live.mean_15min_kw > self.thresholds.high_kw, t)
                low = self.low.update(live.mean_15min_kw < self.thresholds.low_kw, t)
                self._keep_flags(now)
                publish("high-load-conditions", "active" if high else "inactive")
                publish("low-load-conditions", "active" if low else "inactive")
        if self.telemetry is not None:
            th = self.thresholds
            self.telemetry.record("power", {
                "mean_15min_kw": live.mean_15min_kw, "rate_kw_per_min": live.slope_kw_per_min,
                "forecast_kw": fresh.kw if fresh else None, "forecast_upper_kw": fresh.upper_kw if fresh else None,
                "forecast_temperature_c": self.outdoor.last[0] if self.outdoor and self.outdoor.last else None,
                "high_load": self.high.state if th else None, "low_load": self.low.state if th else None,
                "high_threshold_kw": th.high_kw if th else None, "low_threshold_kw": th.low_kw if th else None,
                "stale": stale}, now)
            if fresh is not None:   # at the time it forecasts, so a chart lines it up with what happened
                self.telemetry.record("forecast", {"kw": fresh.kw, "upper_kw": fresh.upper_kw},
                                      now + timedelta(seconds=HORIZON_S))
            ended = self.intervals.ended(now)
            if ended is not None:
                await self._record_interval(self.telemetry, ended, fresh)

    async def _record_interval(self, telemetry: Telemetry, end: datetime, fresh: Forecast | None) -> None:
        """The interval that ended: its measured mean; and the forecast just made, at the end of the
        interval it forecasts (this tick is the one on the quarter hour)."""
        mean = await asyncio.to_thread(self.power.interval_mean_kw, end)
        site, ahead = telemetry.site, end + timedelta(seconds=HORIZON_S)
        telemetry.record_many([
            line("interval_15min", {"mean_kw": mean}, end, None, site),
            line("interval_15min", {"forecast_kw": fresh.kw, "forecast_upper_kw": fresh.upper_kw}, ahead, None, site)
            if fresh is not None else None])

    def status(self, now: datetime) -> str:
        live = self.live
        if live is None or live.forecast is None:
            return "forecast: not enough history yet"
        f = live.forecast
        load = "high" if self.high.state else "low" if self.low.state else "normal"
        return f"+1h {f.kw:.2f} kW (<= {f.upper_kw:.2f}, {f.method}) | load {load}"

    # -- every night ---------------------------------------------------------------------------

    async def nightly_training(self, due: datetime) -> None:
        """Train in a separate process; keep the old model on any failure and try again tomorrow."""
        candidate = self.model_path.with_name(self.model_path.name + ".candidate")
        self.trainings += 1
        site = self.settings.site
        try:   # at a low CPU priority: on a small board BACnet and the shades answer first, training waits
            report = await in_own_process(self.job, str(self.store.path), str(candidate), int(due.timestamp()),
                                          calendar=site.site.work_calendar(),
                                          temperature=site.forecast.outdoor_temperature != "none",
                                          temperature_point=history_point(site),
                                          level=self.store.get_state(BOUND_LEVEL_KEY, QUANTILE),
                                          timeout_s=self.training_timeout_s)
        except Exception as exc:  # noqa: BLE001 - a crashed, hung or failing job all keep the old model
            self.training_failures += 1
            log.error("forecast training failed (%s: %s); keeping the %s and retrying next night",
                      type(exc).__name__, str(exc) or f"no result within {self.training_timeout_s:g} s",
                      "current model" if self.model else "fallback forecast")
            return
        self.last_training = report
        self.store.set_state(BOUND_LEVEL_KEY, report["bound_level"])
        if self.telemetry is not None:
            self.telemetry.record("model", {"rmse_kw": report["rmse_kw"], "rows": report["rows"],
                                            "persistence_rmse_kw": report["persistence_rmse_kw"],
                                            "cpu_s": report["cpu_s"], "wall_s": report["wall_s"],
                                            "accepted": report["sane"]}, due)
        log.info("forecast training: held-out RMSE %.2f kW vs persistence %.2f kW, %d rows, fit %.1f s CPU "
                 "(%.1f s wall)", report["rmse_kw"], report["persistence_rmse_kw"], report["rows"], report["cpu_s"],
                 report["wall_s"])
        if not report["sane"]:
            log.warning("new forecast model rejected (%s); keeping the %s", report["why"],
                        "current model" if self.model else "fallback forecast")
            return
        try:
            model = await asyncio.to_thread(PowerModel.load, candidate)
        except ModelFileError as exc:
            log.error("new forecast model unreadable (%s); keeping the current one", exc)
            return
        os.replace(candidate, self.model_path)
        self.model_path.with_suffix(".json").write_text(model.info.to_json())
        self.model = model
        self.bacnet.publish("model-rmse", report["rmse_kw"])
        self.bacnet.publish("model-training-time", model.info.train_seconds)
