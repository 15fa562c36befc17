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

from dataclasses import dataclass

import numpy as np

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


def reachable_kw(projection: Projection, start_min: int, level_now: int, flex: Flexibility,
                 stage_min: int = 1) -> float:
    """How much of the interval's mean (kW) a shed can still take off if it starts rising from
    `level_now` at minute `start_min` of the interval (negative: before it starts), a level every
    `stage_min` up to the top, each showing on the meter `response_min` after it was ordered."""
    unshed_kw = projection.rest_kw / max(1e-9, 1 - flex.share(level_now))
    total = 0.0
    for step, level in enumerate(range(level_now + 1, LEVELS[-1] + 1)):
        acting_min = projection.interval_min - (start_min + step * stage_min) - flex.response_min
        total += unshed_kw * (flex.share(level) - flex.share(level - 1)) * min(projection.interval_min,
                                                                               max(0, acting_min))
    return total / projection.interval_min


def needed_level(projection: Projection, target_kw: float, level_now: int, flex: Flexibility,
                 stage_min: int = 1, rebound_kw: tuple[float, ...] = (0.0,) * 4, lead_min: int = 0,
                 release_kw: float | None = None) -> int:
    """The level this minute asks for, for the interval projected, which starts `lead_min` from
    now (0: the one under way). A shed is ordered at the last minute that can still hold the
    interval's upper bound at the target: until then the interval may turn out lighter and no
    shed is spent on it. A lower level is asked for when it would do as well, with what the shed
    saved coming back (`rebound_kw[level]`: what would come back at that level; the stepper waits
    a dwell before it follows), held under `release_kw` too (the period's peak so far: a release
    must not set a new one, wherever the target stands)."""
    rest_share = (projection.interval_min - projection.elapsed_min) / projection.interval_min
    unshed_kw = projection.rest_kw / max(1e-9, 1 - flex.share(level_now))

    def excess_kw(level: int) -> float:
        """The upper bound's excess over the target were `level` in force for the rest."""
        bound = target_kw if level >= level_now or release_kw is None else min(target_kw, release_kw)
        return (projection.upper_kw + (unshed_kw * (flex.share(level_now) - flex.share(level)) + rebound_kw[level])
                * rest_share - bound)

    later = projection.elapsed_min + 1 - lead_min
    for level in range(level_now + 1):
        if excess_kw(level) <= reachable_kw(projection, later, level, flex, stage_min):
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

    def step(self, needed: int, hurry: bool = False) -> int:
        """One minute: the level needed now; returns the level in force. `hurry`: down a level a
        stage without a dwell (the day's allowance is running out: a release in stages beats one
        that comes all at once when the allowance ends)."""
        self._since_change += 1
        self._lower_for = self._lower_for + 1 if needed < self.level else 0
        if hurry:
            if self.level > 0 and self._since_change >= self.stage_min:
                self._change(self.level - 1)
        elif needed > self.level and self._since_change >= self.stage_min:
            self._change(self.level + 1)
        elif self.level > 0 and self._lower_for >= self.dwell_min:
            self._change(self.level - 1)
        return self.level

    def _change(self, level: int) -> None:
        self.level, self._since_change, self._lower_for = level, 0, 0


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
    peak_kw: float | None = None   # the billing period's peak so far (None: none yet)


@dataclass(frozen=True)
class Decision:
    level: int
    projection: Projection
    reason: str                    # one line, for the status and the one who asks why


class Limiter:
    """Guideline 36 levels from the interval's projection, every minute; the same code in the
    service and in the replay bench. It learns its margin from its own misses (`interval_ended`)
    and keeps to the day's allowance, releasing in stages before it runs out."""

    def __init__(self, interval_min: int, flex: Flexibility, errors: ProjectionErrors | None = None, *,
                 dwell_min: int = 10, stage_min: int = 1, rebound: Rebound = Rebound()) -> None:
        self.interval_min, self.flex, self.rebound = interval_min, flex, rebound
        self.errors = errors or ProjectionErrors(interval_min)
        self.stepper = LevelStepper(stage_min=stage_min, dwell_min=dwell_min)
        self.used_min: dict[int, int] = {}      # minutes a level was in force, per local day
        self._made: list[float | None] = [None] * interval_min
        self._owed_kwmin = 0.0                  # what the sheds so far will give back (as esus assumes)

    @property
    def level(self) -> int:
        return self.stepper.level

    def interval_ended(self, mean_kw: float | None) -> None:
        """The interval just ended, with its metered mean (None: not measured)."""
        if mean_kw is not None:
            self.errors.add(self._made, mean_kw)
        self._made = [None] * self.interval_min

    def decide(self, now: Minute) -> Decision:
        n, flex, level = self.interval_min, self.flex, self.stepper.level
        margin = self.errors.margin_kw(now.elapsed_min, now.target_kw,
                                       fallback_kw=now.spread_kw * (n - now.elapsed_min) / n)
        projection = Projection(now.elapsed_min, n, now.metered_kw, now.recent_kw, margin)
        self._made[min(now.elapsed_min, n - 1)] = projection.mean_kw
        unshed_kw = now.recent_kw / (1 - flex.share(level))
        self._owed_kwmin = self.rebound.step(self._owed_kwmin, unshed_kw * flex.share(level))[0]
        rebound_kw = tuple(self.rebound.step(self._owed_kwmin, unshed_kw * flex.share(lower))[1]
                           for lower in range(LEVELS[-1] + 1))
        this = needed_level(projection, now.target_kw, level, flex, self.stepper.stage_min, rebound_kw,
                            release_kw=now.peak_kw)
        following = self._following(now, margin_at_start=self.errors.margin_kw(0, now.target_kw, now.spread_kw))
        ahead = needed_level(following, now.target_kw, level, flex, self.stepper.stage_min, rebound_kw,
                             lead_min=n - now.elapsed_min, release_kw=now.peak_kw)
        used = self.used_min.get(now.day, 0)
        spent = used + level * self.stepper.stage_min >= flex.max_minutes_per_day
        ordered = self.stepper.step(max(this, ahead), hurry=spent)
        self.used_min = {now.day: used + (ordered > 0)}
        return Decision(ordered, projection, self._reason(ordered, level, this, ahead, spent, projection, now))

    def _following(self, now: Minute, margin_at_start: float) -> Projection:
        """The next interval as the forecast sees it (its bound the margin), else at the power now."""
        if now.next_forecast is not None:
            kw, upper = now.next_forecast
            if np.isfinite(kw) and np.isfinite(upper):   # a forecast of the building without a shed
                at_level = 1 - self.flex.share(self.stepper.level)
                return Projection(0, self.interval_min, None, kw * at_level, max(0.0, upper - kw) * at_level)
        return Projection(0, self.interval_min, None, now.recent_kw, margin_at_start)

    def _reason(self, ordered: int, before: int, this: int, ahead: int, spent: bool, projection: Projection,
                now: Minute) -> str:
        upper, target = projection.upper_kw, now.target_kw
        if not np.isfinite(target):
            return f"level {ordered}: no target yet (a period's first day with nothing learnt: each rise is a new peak)"
        if spent and ordered < before:
            return f"level {ordered}: the day's {self.flex.max_minutes_per_day} minutes of shedding are spent; " \
                   "releasing a level a minute"
        if spent and upper > target:   # not "a shed later can hold it": none is left today
            return (f"level {ordered}: the day's {self.flex.max_minutes_per_day} minutes of shedding are spent; the "
                    f"bound {upper:.1f} kW is over the target {target:.1f} kW and nothing is left to hold it")
        if ordered > before:
            which = "the next interval's forecast bound" if ahead > this else f"this interval's bound {upper:.1f} kW"
            return f"level {ordered}: {which} would pass the target {target:.1f} kW, and a later shed could not hold it"
        if ordered < before:
            return (f"level {ordered}: a lower level has held the target {target:.1f} kW for "
                    f"{self.stepper.dwell_min} min")
        if ordered:
            return f"level {ordered} held: this interval's bound {upper:.1f} kW against the target {target:.1f} kW"
        if upper > target:
            return (f"normal: the bound {upper:.1f} kW is over the target {target:.1f} kW, but a shed later can "
                    "still hold it")
        return f"normal: the interval's bound {upper:.1f} kW is under the target {target:.1f} kW"
