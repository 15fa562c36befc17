"""The BACnet point table, declared once as plain data.

The device, `esus bacnet points` and docs/bacnet-points.md all come from this table, so what the
technician reads is what the BAS finds on the wire. Instance numbers are stable: shade group g
always owns AV 100+10g, AV 101+10g, BV 100+10g and MSV 100+10g.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Access(StrEnum):
    READ = "read"                # written only by esus; a write answers write-access-denied
    COMMANDABLE = "commandable"  # priority array + relinquish default


#: shade-{g}-mode states; new ones go at the end, so a BAS keeps its numbers
SHADE_MODES = ("auto", "bas", "manual", "wind", "frost", "fault", "disabled", "wind-data-lost")
DR_LEVELS = ("normal", "moderate", "high", "special")  # OpenADR SIMPLE levels 0-3, as states 1-4
DL_LEVELS = ("normal", "level-1", "level-2", "level-3")  # Guideline 36 demand-limit levels 0-3, as states 1-4


@dataclass(frozen=True)
class PointSpec:
    name: str
    object_type: str            # "analog-value", "binary-value", "multi-state-value"
    instance: int
    access: Access
    description: str
    units: str | None = None    # bacpypes3 EngineeringUnits name, e.g. "kilowatts"
    cov_increment: float | None = None
    relinquish_default: float | int | None = None
    minimum: float | None = None   # accepted range of commanded values
    maximum: float | None = None
    states: tuple[str, ...] = ()   # multi-state text, state 1 first
    derived_from_power: bool = False  # goes to fault when input-power-meter is stale
    needs_write: bool = False         # commandable input that is faulted until the BAS writes it
    inactive_text: str = "inactive"
    active_text: str = "active"

    @property
    def short_type(self) -> str:
        return {"analog-value": "AV", "binary-value": "BV", "multi-state-value": "MSV"}[self.object_type]


@dataclass(frozen=True)
class ShadeGroupRef:
    """What the table needs to know about a shade group."""

    number: int
    name: str


def building_points(min_kw: float, max_kw: float) -> list[PointSpec]:
    av, bv = "analog-value", "binary-value"
    return [
        PointSpec("input-power-meter", av, 1, Access.COMMANDABLE,
                  "Building electrical power, written by the BAS about once a minute "
                  f"(accepted {min_kw:g}..{max_kw:g} kW)", "kilowatts", 0.5, 0.0, min_kw, max_kw,
                  needs_write=True),
        PointSpec("one-hour-future-power", av, 2, Access.READ,
                  "Forecast: mean power of the 15-minute interval ending 60 minutes from now",
                  "kilowatts", 0.5, derived_from_power=True),
        PointSpec("one-hour-future-power-upper", av, 3, Access.READ,
                  "90 % upper bound of the forecast, calibrated nightly by hour and working day on out-of-sample "
                  "errors and its own recent misses",
                  "kilowatts", 0.5, derived_from_power=True),
        PointSpec("power-rate-of-change", av, 4, Access.READ,
                  "Robust slope of the last 15 minutes of power, in kW per minute", "noUnits", 0.05,
                  derived_from_power=True),
        PointSpec("model-rmse", av, 5, Access.READ,
                  "RMSE of the forecast model on the last held-out day (kW)", "kilowatts", 0.01),
        PointSpec("model-training-time", av, 6, Access.READ,
                  "Duration of the last forecast model training", "seconds", 0.1),
        PointSpec("high-load-threshold", av, 7, Access.READ,
                  "High-load threshold in use: 90th percentile of 15-minute mean power", "kilowatts", 0.1),
        PointSpec("low-load-threshold", av, 8, Access.READ,
                  "Low-load threshold in use: 30th percentile of 15-minute mean power", "kilowatts", 0.1),
        PointSpec("high-load-conditions", bv, 1, Access.READ,
                  "Power above the high-load threshold (15-minute minimum dwell)", derived_from_power=True),
        PointSpec("low-load-conditions", bv, 2, Access.READ,
                  "Power below the low-load threshold (15-minute minimum dwell)", derived_from_power=True),
        PointSpec("shade-automation-enable", bv, 3, Access.COMMANDABLE,
                  "BAS kill switch for shade automation (inactive stops automation, not wind safety)",
                  relinquish_default=1, inactive_text="disabled", active_text="enabled"),
        PointSpec("wind-lockout", bv, 4, Access.READ,
                  "Shades retracted and locked for wind, ice or lost wind data"),
    ]


def shade_points(group: ShadeGroupRef) -> list[PointSpec]:
    g, base = group.number, 100 + 10 * group.number
    return [
        PointSpec(f"shade-{g}-position", "analog-value", base, Access.READ,
                  f"Estimated position of shade group {g} ({group.name}): 0 = up, 100 = down",
                  "percent", 1.0),
        PointSpec(f"shade-{g}-command", "analog-value", base + 1, Access.COMMANDABLE,
                  f"BAS position command for shade group {g} ({group.name}), 0-100 %; "
                  "relinquished = automatic", "percent", 1.0, 0.0, 0.0, 100.0),
        PointSpec(f"shade-{g}-manual-override", "binary-value", base, Access.READ,
                  f"A wall switch holds shade group {g} ({group.name})"),
        PointSpec(f"shade-{g}-mode", "multi-state-value", base, Access.READ,
                  f"Mode of shade group {g} ({group.name}): " + ", ".join(
                      f"{i} {s}" for i, s in enumerate(SHADE_MODES, 1)), states=SHADE_MODES),
    ]


def demand_response_points() -> list[PointSpec]:
    """Present when the site file declares shed actions: the BAS can run its own sequence too."""
    return [
        PointSpec("dr-event-active", "binary-value", 5, Access.READ,
                  "An OpenADR demand response event is active (esus is shedding)"),
        PointSpec("dr-signal-level", "multi-state-value", 1, Access.READ,
                  "OpenADR SIMPLE signal level now, as its state (BACnet counts states from 1, so state = level + "
                  "1): " + ", ".join(f"{i} {s} (level {i - 1})" for i, s in enumerate(DR_LEVELS, 1)),
                  states=DR_LEVELS),
        PointSpec("dr-event-end", "analog-value", 9, Access.READ,
                  "Seconds until the active demand response event ends (0 when none is active)", "seconds", 60.0),
        PointSpec("dr-baseline", "analog-value", 10, Access.READ,
                  "What the building would draw in this 15-minute interval of the event without the shed: the "
                  "forecast baseline frozen at the event's start (0 when no event is active)", "kilowatts", 0.5,
                  derived_from_power=True),
        PointSpec("dr-shed-delivered", "analog-value", 11, Access.READ,
                  "Shed delivered now: dr-baseline minus the mean power measured so far in this 15-minute "
                  "interval (0 when no event is active; a fault when no power was measured)", "kilowatts", 0.5,
                  derived_from_power=True),
    ]


def demand_limit_points(interval_min: int) -> list[PointSpec]:
    """Present when the site file has [demand_limit]: the billing period's peak and what esus does about it."""
    av = "analog-value"
    return [
        PointSpec("dl-period-peak", av, 12, Access.READ,
                  f"The billing period's highest {interval_min}-minute mean power so far", "kilowatts", 0.1),
        PointSpec("dl-target", av, 13, Access.READ,
                  "Demand-limit target in force: the fixed target, else the larger of the period's peak so far and "
                  "the peak the flexibility could hold the last 28 days to", "kilowatts", 0.1),
        PointSpec("dl-headroom", av, 14, Access.READ,
                  f"What more a charger or battery may draw in the next {interval_min}-minute interval: dl-target "
                  "minus the forecast's upper bound for it (negative: over)", "kilowatts", 0.5,
                  derived_from_power=True),
        PointSpec("dl-projected", av, 15, Access.READ,
                  f"Upper bound of this {interval_min}-minute interval's mean: metered so far plus the rest at the "
                  "recent power, with the margin learnt from past misses", "kilowatts", 0.5, derived_from_power=True),
        PointSpec("dl-level", "multi-state-value", 2, Access.READ,
                  "ASHRAE Guideline 36 demand-limit level, as its state (state = level + 1): " + ", ".join(
                      f"{i} {s}" for i, s in enumerate(DL_LEVELS, 1)), states=DL_LEVELS),
    ]


def point_table(min_kw: float, max_kw: float, groups: list[ShadeGroupRef],
                demand_response: bool = False, demand_limit_interval_min: int | None = None) -> list[PointSpec]:
    points = building_points(min_kw, max_kw)
    if demand_response:
        points += demand_response_points()
    if demand_limit_interval_min is not None:
        points += demand_limit_points(demand_limit_interval_min)
    for group in sorted(groups, key=lambda g: g.number):
        points += shade_points(group)
    return points


def format_table(points: list[PointSpec]) -> str:
    """The point list as a fixed-width text table (for `esus bacnet points`)."""
    header = ("object", "name", "access", "units", "description")
    rows = [(f"{p.short_type} {p.instance}", p.name, p.access.value, p.units or "", p.description)
            for p in points]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header[:4], widths, strict=True)) + "  " + header[4]]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4] for r in rows]
    return "\n".join(lines)


def markdown_table(points: list[PointSpec]) -> str:
    lines = ["| object | name | access | units | COV increment | description |",
             "|---|---|---|---|---|---|"]
    for p in points:
        cov = f"{p.cov_increment:g}" if p.cov_increment is not None else ""
        lines.append(f"| {p.short_type} {p.instance} | `{p.name}` | {p.access.value} | {p.units or ''} "
                     f"| {cov} | {p.description} |")
    return "\n".join(lines)
