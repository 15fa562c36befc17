"""Demand limiting: the demand interval's projected mean against the billing period's target, and
the Guideline 36 demand-limit level (0-3) that follows from it.

The projection is the Metasys "sliding window" one: what the interval has metered so far, plus the
rest of it at the building's recent power; its upper bound adds a margin learnt from how far this
very projection missed at the same point of past intervals (`ProjectionErrors`), so the confidence
is the building's own, not a guessed z. The level needed is the smallest whose expected shed keeps
that upper bound at the target; it rises one level a stage and falls one level only after a dwell
in which a lower level would have done (`LevelStepper`). Pure computation, no clock and no I/O:
the service and the replay bench run the same code.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

#: Guideline 36's three demand-limit levels; 0 is normal operation
LEVELS = (1, 2, 3)
#: past intervals whose projection errors set the margin (two weeks of 15-minute intervals)
ERRORS_KEPT = 14 * 96
#: before this many projections near the target have been seen, the margin is a fallback
ERRORS_NEEDED = 30
#: a projection this share of the target or more is near it (its misses set the margin)
NEAR_SHARE = 0.8


@dataclass(frozen=True)
class Flexibility:
    """What the site says each level takes off the building, as a share of its power (0-1), how
    long a shed takes to show on the meter, and how many hours a day the occupants accept it."""

    shares: tuple[float, float, float]
    response_min: int = 2
    max_minutes_per_day: int = 180

    def share(self, level: int) -> float:
        return self.shares[level - 1] if level > 0 else 0.0


@dataclass(frozen=True)
class Projection:
    """The interval's mean as it stands: metered so far plus the rest at `rest_kw`, in kW."""

    elapsed_min: int
    interval_min: int
    metered_kw: float | None     # mean of what the interval metered so far (None before its first minute)
    rest_kw: float               # the power expected for the rest of it, at the level in force
    margin_kw: float             # the upper bound's margin at this point of the interval

    @property
    def mean_kw(self) -> float:
        done = self.elapsed_min / self.interval_min
        return (self.metered_kw or 0.0) * done + self.rest_kw * (1 - done)

    @property
    def upper_kw(self) -> float:
        return self.mean_kw + self.margin_kw


class ProjectionErrors:
    """How far the projection made at each elapsed minute fell short of the interval's mean, over
    the last ERRORS_KEPT intervals. Only the intervals near the target matter (a quiet night's
    misses say nothing of a cycling chiller's), so the margin is the `quantile` (the bound's
    confidence) of the misses of projections at least NEAR_SHARE of the target."""

    def __init__(self, interval_min: int, quantile: float = 0.9, kept: int = ERRORS_KEPT) -> None:
        self.interval_min, self.quantile = interval_min, quantile
        self.errors: list[deque[tuple[float, float]]] = [deque(maxlen=kept) for _ in range(interval_min)]

    def add(self, projected_kw: list[float | None], actual_kw: float) -> None:
        """One finished interval: the projection made at each of its minutes (None: none made)."""
        for elapsed, projected in enumerate(projected_kw[:self.interval_min]):
            if projected is not None:
                self.errors[elapsed].append((projected, actual_kw - projected))

    def margin_kw(self, elapsed_min: int, target_kw: float, fallback_kw: float) -> float:
        """The margin for a projection made `elapsed_min` into the interval against `target_kw`;
        `fallback_kw` until ERRORS_NEEDED such projections were seen."""
        kept = self.errors[min(elapsed_min, self.interval_min - 1)]
        near = [error for projected, error in kept if projected >= NEAR_SHARE * target_kw]
        if len(near) < ERRORS_NEEDED:
            return fallback_kw
        return max(0.0, float(np.quantile(near, self.quantile)))

    def to_dict(self) -> dict:
        return {"interval_min": self.interval_min, "quantile": self.quantile,
                "errors": [[[round(p, 3), round(e, 3)] for p, e in errors] for errors in self.errors]}

    @classmethod
    def from_dict(cls, kept: dict, interval_min: int, quantile: float) -> ProjectionErrors:
        """Errors kept by an earlier run; an empty tracker when they were kept for another interval."""
        errors = cls(interval_min, quantile)
        if kept.get("interval_min") == interval_min:
            for slot, values in zip(errors.errors, kept.get("errors", []), strict=False):
                slot.extend((float(p), float(e)) for p, e in values)
        return errors


def reachable_kw(projection: Projection, start_min: int, level_now: int, flex: Flexibility,
                 stage_min: int = 1) -> float:
    """How much of the interval's mean (kW) a shed can still take off if it starts rising from
    `level_now` at minute `start_min` of the interval, a level every `stage_min` up to the top,
    each showing on the meter `response_min` after it was ordered."""
    unshed_kw = projection.rest_kw / max(1e-9, 1 - flex.share(level_now))
    total = 0.0
    for step, level in enumerate(range(level_now + 1, LEVELS[-1] + 1)):
        acting_min = projection.interval_min - (start_min + step * stage_min) - flex.response_min
        total += unshed_kw * (flex.share(level) - flex.share(level - 1)) * max(0, acting_min)
    return total / projection.interval_min


def needed_level(projection: Projection, target_kw: float, level_now: int, flex: Flexibility,
                 stage_min: int = 1, rebound_kw: float = 0.0) -> int:
    """The level this minute asks for. A shed is ordered at the last minute that can still hold
    the interval's upper bound at the target: until then the interval may turn out lighter and
    no shed is spent on it. A lower level is asked for when it would do as well, with what the
    shed saved coming back (`rebound_kw` at a full release; the stepper waits a dwell before it
    follows)."""
    rest_share = (projection.interval_min - projection.elapsed_min) / projection.interval_min
    unshed_kw = projection.rest_kw / max(1e-9, 1 - flex.share(level_now))

    def excess_kw(level: int) -> float:
        """The upper bound's excess over the target were `level` in force for the rest."""
        back_kw = rebound_kw * (flex.share(level_now) - flex.share(level)) / max(1e-9, flex.share(level_now))
        return (projection.upper_kw + (unshed_kw * (flex.share(level_now) - flex.share(level)) + back_kw) * rest_share
                - target_kw)

    later = projection.elapsed_min + 1
    for level in range(level_now + 1):
        if excess_kw(level) <= 0 or (excess_kw(level) <= reachable_kw(projection, later, level, flex, stage_min)
                                     and level == level_now):
            return level
    return min(LEVELS[-1], level_now + 1)


@dataclass
class LevelStepper:
    """The level in force: up one level per `stage_min`, down one level once a lower one has
    sufficed for `dwell_min` minutes in a row (so the release comes in stages, and its rebound
    with it)."""

    stage_min: int = 1
    dwell_min: int = 10
    level: int = 0
    _since_change: int = 10**6
    _lower_for: int = 0

    def step(self, needed: int) -> int:
        """One minute: the level needed now; returns the level in force."""
        self._since_change += 1
        self._lower_for = self._lower_for + 1 if needed < self.level else 0
        if needed > self.level and self._since_change >= self.stage_min:
            self._change(self.level + 1)
        elif self.level > 0 and self._lower_for >= self.dwell_min:
            self._change(self.level - 1)
        return self.level

    def _change(self, level: int) -> None:
        self.level, self._since_change, self._lower_for = level, 0, 0
