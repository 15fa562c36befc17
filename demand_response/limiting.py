"""Demand limiting: the demand interval's projected mean against the billing period's target, and
the Guideline 36 demand-limit level (0-3) that follows from it.

The projection is the Metasys "sliding window" one: what the interval has metered so far, plus the
rest of it at the building's recent power; its upper bound adds a margin learnt from how far this
very projection missed at the same point of past intervals (`ProjectionErrors`), so the confidence
is the building's own, not a guessed z. The level is the first step of a plan over this interval,
the next and the rebound after them (`shed_plan`): the lowest that still leaves a way to hold them
all; it moves a stage a minute and falls only after a dwell (`LevelStepper`). Pure computation, no
clock and no I/O: the service and the replay bench run the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from demand_response import shed_plan

#: Guideline 36's three demand-limit levels; 0 is normal operation
LEVELS = (1, 2, 3)
#: the minutes of recent power the projection carries into the rest of the interval
RECENT_MIN = 5
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
class Rebound:
    """What a shed saves comes back after it, as a raised setpoint's zone recovers: while a level
    holds, the owed energy grows by `ratio` of what it saves, up to what `saturation_min` minutes
    of it would owe (the zone settles at its raised setpoint within the hour); when the level
    falls, what is owed beyond the new level's due comes back, decaying with `time_constant_min`."""

    ratio: float = 0.5
    time_constant_min: float = 30.0
    saturation_min: float = 60.0

    def due_kwmin(self, saved_kw: float) -> float:
        """What a long shed that saves `saved_kw` owes."""
        return saved_kw * self.ratio * self.saturation_min

    def step(self, owed_kwmin: float, saved_kw: float) -> tuple[float, float]:
        """One minute that saves `saved_kw`: what is owed after it, and the kW coming back in it."""
        due = self.due_kwmin(saved_kw)
        if owed_kwmin < due:
            return min(owed_kwmin + saved_kw * self.ratio, due), 0.0
        back_kw = (owed_kwmin - due) / self.time_constant_min
        return owed_kwmin - back_kw, back_kw


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
    the last `kept` intervals. Only the intervals near the target matter (a quiet night's misses
    say nothing of a cycling chiller's), so the margin is the `quantile` (the bound's confidence)
    of the misses of projections at least NEAR_SHARE of the target."""

    def __init__(self, interval_min: int, quantile: float = 0.9, kept: int = ERRORS_KEPT) -> None:
        self.interval_min, self.quantile = interval_min, quantile
        self._projected = np.full((kept, interval_min), np.nan)   # a ring of intervals, a column per minute
        self._error = np.full((kept, interval_min), np.nan)
        self._next = 0
        self._margins: dict[tuple[int, float], float | None] = {}   # until the next interval ends

    def add(self, projected_kw: list[float | None], actual_kw: float) -> None:
        """One finished interval: the projection made at each of its minutes (None: none made)."""
        row = np.array([np.nan if p is None else p for p in projected_kw[:self.interval_min]], dtype=float)
        row = np.pad(row, (0, self.interval_min - row.size), constant_values=np.nan)
        at = self._next % len(self._projected)
        self._projected[at], self._error[at] = row, actual_kw - row
        self._next += 1
        self._margins.clear()

    def margin_kw(self, elapsed_min: int, target_kw: float, fallback_kw: float) -> float:
        """The margin for a projection made `elapsed_min` into the interval against `target_kw`;
        `fallback_kw` until ERRORS_NEEDED such projections were seen."""
        key = (min(elapsed_min, self.interval_min - 1), target_kw)
        if key not in self._margins:
            column = key[0]
            near = self._error[self._projected[:, column] >= NEAR_SHARE * target_kw, column]
            self._margins[key] = max(0.0, float(np.quantile(near, self.quantile))) if near.size >= ERRORS_NEEDED \
                else None
        margin = self._margins[key]
        return fallback_kw if margin is None else margin

    def learn(self, minute_kw: np.ndarray) -> None:
        """The misses the projection would have made over a record of whole intervals (1-minute
        means from the first minute of one, NaN where unknown): so a new site, a restart or a new
        month's replay starts with the building's own margin rather than a guess."""
        n = self.interval_min
        whole = len(minute_kw) // n * n
        if whole < 2 * n:
            return
        kw = np.asarray(minute_kw[:whole], dtype=float)
        before = np.concatenate([[np.nan] * RECENT_MIN, kw])
        recent = np.lib.stride_tricks.sliding_window_view(before, RECENT_MIN)[:len(kw)].mean(axis=1)
        by_interval = kw.reshape(-1, n)
        elapsed = np.arange(n)
        so_far = np.cumsum(by_interval, axis=1) - by_interval          # sum of the minutes before each
        projected = (so_far + recent.reshape(-1, n) * (n - elapsed)) / n
        actual = by_interval.mean(axis=1)
        whole_rows = np.isfinite(projected).all(axis=1) & np.isfinite(actual)   # a gap's intervals teach nothing
        for row in np.flatnonzero(whole_rows):
            self.add(list(projected[row]), float(actual[row]))


@dataclass
class LevelStepper:
    """The level in force: a stage at a time, up or down, and down only once it has held
    `dwell_min` minutes (equipment is not cycled, and a release comes in stages with its rebound)."""

    dwell_min: int = 3
    level: int = 0
    _held_min: int = 10**6

    def may_fall(self) -> bool:
        return self._held_min + 1 >= self.dwell_min

    def set(self, wanted: int, hurry: bool = False) -> int:
        """One minute: the level wanted; returns the level in force. `hurry`: down without the
        dwell (the day's allowance ends as the release does)."""
        self._held_min += 1
        level = max(self.level - 1, min(self.level + 1, wanted, LEVELS[-1]), 0)
        if level < self.level and self._held_min < self.dwell_min and not hurry:
            level = self.level
        if level != self.level:
            self.level, self._held_min = level, 0
        return self.level


@dataclass(frozen=True)
class Minute:
    """What the limiter reads each minute (kW)."""

    elapsed_min: int               # minutes of the interval under way already metered
    metered_kw: float | None       # their mean (None at the interval's first minute)
    recent_kw: float               # the mean of the last RECENT_MIN minutes
    spread_kw: float               # the power's standard deviation over the last half hour
    target_kw: float               # the target in force
    day: int                       # the local day (its allowance of shed minutes)
    next_forecast: tuple[float, float] | None = None   # the next interval's forecast and its upper bound
    this_forecast: tuple[float, float] | None = None   # the same made for the interval under way
    peak_kw: float | None = None   # the billing period's peak so far (None: none yet)


@dataclass(frozen=True)
class Decision:
    level: int
    projection: Projection
    reason: str                    # one line, for the status and the one who asks why


class Limiter:
    """Guideline 36 levels from the interval's projection and the plan, every minute; the same
    code in the service and in the replay bench. It learns its margin from its own misses
    (`interval_ended`), keeps its own account of the rebound it owes, and keeps to the day's
    allowance, releasing in stages before it runs out."""

    def __init__(self, interval_min: int, flex: Flexibility, errors: ProjectionErrors | None = None, *,
                 dwell_min: int = 3, rebound: Rebound = Rebound()) -> None:
        self.interval_min, self.flex, self.rebound = interval_min, flex, rebound
        self.errors = errors or ProjectionErrors(interval_min)
        self.stepper = LevelStepper(dwell_min=dwell_min)
        self.used_min: dict[int, int] = {}      # minutes a level was in force, per local day
        self._made: list[float | None] = [None] * interval_min
        self._ordered = [0] * flex.response_min   # the levels ordered that act from this minute on
        self._owed_kwmin = 0.0                  # what the sheds so far will give back (as esus assumes)
        self._back_kw = 0.0                     # what of it came back in the last minute

    @property
    def level(self) -> int:
        return self.stepper.level

    def resume(self, level: int, day: int, used_min: int) -> None:
        """As a run that stopped a moment ago left it: its level in force, and acting."""
        self.stepper.level = level
        self._ordered = [level] * self.flex.response_min
        self.used_min = {day: used_min}

    def lapse(self) -> int:
        """A minute with nothing to judge by: a level in force falls a stage once it has held its dwell."""
        return self._order(0)

    def _order(self, wanted: int, hurry: bool = False) -> int:
        ordered = self.stepper.set(wanted, hurry)
        self._ordered = [*self._ordered, ordered][-self.flex.response_min:] if self.flex.response_min else []
        return ordered

    def interval_ended(self, mean_kw: float | None) -> None:
        """The interval just ended, with its metered mean (None: not measured)."""
        if mean_kw is not None:
            self.errors.add(self._made, mean_kw)
        self._made = [None] * self.interval_min

    def decide(self, now: Minute) -> Decision:
        n, flex, level = self.interval_min, self.flex, self.stepper.level
        margin = self.errors.margin_kw(now.elapsed_min, now.target_kw,
                                       fallback_kw=now.spread_kw * (n - now.elapsed_min) / n)
        acting = self._ordered[0] if self._ordered else level
        unshed_kw = max(0.0, now.recent_kw - self._back_kw) / (1 - flex.share(acting))
        self._owed_kwmin, self._back_kw = self.rebound.step(self._owed_kwmin, unshed_kw * flex.share(acting))
        projection = Projection(now.elapsed_min, n, now.metered_kw, unshed_kw * (1 - flex.share(acting)), margin)
        self._made[min(now.elapsed_min, n - 1)] = projection.mean_kw
        used = self.used_min.get(now.day, 0)
        if used + level >= flex.max_minutes_per_day:   # a release a stage a minute ends with the allowance
            ordered, plan = self._order(level - 1, hurry=True), None
        else:
            plan = shed_plan.choose(self._outlook(now, unshed_kw, margin), level, self._ordered, self._owed_kwmin,
                                    flex.max_minutes_per_day - used, now.target_kw, flex, self.rebound,
                                    may_fall=self.stepper.may_fall())
            ordered = self._order(plan.level, hurry=False)
        self.used_min = {now.day: used + (ordered > 0)}
        return Decision(ordered, projection, self._reason(ordered, level, plan, projection, now))

    def _outlook(self, now: Minute, unshed_kw: float, margin_kw: float) -> shed_plan.Outlook:
        """The rest of this interval at the power now plus its learnt margin, then the next at the
        forecast's bound (else at the power now and the margin of an interval's start)."""
        n, rest = self.interval_min, self.interval_min - now.elapsed_min
        this_kw = unshed_kw + margin_kw * n / rest
        if now.this_forecast is not None and np.isfinite(now.this_forecast[1]):
            this_kw = max(this_kw, now.this_forecast[1])
        next_kw, tail_kw = unshed_kw + self.errors.margin_kw(0, now.target_kw, now.spread_kw), unshed_kw
        if now.next_forecast is not None and all(np.isfinite(now.next_forecast)):
            tail_kw, next_kw = now.next_forecast
        unshed = np.concatenate([np.full(rest, this_kw), np.full(n, next_kw)])
        return shed_plan.Outlook(unshed, rest, (now.metered_kw or 0.0) * now.elapsed_min, n, tail_kw)

    def _reason(self, ordered: int, before: int, plan: shed_plan.Plan | None, projection: Projection,
                now: Minute) -> str:
        """Why `ordered`; `plan` is None when the day's allowance is spent."""
        upper, target = projection.upper_kw, now.target_kw
        if not np.isfinite(target):
            return f"level {ordered}: no target yet (a period's first day with nothing learnt: each rise is a new peak)"
        if plan is None:
            spent = f"level {ordered}: the day's {self.flex.max_minutes_per_day} minutes of shedding are spent"
            if ordered < before:
                return f"{spent}; releasing a level a minute"
            if upper > target:   # not "a shed later can hold it": none is left today
                return f"{spent}; the bound {upper:.1f} kW is over the target {target:.1f} kW, nothing left to hold it"
            return f"{spent}; the interval's bound {upper:.1f} kW is under the target {target:.1f} kW"
        worst = target + plan.excess_kw   # the plan's worst interval in sight, where it has a target
        if ordered > before or (ordered and plan.pressing is not None):
            which = shed_plan.INTERVALS[plan.pressing if plan.pressing is not None else 0]
            held = f"the plan holds {worst:.1f} kW" if plan.excess_kw <= 0 else \
                f"no plan holds it; the least over is {worst:.1f} kW"
            return f"level {ordered}: {which} would pass the target {target:.1f} kW without it ({held})"
        if ordered < before:
            return f"level {ordered}: a lower level holds the target {target:.1f} kW, the rebound counted"
        if ordered:
            return f"level {ordered} held: this interval's bound {upper:.1f} kW against the target {target:.1f} kW"
        if plan.excess_kw > 0:
            return (f"normal: no shed in reach holds the target {target:.1f} kW (the least over is {worst:.1f} kW), "
                    "and one now would not lower it")
        if upper > target:
            return (f"normal: the bound {upper:.1f} kW is over the target {target:.1f} kW, but a shed later can "
                    "still hold it")
        return f"normal: the interval's bound {upper:.1f} kW is under the target {target:.1f} kW"
