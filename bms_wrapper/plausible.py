"""What a point of each kind can physically read. A value outside is a broken sensor, a fill value
(±1e308, -9999) or a unit mix-up; it would drive the shades and the dashboards, so it is dropped.

The ranges are wide enough for either unit a BMS commonly uses (°C or °F; W or kW), so they catch
the absurd, not the merely unusual."""

from __future__ import annotations

from bms_wrapper.samples import Sample

#: kind -> (lowest, highest) plausible value, inclusive.
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "temperature": (-40.0, 160.0),           # a room, °C or °F
    "setpoint_heating": (-40.0, 160.0),
    "setpoint_cooling": (-40.0, 160.0),
    "outdoor_temperature": (-90.0, 140.0),   # the coldest and hottest ever measured, °C or °F
    "co2": (0.0, 50_000.0),                  # ppm; 5 % is far beyond any occupied room
    "occupancy": (0.0, 100_000.0),           # a flag or a head count
    "irradiance": (-50.0, 2_000.0),          # W/m²; a pyranometer reads a little below 0 at night
    "wind_speed": (0.0, 120.0),              # m/s (or km/h up to a storm's)
    "power": (-1e9, 1e9),                    # W or kW, signed (export)
    "energy": (-1e13, 1e13),                 # a meter's register in Wh or kWh
    "other": (-1e12, 1e12),
}


def implausible(samples: list[Sample], kind: str) -> list[Sample]:
    """The samples whose value a point of this kind cannot read."""
    low, high = PLAUSIBLE.get(kind, PLAUSIBLE["other"])
    return [s for s in samples if not low <= s.value <= high]
