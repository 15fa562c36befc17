"""Demand limiting in the running service: every minute, the demand interval's projection
against the billing period's target, the Guideline 36 level that follows, published on BACnet and
(with `act`) handed to the demand-response shedder, which stays the one writer of each point.

The period's peak comes from the power esus keeps, so a restart loses nothing; the margin of the
projection is learnt from the same record at start; the level, the day's allowance and what the
forecast said of the intervals ahead are kept as they go."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np

from demand_response.baseline import period_mean
from demand_response.billing import interval_start_s, minute_means, period_start
from demand_response.limiting import RECENT_MIN, Flexibility, Limiter, Minute, ProjectionErrors
from demand_response.shedder import Shedder
from esus.parts.bacnet import BacnetBridge
from esus.parts.floor_job import LEVEL_SERIES, learnt_floor
from esus.parts.power import POWER_SERIES
from esus.parts.training_job import in_own_process
from esus.runtime.clock import Clock
from esus.settings.config import Settings
from esus.settings.site import DemandLimitSettings
from esus.state.store import HistoryStore
from esus.state.telemetry import Telemetry

log = logging.getLogger(__name__)

STATE_KEY = "demand_limit.state"
#: the record the margin is learnt from at start
LEARN_DAYS = 14
#: the floor's search over four weeks takes seconds; one that takes this long is ended
FLOOR_TIMEOUT_S = 600.0
SPREAD_S = 30 * 60
#: a request to the shedder lapses this long after the limiter last asked (a stopped limiter's)
REQUEST_S = 150.0
#: a kept level is taken up again after a restart within this
KEPT_FOR = timedelta(minutes=5)

Forecast = Callable[[], "tuple[float, float] | None"]   # the forecast just made: (kW, upper kW), or None


def flexibility(config: DemandLimitSettings) -> Flexibility:
    return Flexibility(shares=(config.shed_pct[0] / 100, config.shed_pct[1] / 100, config.shed_pct[2] / 100),
                       response_min=config.response_minutes,
                       max_minutes_per_day=round(config.max_hours_per_day * 60))


class DemandLimitService:
    def __init__(self, settings: Settings, store: HistoryStore, bacnet: BacnetBridge, clock: Clock,
                 telemetry: Telemetry | None, shedder: Shedder | None, forecast_now: Forecast,
                 wake_shedder: Callable[[], None] = lambda: None) -> None:
        config = settings.site.demand_limit
        assert config is not None
        self.config, self.store, self.bacnet, self.clock = config, store, bacnet, clock
        self.telemetry, self.forecast_now, self.wake_shedder = telemetry, forecast_now, wake_shedder
        self.tz = settings.site.site.tz
        self.shedder = shedder if config.act else None
        self.actions = frozenset(config.actions) or None
        self.flex = flexibility(config)
        self.limiter = Limiter(config.interval_minutes, self.flex,
                               ProjectionErrors(config.interval_minutes, config.confidence),
                               dwell_min=config.dwell_minutes)
        self.peak: tuple[float, datetime] | None = None     # the period's peak interval: mean kW, its start
        self.period: datetime | None = None
        self.floor_kw: float | None = None
        self.interval_s: float | None = None                # the start of the interval under way
        self.ahead: dict[int, tuple[float, float]] = {}     # the forecast per 15-minute window's end (epoch s)
        self.last: dict[str, float | int | str | None] = {}   # what the last minute decided, and why
        self.ready = False   # the record has been read (by the first minute's tick)
        self._restore(clock.now())

    # -- start and every night -----------------------------------------------------------------

    def _restore(self, now: datetime) -> None:
        """The level and the day's allowance as the last run left them, if it ran just now."""
        kept = self.store.get_state(STATE_KEY) or {}
        with contextlib.suppress(KeyError, TypeError, ValueError):
            if timedelta(0) <= now - datetime.fromisoformat(kept["at"]) <= KEPT_FOR:
                self.limiter.resume(int(kept["level"]), int(kept["day"]), int(kept["used_min"]))
                self.last = {k: v for k, v in kept.items() if k not in ("day", "at")}
                self._ask(now)

    def learn(self, now: datetime) -> None:
        """The period's peak so far and the margin, from the record (in a worker thread)."""
        self.period = period_start(now, self.config.billing_day, self.tz)
        self.peak = self.period_peak(self.period, now)
        start_s = now.timestamp() - LEARN_DAYS * 86400
        minutes = minute_means(*self.store.range(POWER_SERIES, start_s, now.timestamp()), start_s, now.timestamp())
        self.limiter.errors.learn(minutes)
        self.ready = True
        log.info("demand limiting: period from %s, peak so far %s", self.period.date(),
                 f"{self.peak[0]:.1f} kW" if self.peak else "none")

    async def nightly(self, due: datetime) -> None:
        await self.learn_floor(self.clock.now())

    def period_peak(self, start: datetime, now: datetime) -> tuple[float, datetime] | None:
        """The highest whole interval's mean since `start` (half of its minutes measured at least)."""
        n = self.config.interval_minutes
        begin = interval_start_s(start, n)
        end = interval_start_s(now, n)
        means = minute_means(*self.store.range(POWER_SERIES, begin, end), begin, end, max_gap_min=0)
        whole = len(means) // n * n
        if not whole:
            return None
        by_interval = means[:whole].reshape(-1, n)
        measured = np.isfinite(by_interval).sum(axis=1)
        covered = measured >= n / 2
        if not covered.any():
            return None
        interval_kw = np.where(covered, np.nansum(by_interval, axis=1) / np.maximum(measured, 1), -np.inf)
        best = int(np.argmax(interval_kw))
        return float(interval_kw[best]), datetime.fromtimestamp(begin + best * n * 60, self.tz)

    async def learn_floor(self, now: datetime) -> None:
        """The floor, in a process of its own; a failure keeps the last one and is said."""
        try:
            self.floor_kw = await in_own_process(learnt_floor, str(self.store.path), now.timestamp(), self.tz.key,
                                                 self.config.interval_minutes, self.flex, timeout_s=FLOOR_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the floor is this part's: said, the last one kept
            log.warning("demand limiting: the floor could not be learnt (%s: %s); keeping %s", type(exc).__name__,
                        exc or f"no result within {FLOOR_TIMEOUT_S:g} s",
                        f"{self.floor_kw:.1f} kW" if self.floor_kw else "none")
            return
        log.info("demand limiting: learnt floor %s", f"{self.floor_kw:.1f} kW" if self.floor_kw else "none")

    # -- every minute --------------------------------------------------------------------------

    def target_kw(self, now: datetime) -> float:
        """The target in force: the fixed one, else the larger of the period's peak so far and the
        learnt floor; with neither, none on the period's first day (each rise would be a new peak)."""
        if self.config.target_kw is not None:
            return self.config.target_kw
        peak = self.peak[0] if self.peak else 0.0
        if self.floor_kw is None and (self.period is None or now - self.period < timedelta(days=1)):
            return math.inf
        return max(peak, self.floor_kw or 0.0)

    async def minute_tick(self, due: datetime) -> None:
        now = self.clock.now()
        self._keep_forecast(now)
        if not self.ready:   # the first tick, or a failed one's retry (a restart's level holds meanwhile)
            await asyncio.to_thread(self.learn, now)
            await self.learn_floor(now)
        await asyncio.to_thread(self._interval_turn, now)
        n = self.config.interval_minutes
        begin = self.interval_s or interval_start_s(now, n)
        times, kw = await asyncio.to_thread(self.store.range, POWER_SERIES, now.timestamp() - SPREAD_S,
                                            now.timestamp())
        recent = kw[times >= now.timestamp() - RECENT_MIN * 60]
        day = now.astimezone(self.tz).toordinal()
        target = self.target_kw(now)
        if recent.size == 0:   # no power lately: nothing to judge by; a shed in force lapses after its dwell
            level = self.limiter.lapse()
            self._show(now, level, None, None, target, "no power measured in the last minutes: no new shed")
        else:
            so_far = kw[times >= begin]
            elapsed = int((now.timestamp() - begin) // 60)
            decision = self.limiter.decide(Minute(
                elapsed, float(so_far.mean()) if so_far.size and elapsed else None, float(recent.mean()),
                float(np.std(kw)), target, day, next_forecast=self._forecast_of(begin + n * 60),
                this_forecast=self._forecast_of(begin), peak_kw=self.peak[0] if self.peak else None))
            level = decision.level
            self._show(now, level, decision.projection.upper_kw, decision.projection.margin_kw, target, decision.reason)
        self._ask(now)
        self.store.append(LEVEL_SERIES, now, level)
        with contextlib.suppress(sqlite3.Error, OSError):   # a full disk is said by the store's users
            self.store.set_state(STATE_KEY, {**self.last, "day": day, "at": now.isoformat()})

    def _ask(self, now: datetime) -> None:
        if self.shedder is not None:
            self.shedder.limit(self.limiter.level, now.timestamp() + REQUEST_S, self.actions)
            self.wake_shedder()

    def _interval_turn(self, now: datetime) -> None:
        """At the first tick of a new interval: the one that ended, for the margin and the peak;
        at a new billing period, its peak starts again."""
        n = self.config.interval_minutes
        begin = interval_start_s(now, n)
        if self.interval_s is not None and begin > self.interval_s:
            end = self.interval_s + n * 60
            times, kw = self.store.range(POWER_SERIES, self.interval_s, end)
            mean = period_mean(times, kw, self.interval_s, end)   # None: under half of it measured
            self.limiter.interval_ended(mean)
            period = period_start(now, self.config.billing_day, self.tz)
            if self.period is not None and period != self.period:
                log.info("demand limiting: a billing period began (%s); its peak so far is reset", period.date())
                self.period, self.peak = period, None
            if mean is not None and (self.peak is None or mean > self.peak[0]) and \
                    datetime.fromtimestamp(self.interval_s, self.tz) >= period:
                self.peak = mean, datetime.fromtimestamp(self.interval_s, self.tz)
        self.interval_s = begin

    def _keep_forecast(self, now: datetime) -> None:
        """The forecast made now is of the 15-minute window ending an hour from now: kept for when
        that window comes next."""
        made = self.forecast_now()
        end = int((now.timestamp() + 3600) // 60 * 60)
        if made is not None:
            self.ahead[end] = made
        for old in [t for t in self.ahead if t < now.timestamp() - 3600]:
            del self.ahead[old]

    def _forecast_of(self, start_s: float) -> tuple[float, float] | None:
        """The forecast of the interval from `start_s`: the mean of its 15-minute windows' (None:
        one is missing), each made an hour before its end."""
        n = self.config.interval_minutes
        windows = [self.ahead.get(int(start_s + (k + 1) * 900)) for k in range(n // 15)]
        if any(w is None for w in windows):
            return None
        return (float(np.mean([w[0] for w in windows if w])), float(np.mean([w[1] for w in windows if w])))

    def _show(self, now: datetime, level: int, upper_kw: float | None, margin_kw: float | None, target_kw: float,
              reason: str) -> None:
        n = self.config.interval_minutes
        ahead = self._forecast_of((self.interval_s or interval_start_s(now, n)) + n * 60)
        headroom = target_kw - ahead[1] if ahead is not None and math.isfinite(target_kw) else None
        peak = self.peak[0] if self.peak else None
        publish = self.bacnet.publish
        publish("dl-level", level + 1)
        publish("dl-period-peak", peak or 0.0)
        publish("dl-target", target_kw if math.isfinite(target_kw) else 0.0)
        if upper_kw is not None:
            publish("dl-projected", upper_kw)
        if headroom is not None:
            publish("dl-headroom", headroom)
        self.last = {"level": level, "target_kw": target_kw if math.isfinite(target_kw) else None,
                     "peak_kw": peak, "floor_kw": self.floor_kw, "upper_kw": upper_kw, "margin_kw": margin_kw,
                     "headroom_kw": headroom, "used_min": self.limiter.used_min.get(now.astimezone(self.tz).toordinal(),
                                                                                    0),
                     "reason": reason, "acting": self.shedder is not None,
                     "peak_at": self.peak[1].isoformat() if self.peak else None}
        if self.telemetry is not None:
            self.telemetry.record("demand_limit", self.last, now)

    def status(self, now: datetime) -> str:
        last = self.last
        if not last:
            return "DL starting"
        peak = f"peak {last['peak_kw']:.1f} kW" if last.get("peak_kw") is not None else "no peak yet"
        target = f"target {last['target_kw']:.1f} kW" if last.get("target_kw") is not None else "no target yet"
        room = f", headroom {last['headroom_kw']:+.1f} kW" if last.get("headroom_kw") is not None else ""
        return f"DL level {last['level']} ({peak}, {target}{room})"
