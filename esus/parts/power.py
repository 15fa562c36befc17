"""The building power the BAS writes (input-power-meter), checked and kept."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

import numpy as np

from demand_response.baseline import period_mean
from esus.runtime.clock import Clock
from esus.state.telemetry import INTERVAL, Telemetry, line

log = logging.getLogger(__name__)

POWER_SERIES = "power.input_kw"


class PowerValueError(ValueError):
    """A written power value was rejected; the message says why."""


class PowerInput:
    """Accepts power writes within the configured range and keeps them: in the history store, and
    on their way to InfluxDB."""

    def __init__(self, telemetry: Telemetry, clock: Clock, *, min_kw: float, max_kw: float,
                 stale_after: timedelta) -> None:
        self.telemetry, self.store, self.clock = telemetry, telemetry.store, clock
        self.min_kw, self.max_kw, self.stale_after = min_kw, max_kw, stale_after
        latest = self.store.latest(POWER_SERIES)
        self.last_value: float | None = latest[1] if latest else None
        self.last_write: datetime | None = latest[0] if latest else None
        self.writes = 0
        self.rejected = 0

    def validate(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise PowerValueError(f"power must be a number in kW, not {type(value).__name__}")
        kw = float(value)
        if not math.isfinite(kw):
            raise PowerValueError(f"power must be a finite number, not {kw}")
        if not self.min_kw <= kw <= self.max_kw:
            raise PowerValueError(f"power {kw:g} kW is outside the configured range "
                                  f"{self.min_kw:g}..{self.max_kw:g} kW ([power] in the site file)")
        return kw

    def write(self, value: object) -> float:
        """Validate and keep one reading at the clock's now; raises PowerValueError, keeping nothing."""
        try:
            kw = self.validate(value)
        except PowerValueError:
            self.rejected += 1
            raise
        now = self.clock.now()
        self.telemetry.keep({POWER_SERIES: [(now, kw)]},
                            [line("power", {"input_kw": kw}, now, None, self.telemetry.site)])
        self.last_value, self.last_write, self.writes = kw, now, self.writes + 1
        return kw

    def mark_missing(self) -> None:
        """The source withdrew its value (BAS relinquished): stale until the next write."""
        self.last_write = None

    def is_stale(self, now: datetime | None = None) -> bool:
        now = now or self.clock.now()
        return self.last_write is None or now - self.last_write > self.stale_after

    def interval_mean_kw(self, end: datetime) -> float | None:
        """Mean of the samples kept in the 15 minutes before `end`; None when fewer than half of the
        interval's minutes have one (a mean of a few would pass a gap off as the building's power)."""
        start_s, end_s = (end - INTERVAL).timestamp(), end.timestamp()
        return period_mean(*self.store.range(POWER_SERIES, start_s, end_s), start_s, end_s, min_share=0.5)
