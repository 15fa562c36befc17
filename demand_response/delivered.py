"""What a shed delivered: each interval's measured power against the event's frozen baselines,
and the event's summary for the operator and the program (kept in the ledger after the event).

Shed delivered in an interval = baseline - measured mean (kW); energy shed = the sum over the
event's measured intervals x 0.25 h (kWh)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from demand_response.baseline import INTERVAL_S, Baseline, interval_means, number


@dataclass(frozen=True)
class Delivered:
    """One interval: what was measured against each baseline (kW; None: unknown)."""

    start_s: float
    measured_kw: float | None
    forecast_baseline_kw: float | None
    standard_baseline_kw: float | None

    @property
    def shed_kw(self) -> float | None:
        return _minus(self.forecast_baseline_kw, self.measured_kw)

    @property
    def standard_shed_kw(self) -> float | None:
        return _minus(self.standard_baseline_kw, self.measured_kw)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def delivered(baseline: Baseline, times_s: np.ndarray, kw: np.ndarray, until_s: float) -> list[Delivered]:
    """Each interval of the event begun before `until_s`, measured up to then (the last one so far)."""
    times_s, kw = np.asarray(times_s, dtype=np.float64), np.asarray(kw, dtype=np.float64)
    starts = np.array([baseline.interval_start_s(i) for i in range(len(baseline.forecast_kw))
                       if baseline.interval_start_s(i) < until_s], dtype=np.float64)
    keep = times_s < until_s
    measured = interval_means(times_s[keep], kw[keep], starts, min_share=0.0) if starts.size else np.empty(0)
    return [Delivered(float(s), number(m), baseline.forecast_kw[i], baseline.standard_kw[i])
            for i, (s, m) in enumerate(zip(starts, measured, strict=True))]


@dataclass(frozen=True)
class EventSummary:
    """An event as it went: kW means over its measured intervals, kWh over the event."""

    event_id: str
    level: int
    start_s: float
    end_s: float
    intervals: int                          # measured 15-minute intervals
    mean_shed_kw: float | None              # against the forecast baseline
    min_shed_kw: float | None
    kwh_shed: float | None
    standard_mean_shed_kw: float | None     # against the high-5-of-10 baseline
    standard_kwh_shed: float | None
    baseline_method: str
    overrides: dict[str, str] = field(default_factory=dict)   # action -> its state at the end (and error)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict) -> EventSummary:
        return EventSummary(**data)

    def line(self) -> str:
        if self.mean_shed_kw is None:
            return f"event {self.event_id}: no power was measured, so what it shed is unknown"
        standard = "" if self.standard_mean_shed_kw is None else \
            f"; against the high-5-of-10 baseline {self.standard_mean_shed_kw:.1f} kW"
        return (f"event {self.event_id} (level {self.level}) shed {self.mean_shed_kw:.1f} kW on average "
                f"(least {self.min_shed_kw:.1f} kW), {self.kwh_shed:.1f} kWh over {self.intervals} intervals "
                f"against the forecast baseline{standard}")


def summarize(baseline: Baseline, level: int, end_s: float, rows: list[Delivered],
              overrides: dict[str, str], start_s: float | None = None) -> EventSummary:
    """`start_s`: when the event began (its baseline's first quarter hour may have begun before); the
    baseline's start where it is not known."""
    measured = [r for r in rows if r.shed_kw is not None]
    sheds = [r.shed_kw for r in measured if r.shed_kw is not None]
    standard = [r.standard_shed_kw for r in rows if r.standard_shed_kw is not None]
    hours = INTERVAL_S / 3600
    return EventSummary(
        baseline.event_id, level, baseline.start_s if start_s is None else start_s, end_s, len(measured),
        float(np.mean(sheds)) if sheds else None, float(np.min(sheds)) if sheds else None,
        float(np.sum(sheds)) * hours if sheds else None,
        float(np.mean(standard)) if standard else None, float(np.sum(standard)) * hours if standard else None,
        baseline.method, overrides)
