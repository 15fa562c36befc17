"""The demand-limit floor, learnt each night in a process of its own (`training_job.in_own_process`):
the oracle's search over four weeks of minutes takes seconds of CPU, which in a thread of the
service would hold the GIL while BACnet answers."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from demand_response.billing import local_days, minute_means
from demand_response.limiting import Flexibility, Rebound
from demand_response.replay import Meter, oracle
from esus.parts.power import POWER_SERIES
from esus.state.store import HistoryStore

LEVEL_SERIES = "demand_limit.level"
#: the days the learnt floor is held to
FLOOR_DAYS = 28


def learnt_floor(db_path: str, now_s: float, tz: str, interval_min: int, flex: Flexibility) -> float | None:
    """The lowest peak the flexibility could have held the last FLOOR_DAYS to, knowing them whole
    (the building without the sheds esus made); None with under half of them recorded."""
    zone = ZoneInfo(tz)
    now = datetime.fromtimestamp(now_s, zone)
    start = (now - timedelta(days=FLOOR_DAYS)).replace(hour=0, minute=0, second=0, microsecond=0)
    start_s = start.timestamp()
    # read-only, as the forecast's training reads it: a side process never sets the service's record aside
    with HistoryStore(Path(db_path), readonly=True) as store:
        minutes = minute_means(*store.range(POWER_SERIES, start_s, now_s), start_s, now_s)
        if np.isfinite(minutes).sum() < len(minutes) / 2 or len(minutes) < 1440:
            return None
        levels = minute_means(*store.range(LEVEL_SERIES, start_s, now_s), start_s, now_s, max_gap_min=0)
    shares = np.array([0.0, *flex.shares])[np.nan_to_num(levels, nan=0).astype(int).clip(0, 3)]
    unshed = np.nan_to_num(minutes / (1 - shares), nan=float(np.nanmedian(minutes)))
    meter = Meter(unshed, local_days(start, len(unshed)), interval_min)
    return oracle(meter, flex, Rebound(), tolerance_kw=0.05).target_kw
