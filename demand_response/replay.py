"""Replaying demand limiting on a real meter: a building whose flexible share answers the levels,
four controllers on it, and how each did per billing month (bench/demand_limit.py prints it).

The building: each minute, level L takes `Flexibility.share(L)` off the meter's power
`response_min` minutes after it was ordered, for at most `max_minutes_per_day` minutes a local day
(past that the occupants' comfort wins and the level does nothing); what a shed saves comes back
after it (`Rebound`: a share of the energy, paid back with a time constant), as a raised setpoint
does when it is released. The controllers: none; a reactive one (the OpenEMS way: the level the
last 15 minutes' mean asks for); esus (`limiting`: the interval's projection and its learnt
margin); and a perfect-foresight oracle that knows the whole month and sheds no more than it must.
All series are per minute, in kW.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from demand_response.limiting import (
    RECENT_MIN,
    Flexibility,
    LevelStepper,
    Limiter,
    Minute,
    ProjectionErrors,
    Rebound,
)

#: the minutes whose spread is the margin until the projection's own misses are known
SPREAD_MIN = 30


@dataclass(frozen=True)
class Meter:
    """A billing period's minutes: the building's power without demand limiting, and the index of
    each minute's local day."""

    load_kw: np.ndarray
    day: np.ndarray
    interval_min: int

    def intervals(self, kw: np.ndarray) -> np.ndarray:
        """Each whole interval's mean."""
        whole = len(kw) // self.interval_min * self.interval_min
        return kw[:whole].reshape(-1, self.interval_min).mean(axis=1)


@dataclass
class Run:
    """What one controller did over a period: the metered power, the level ordered each minute,
    the level that acted (after the response, within the day's allowance) and the rebound's kW."""

    metered_kw: np.ndarray
    ordered: np.ndarray
    acting: np.ndarray
    rebound_kw: np.ndarray
    target_kw: float | None = None


class Building:
    """The flexible building, one minute at a time."""

    def __init__(self, meter: Meter, flex: Flexibility, rebound: Rebound) -> None:
        self.meter, self.flex, self.rebound = meter, flex, rebound
        n = len(meter.load_kw)
        self.run = Run(np.zeros(n), np.zeros(n, dtype=np.int8), np.zeros(n, dtype=np.int8), np.zeros(n))
        self._owed_kwmin = 0.0
        self._used: dict[int, int] = {}

    def minute(self, t: int, ordered: int) -> float:
        """The level ordered at minute t; returns what the meter reads in it."""
        run, flex = self.run, self.flex
        run.ordered[t] = ordered
        level = int(run.ordered[t - flex.response_min]) if t >= flex.response_min else 0
        day = int(self.meter.day[t])
        if level and self._used.get(day, 0) >= flex.max_minutes_per_day:
            level = 0
        load = float(self.meter.load_kw[t])
        if level:
            self._used[day] = self._used.get(day, 0) + 1
        saved = load * flex.share(level)
        self._owed_kwmin, back = self.rebound.step(self._owed_kwmin, saved)
        run.acting[t], run.rebound_kw[t] = level, back
        run.metered_kw[t] = load - saved + back
        return run.metered_kw[t]


#: (minute, metered so far, target, the period's peak so far) -> the level ordered
Controller = Callable[[int, np.ndarray, float, float], int]


def replay(meter: Meter, flex: Flexibility, rebound: Rebound, controller: Controller,
           target: Callable[[int, float], float]) -> Run:
    """Run a controller over the period; `target(minute, peak so far)` is the target in force."""
    building = Building(meter, flex, rebound)
    interval, peak = meter.interval_min, 0.0
    for t in range(len(meter.load_kw)):
        if t and t % interval == 0:
            peak = max(peak, float(building.run.metered_kw[t - interval:t].mean()))
        building.minute(t, controller(t, building.run.metered_kw, target(t, peak), peak))
    return building.run


def no_action(t: int, metered: np.ndarray, target_kw: float, peak_kw: float) -> int:
    return 0


class Reactive:
    """The level the mean of the last interval's minutes asks for, as soon as it crosses the target."""

    def __init__(self, meter: Meter, flex: Flexibility, dwell_min: int = 10) -> None:
        self.meter, self.flex = meter, flex
        self.stepper = LevelStepper(dwell_min=dwell_min)

    def __call__(self, t: int, metered: np.ndarray, target_kw: float, peak_kw: float) -> int:
        n = self.meter.interval_min
        if t < n:
            return 0
        mean = float(metered[t - n:t].mean())
        unshed = mean / (1 - self.flex.share(self.stepper.level))
        needed = next((level for level in (0, 1, 2, 3) if unshed * (1 - self.flex.share(level)) <= target_kw), 3)
        return self.stepper.set(needed)


class Esus:
    """esus's controller (`limiting.Limiter`) fed from the replay's minutes."""

    def __init__(self, meter: Meter, flex: Flexibility, errors: ProjectionErrors | None = None,
                 forecast: tuple[np.ndarray, np.ndarray] | None = None, dwell_min: int = 3) -> None:
        """`forecast`: the forecast's mean and upper bound for each interval (NaN where none),
        each made before that interval began."""
        self.meter, self.forecast = meter, forecast
        self.limiter = Limiter(meter.interval_min, flex, errors, dwell_min=dwell_min)
        self.decide_s: list[float] = []   # what each decision cost (the service makes one a minute)

    def __call__(self, t: int, metered: np.ndarray, target_kw: float, peak_kw: float) -> int:
        n = self.meter.interval_min
        elapsed = t % n
        if elapsed == 0 and t >= n:
            self.limiter.interval_ended(float(metered[t - n:t].mean()))
        if t < RECENT_MIN:
            return 0
        following = t // n + 1
        ahead = this = None
        if self.forecast is not None and following < len(self.forecast[0]):
            ahead = float(self.forecast[0][following]), float(self.forecast[1][following])
            this = float(self.forecast[0][following - 1]), float(self.forecast[1][following - 1])
        now = Minute(elapsed, float(metered[t - elapsed:t].mean()) if elapsed else None,
                     float(metered[t - RECENT_MIN:t].mean()), float(np.std(metered[max(0, t - SPREAD_MIN):t])),
                     target_kw, int(self.meter.day[t]), ahead, this, peak_kw or None)
        started = time.perf_counter()
        level = self.limiter.decide(now).level
        self.decide_s.append(time.perf_counter() - started)
        return level


# -- the oracle -------------------------------------------------------------------------------

def oracle(meter: Meter, flex: Flexibility, rebound: Rebound, tolerance_kw: float = 0.01) -> Run:
    """The lowest peak the same flexibility could hold the period to, knowing every minute ahead:
    bisection on the target, each tried by `_hold`."""
    base = meter.intervals(meter.load_kw).max()
    low, high = base * (1 - max(flex.shares)) - 1e-6, float(base)
    best = _hold(meter, flex, rebound, high)
    assert best is not None
    while high - low > tolerance_kw:
        middle = (low + high) / 2
        run = _hold(meter, flex, rebound, middle)
        if run is None:
            low = middle
        else:
            high, best = middle, run
    best.target_kw = high
    return best


def _hold(meter: Meter, flex: Flexibility, rebound: Rebound, target_kw: float) -> Run | None:
    """Hold every interval at `target_kw` with the fewest shed minutes (the highest level, on the
    interval's heaviest minutes); None when the flexibility cannot."""
    n, load, top = meter.interval_min, meter.load_kw, len(flex.shares)
    size = len(load) // n * n
    run = Run(load.copy(), np.zeros(len(load), dtype=np.int8), np.zeros(len(load), dtype=np.int8),
              np.zeros(len(load)))
    debt, used = 0.0, dict[int, int]()
    for start in range(0, size, n):
        minutes = np.arange(start, start + n)
        shed: set[int] = set()
        order = minutes[np.argsort(-load[minutes])]
        while True:
            kw, back, left = _interval(load[minutes], [t in shed for t in minutes], flex.share(top), debt, rebound)
            if kw.mean() <= target_kw + 1e-9:
                break
            if len(shed) == n:
                return None
            shed.add(int(order[len(shed)]))
        for t in shed:
            day = int(meter.day[t])
            used[day] = used.get(day, 0) + 1
            if used[day] > flex.max_minutes_per_day:
                return None
            run.acting[t] = top
            run.ordered[max(0, t - flex.response_min)] = top
        run.metered_kw[minutes], run.rebound_kw[minutes], debt = kw, back, left
    return run


def _interval(load: np.ndarray, shed: list[bool], share: float, debt: float,
              rebound: Rebound) -> tuple[np.ndarray, np.ndarray, float]:
    kw, back = load.copy(), np.zeros(len(load))
    for i, on in enumerate(shed):
        saved = load[i] * share if on else 0.0
        debt, back[i] = rebound.step(debt, saved)
        kw[i] += back[i] - saved
    return kw, back, debt


# -- judging ----------------------------------------------------------------------------------

@dataclass
class Outcome:
    peak_kw: float
    cut_kw: float                # below the period's peak without demand limiting
    shed_hours: float            # minutes a level acted, in hours
    sheds: int                   # shed episodes (a run of minutes with a level ordered)
    unnecessary: int             # episodes in intervals that did not need one: below the oracle's peak
    release_set_peak: bool       # the period's peak came while a shed's energy was coming back
    levels: dict[int, float] = field(default_factory=dict)   # hours at each level


def judge(meter: Meter, run: Run, oracle_peak_kw: float) -> Outcome:
    n = meter.interval_min
    base = meter.intervals(meter.load_kw)
    metered = meter.intervals(run.metered_kw)
    peak_at = int(np.argmax(metered))
    peak_minutes = slice(peak_at * n, (peak_at + 1) * n)
    rebound_share = float(run.rebound_kw[peak_minutes].sum()) / max(1e-9, float(run.metered_kw[peak_minutes].sum()))
    episodes = _episodes(run.ordered > 0)
    needless = 0
    for first, last in episodes:
        touched = base[first // n: min(len(base), last // n + 1)]
        needless += bool(touched.size) and bool(touched.max() <= oracle_peak_kw + 1e-6)
    return Outcome(float(metered.max()), float(base.max() - metered.max()), float((run.acting > 0).sum() / 60),
                   len(episodes), needless, bool(rebound_share > 0.02),
                   {level: float((run.acting == level).sum() / 60) for level in (1, 2, 3)})


def _episodes(on: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) minute of each run of True."""
    edges = np.diff(np.concatenate([[0], on.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True))
