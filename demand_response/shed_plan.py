"""The shed as a plan over the intervals ahead: each minute, the lowest level that still leaves a way
to hold every interval in sight under the target, the sheds' rebound counted.

A level ordered now decides little on its own: it acts `response_min` later, its savings come back
after it, and the interval after this one pays for a release that comes too late. So each minute
the limiter tries every plan of one shape (this minute's level a stage from the one in force, then
up a stage a minute to the top for some minutes, then down a stage a minute), simulates the
building's power under each over the rest of this interval, the next one and the rebound into the
one after, and orders the lowest first level of a plan that holds them all within the day's
allowance. Waiting is chosen whenever a later shed can still hold: a shed is spent only on an
interval that turns out to need it. Pure computation on numpy arrays, a few hundred plans a minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:   # limiting builds on this module; these are only its settings' types
    from demand_response.limiting import Flexibility, Rebound

#: the names of the intervals a plan looks at, for the reason shown
INTERVALS = ("this interval", "the next interval", "the interval after the next")


@dataclass(frozen=True)
class Outlook:
    """What is expected from this minute on, without a shed (kW per minute, upper bounds), and how
    it falls into demand intervals: the one under way ends after `first_end` minutes and has
    metered `metered_kwmin` so far; the next one follows; `tail_kw` is the one after that (where
    a late release's rebound lands)."""

    unshed_kw: np.ndarray
    first_end: int
    metered_kwmin: float
    interval_min: int
    tail_kw: float


@dataclass(frozen=True)
class Plan:
    level: int                   # this minute's level
    excess_kw: float             # the plan's worst interval against the target (<= 0: held)
    pressing: int | None = None  # the interval a lower level could not hold (an index of INTERVALS)


def holds(horizon_min: int) -> list[int]:
    """The lengths of shed tried: each minute up to half an hour, then every fifth (a long
    shed's last minutes matter less than when a short one ends)."""
    return [*range(min(31, horizon_min)), *range(35, horizon_min, 5)]


@lru_cache(maxsize=1024)
def plans(level_now: int, may_fall: bool, horizon_min: int, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Each plan's ordered level per minute (rows) and (first level, minutes held) per row: a
    stage up or staying, then up a stage a minute for some minutes and down a stage a minute; or
    a stage down and on down (a release that dips and rises again would cycle the equipment)."""
    k = np.arange(horizon_min)
    rows, keys = [], []
    for first in range(max(0, level_now - 1) if may_fall else level_now, min(top, level_now + 1) + 1):
        for hold in (holds(horizon_min) if first >= level_now else (0,)):
            peak = min(top, first + hold)
            up = np.minimum(top, first + k)
            down = np.maximum(0, (first if hold == 0 else peak) - (k - hold))
            rows.append(np.where(k <= hold, up, down) if hold else np.maximum(0, first - k))
            keys.append((first, hold))
    ordered, key = np.array(rows, dtype=np.int8), np.array(keys)
    ordered.flags.writeable = key.flags.writeable = False   # shared by every minute that asks
    return ordered, key


def simulate(outlook: Outlook, ordered: np.ndarray, before: list[int], owed_kwmin: float, allowance_min: int,
             flex: Flexibility, rebound: Rebound) -> np.ndarray:
    """Each plan's interval means (rows: plans; columns: this interval, the next, the tail), kW.
    `before`: the levels ordered in the last `response_min` minutes (they act first); a plan's
    levels past the day's allowance do nothing, as the building gives no more."""
    n_plans, horizon = ordered.shape
    shares = np.array([0.0, *flex.shares])
    used = np.cumsum(ordered > 0, axis=1)
    ordered = np.where(used > allowance_min, 0, ordered)
    past = np.broadcast_to(np.array(before, dtype=np.int8), (n_plans, len(before)))
    acting = np.concatenate([past, ordered], axis=1)[:, :horizon]
    owed = np.full(n_plans, owed_kwmin)
    kw = np.empty((n_plans, horizon))
    for k in range(horizon):
        saved = outlook.unshed_kw[k] * shares[acting[:, k]]
        due = saved * rebound.ratio * rebound.saturation_min
        growing = owed < due
        back = np.where(growing, 0.0, (owed - due) / rebound.time_constant_min)
        owed = np.where(growing, np.minimum(owed + saved * rebound.ratio, due), owed - back)
        kw[:, k] = outlook.unshed_kw[k] - saved + back
    n, first = outlook.interval_min, outlook.first_end
    means = [(outlook.metered_kwmin + kw[:, :first].sum(axis=1)) / n]
    if horizon > first:
        means.append(kw[:, first:].mean(axis=1))
    paid_back = owed * (1 - (1 - 1 / rebound.time_constant_min) ** n) / n
    means.append(outlook.tail_kw + paid_back)
    return np.stack(means, axis=1)


def bounds(outlook: Outlook, intervals: int, target_kw: float) -> np.ndarray:
    """What each interval must stay under: the target; the tail's only when it is under it
    unshed (else its own shed, decided in its turn, must hold it: the rebound adds to that)."""
    limit = np.full(intervals, target_kw)
    if outlook.tail_kw > target_kw:
        limit[-1] = np.inf
    return limit


def choose(outlook: Outlook, level_now: int, before: list[int], owed_kwmin: float, allowance_min: int,
           target_kw: float, flex: Flexibility, rebound: Rebound, may_fall: bool = True) -> Plan:
    """The plan this minute follows: the lowest first level with a way to hold every interval in
    sight at `target_kw`; when none holds, the one whose worst interval is least over it (a shed
    that cannot hold the target still lowers the new peak), the lower level on a tie."""
    top = len(flex.shares)
    lowest = max(0, level_now - 1) if may_fall else level_now
    horizon = len(outlook.unshed_kw)
    if lowest == 0:   # the common minute: no shed from now on holds (the lowest plan of all, tried alone)
        idle = simulate(outlook, np.zeros((1, horizon), dtype=np.int8), before, owed_kwmin, allowance_min, flex,
                        rebound)[0]
        excess = float((idle - bounds(outlook, idle.size, target_kw)).max())
        if excess <= 1e-9:
            return Plan(0, excess)
    ordered, keys = plans(level_now, may_fall, horizon, top)
    means = simulate(outlook, ordered, before, owed_kwmin, allowance_min, flex, rebound)
    over = means - bounds(outlook, means.shape[1], target_kw)
    excess = over.max(axis=1)
    held = np.flatnonzero(excess <= 1e-9)
    if held.size:
        best = held[np.lexsort((keys[held, 1], keys[held, 0]))[0]]   # the lowest level, then the shortest
    else:
        best = np.lexsort((keys[:, 1], keys[:, 0], np.round(excess, 2)))[0]
    pressing = None
    if keys[best, 0] > lowest:   # which interval the lower level's best plan could not hold
        lower = np.flatnonzero(keys[:, 0] == lowest)
        pressing = int(np.argmax(over[lower[np.argmin(excess[lower])]]))
    return Plan(int(keys[best, 0]), float(excess[best]), pressing)
