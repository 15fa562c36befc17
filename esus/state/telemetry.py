"""What esus logs to InfluxDB: the schema (one table, documented in docs/influx-schema.md and
checked against the Grafana dashboards) and the code that turns values into line protocol.

Every number is written as a float, so a field never flips between integer and float, to 1/1024
of its unit; booleans are 0.0/1.0; timestamps are UTC milliseconds. Tag `site` is on every point, and every line of a
measurement carries all of its tags ("-" for an empty value).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from influxdb_client import Point, WritePrecision

from esus.state.outbox import Outbox
from esus.state.store import Rows


@dataclass(frozen=True)
class Measurement:
    description: str
    tags: tuple[str, ...]
    fields: dict[str, str]  # field -> unit and meaning
    string_fields: tuple[str, ...] = ()


SCHEMA: dict[str, Measurement] = {
    "power": Measurement("Building power and its forecast, once a minute (input_kw at every BAS write)", (), {
        "input_kw": "kW, written by the BAS into input-power-meter",
        "mean_15min_kw": "kW, mean of the last 15 minutes",
        "forecast_kw": "kW, forecast mean of the 15-minute interval ending 60 min later",
        "forecast_upper_kw": "kW, 90 % upper bound of that forecast",
        "forecast_temperature_c": "°C, outdoor temperature of that forecast's target hour as known then (absent "
                                  "when none was known)",
        "rate_kw_per_min": "kW/min, Theil-Sen slope of the last 15 minutes",
        "high_load": "1 = high-load-conditions active",
        "low_load": "1 = low-load-conditions active",
        "high_threshold_kw": "kW, 90th percentile of 15-minute means in use",
        "low_threshold_kw": "kW, 30th percentile in use",
        "stale": "1 = the BAS has not written power for longer than stale_after_minutes",
    }),
    "forecast": Measurement("The forecast at the time it forecasts: the end of the 15-minute interval, 60 min after it "
                            "was issued (so it lines up with power.mean_15min_kw in any query language)", (), {
        "kw": "kW, forecast mean of the 15-minute interval ending at this time",
        "upper_kw": "kW, 90 % upper bound of that forecast",
    }),
    "interval_15min": Measurement("Each 15-minute interval once, dated at its end (on the quarter hour): what a "
                                  "portfolio's day-long charts read, a fifteenth of the per-minute lines. The forecast "
                                  "part and the demand part each write their fields; InfluxDB merges lines of one "
                                  "time and site into one point", (), {
        "mean_kw": "kW, mean power measured in the interval (from the samples the BAS wrote; absent when fewer than "
                   "half its minutes have one)",
        "forecast_kw": "kW, the forecast of this interval, made 60 minutes before its end",
        "forecast_upper_kw": "kW, 90 % upper bound of that forecast",
        "event_active": "1 = a demand response event was active during the interval (only with shed actions)",
        "shed_kw": "kW, shed delivered in the interval against the event's forecast baseline (during events)",
    }),
    "model": Measurement("Forecast model, after each training", (), {
        "rmse_kw": "kW, RMSE on the last held-out day",
        "persistence_rmse_kw": "kW, persistence's RMSE on the same day",
        "cpu_s": "s, CPU time of the fit (what model-training-time shows on BACnet)",
        "wall_s": "s, wall time of the training process (reading history, fit, validation, saving)",
        "rows": "training rows",
        "accepted": "1 = swapped in, 0 = rejected as not sane",
    }),
    "bms": Measurement("BMS samples, as polled", ("point", "room", "kind", "unit"), {
        "value": "the sample, in the point's unit",
    }),
    "shades": Measurement("Shade groups, on change and once a minute", ("group",), {
        "position_pct": "%, estimated position (0 up, 100 down)",
        "target_pct": "%, where the policy wants it",
        "relay_up": "1 = up relay on", "relay_down": "1 = down relay on",
        "mode_code": "1 auto, 2 bas, 3 manual, 4 wind, 5 frost, 6 fault, 7 disabled, 8 wind-data-lost",
        "hold": "1 = a wall-switch hold is active", "lockout": "1 = wind, ice or lost-wind-data lockout",
        "moves_today": "automatic moves since local midnight",
    }, string_fields=("reason",)),
    "solar": Measurement("Sun and façade irradiance per façade, once a minute", ("facade",), {
        "elevation_deg": "°, solar elevation", "azimuth_deg": "°, solar azimuth",
        "aoi_deg": "°, angle of incidence on the façade",
        "poa_wm2": "W/m², façade irradiance used by the policy",
        "poa_forecast_wm2": "W/m², forecast façade irradiance",
        "avoided_gain_kwh": "kWh, avoided solar gain so far today",
    }),
    "shade_room": Measurement("Each shade group's rooms as learnt from the building, after each night's fit "
                              "(esus.parts.room_learning)", ("group",), {
        "validated": "1 = the fit met its bound on the held-out days: the room forecast decides; 0 = the VDI 3813 "
                     "rule decides",
        "rmse_k": "K, the room temperature's error a day ahead on the held-out days (RMSE)",
        "worst_k": "K, the worst hour's error on those days",
        "training_days": "whole days the fit was made on", "held_out_days": "whole days it was judged on",
        "ua_air_w_k": "W/K, air to outdoors (windows, ventilation, infiltration)",
        "ua_mass_w_k": "W/K, air to the building's mass", "ua_wall_w_k": "W/K, mass to outdoors (opaque walls)",
        "c_air_kj_k": "kJ/K, the air's heat capacity with the furniture", "c_mass_kj_k": "kJ/K, the mass's",
        "mass_time_constant_h": "h, how slowly the mass follows",
        "solar_factor": "the site file's window's solar gain times this is what reaches the rooms",
        "solar_to_mass": "share of the solar gain the mass takes",
        "occupied_gain_w": "W, internal gains in office hours", "unoccupied_gain_w": "W, outside them",
        "wall_s": "s, wall time of the group's fit",
    }, string_fields=("reason",)),
    "demand_response": Measurement("Demand response, on change and once a minute (only with shed actions)", (), {
        "event_active": "1 = an OpenADR event is active", "signal_level": "0 normal, 1 moderate, 2 high, 3 special",
        "seconds_to_end": "s, until the latest active event ends (0 with none)",
        "overrides_shed": "actions whose shed value the controller has acknowledged",
        "overrides_failing": "actions whose last write or release failed (retrying)",
        "overrides_lost": "times the controllers were found not to hold an acknowledged override (re-written)",
        "report_kw": "kW, the power reported to the VTN (Modbus meter or the BAS's)",
        "baseline_kw": "kW, during an event: the forecast baseline of this 15-minute interval, frozen at the start",
        "standard_baseline_kw": "kW, during an event: the high-5-of-10 working days baseline of this interval",
        "measured_kw": "kW, during an event: mean power measured so far in this interval",
        "shed_kw": "kW, during an event: shed delivered, baseline_kw - measured_kw",
    }),
    "demand_limit": Measurement("Demand limiting, each minute (only with [demand_limit]; esus.parts.demand_limit)",
                                (), {
        "level": "Guideline 36 demand-limit level in force, 0-3",
        "target_kw": "kW, the target in force (none on a period's first day with nothing learnt yet)",
        "peak_kw": "kW, the billing period's highest interval mean so far",
        "floor_kw": "kW, the lowest peak the flexibility could have held the last 28 days to (learnt each night)",
        "upper_kw": "kW, the upper bound of the interval under way: metered so far plus the rest, with its margin",
        "margin_kw": "kW, that margin: the projection's misses near the target at this minute of an interval",
        "headroom_kw": "kW, target minus the next interval's forecast upper bound (dl-headroom)",
        "used_min": "minutes shed today, of max_hours_per_day",
        "acting": "1 = the level drives the shed actions; 0 = it is only published",
    }, string_fields=("reason",)),
    "dr_override": Measurement("Each shed action, on change and once a minute", ("action",), {
        "shed": "1 = the shed value is acknowledged in the action's priority slot",
        "pending": "1 = a write or a release is on its way, not yet acknowledged",
        "failing": "1 = the last write or release failed (retrying)",
        "outranked_by": "the higher priority (a lower number) another writer holds the point at, so the shed does "
                        "nothing; 0 when none",
        "lost_count": "times the controller was found not to hold it since it was first written (read back each "
                      "minute; re-written each time): a count, not its state",
    }, string_fields=("reason", "state")),
    "health": Measurement("Service health, once a minute", (), {
        "outbox_depth": "lines waiting for InfluxDB", "outbox_dropped": "lines dropped since install (full outbox)",
        "outbox_dead": "lines refused by InfluxDB (dead letter)",
        "bms_errors": "failed BMS requests since start", "bacnet_writes": "accepted BACnet writes since start",
        "tick_lag_s": "s, lateness of the last minute tick", "rss_mb": "MB, resident memory",
    }),
}


def schema_markdown() -> str:
    """The schema as Markdown tables (docs/influx-schema.md embeds exactly this)."""
    parts = []
    for name, spec in SCHEMA.items():
        tags = ", ".join(f"`{t}`" for t in ("site",) + spec.tags)
        parts.append(f"### `{name}`\n\n{spec.description}. Tags: {tags}.\n\n| field | unit and meaning |\n|---|---|")
        parts += [f"| `{field}` | {meaning} |" for field, meaning in spec.fields.items()]
        parts += [f"| `{field}` | text (string field) |" for field in spec.string_fields]
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


#: Numbers are written to 1/1024 of their unit (1 W of a kW, 0.001 °C): with the low mantissa bits
#: zero, InfluxDB's float compression (Gorilla XOR) stores a noisy series in a third of the bytes
#: (bench/portfolio.py). Whole numbers and halves, quarters... are written exactly.
FRACTION_BITS = 10


def quantized(number: float) -> float:
    if abs(number) >= 2.0 ** 52:   # no fraction bits left to clear
        return number
    return round(number * (1 << FRACTION_BITS)) / (1 << FRACTION_BITS)


#: Written for a tag that has no value (a BMS point without a unit), so no line lacks a tag key.
EMPTY_TAG = "-"


class SchemaError(ValueError):
    pass


def line(measurement: str, fields: Mapping[str, float | bool | str | None], at: datetime,
         tags: dict[str, str] | None = None, site: str = "") -> str | None:
    """One line of line protocol, or None when no field has a value. Unknown names are errors."""
    spec = SCHEMA.get(measurement)
    if spec is None:
        raise SchemaError(f"unknown measurement {measurement!r}")
    point = Point(measurement).time(int(at.timestamp() * 1000), WritePrecision.MS)
    given = tags or {}
    for key in given:
        if key not in spec.tags:
            raise SchemaError(f"{measurement} has no tag {key!r}")
    # every line of a measurement carries all its tags, as InfluxDB 3 wants a table's tag set fixed
    point.tag("site", site or EMPTY_TAG)
    for key in spec.tags:
        point.tag(key, str(given.get(key) or EMPTY_TAG))
    count = 0
    for key, value in fields.items():
        if value is None:
            continue
        if key in spec.string_fields:
            point.field(key, str(value))
        elif key in spec.fields:
            number = float(value)
            if not math.isfinite(number):
                continue
            point.field(key, quantized(number))
        else:
            raise SchemaError(f"{measurement} has no field {key!r}")
        count += 1
    return point.to_line_protocol() if count else None


#: The portfolio's interval: the forecast's and the demand programs' 15 minutes, on the quarter hour.
INTERVAL = timedelta(minutes=15)


def interval_end(at: datetime) -> datetime:
    """The end of the last whole 15-minute interval at `at` (the quarter hour at or before it)."""
    seconds = int(at.timestamp()) // int(INTERVAL.total_seconds()) * int(INTERVAL.total_seconds())
    return datetime.fromtimestamp(seconds, UTC)


class IntervalEnds:
    """Says, at a tick, which 15-minute interval has ended since the tick before: once each, and
    none at the first tick (the interval it ends began before this service was there to see it)."""

    def __init__(self) -> None:
        self.last: datetime | None = None

    def ended(self, now: datetime) -> datetime | None:
        end, last = interval_end(now), self.last
        self.last = end
        return end if last is not None and end > last else None


class Telemetry:
    """Builds lines and commits them to the outbox. Lines that describe samples kept in the
    history store (power, BMS) are committed with their samples in one transaction: a kill at
    any instant leaves every kept sample's line on its way to InfluxDB exactly once."""

    def __init__(self, outbox: Outbox, site: str) -> None:
        self.outbox, self.site, self.store = outbox, site, outbox.store

    def record(self, measurement: str, fields: Mapping[str, float | bool | str | None], at: datetime,
               tags: dict[str, str] | None = None) -> None:
        text = line(measurement, fields, at, tags, self.site)
        if text:
            self.outbox.put([text])

    def record_many(self, lines: list[str | None]) -> None:
        self.outbox.put([text for text in lines if text])

    def keep(self, rows: Rows, lines: list[str | None]) -> None:
        """Store samples in the history and their lines in the outbox: one commit."""
        self.outbox.put([text for text in lines if text],
                        with_samples=lambda conn: self.store.insert_samples(conn, rows))
