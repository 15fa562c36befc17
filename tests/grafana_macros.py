"""Grafana's interpolation of an InfluxQL query, as its InfluxDB data source does it (a real
Grafana is not in the package registries, so the dashboard tests expand the macros themselves).

- `$timeFilter` becomes `time >= FROMms and time <= TOms`;
- `$__interval` is the range over the panel's data points, rounded as Grafana's `roundInterval`,
  and never below the panel's minimum interval;
- a multi-value or All variable becomes its regex-escaped values, `(a|b)` for more than one;
- `$__from` / `$__to` are epoch milliseconds.
"""

from __future__ import annotations

import re

#: Grafana's roundInterval: (below this many ms, use this interval).
ROUNDING = [(1500, "1s"), (3500, "2s"), (7500, "5s"), (12500, "10s"), (17500, "15s"), (25000, "20s"),
            (45000, "30s"), (90000, "1m"), (210000, "2m"), (450000, "5m"), (750000, "10m"), (1050000, "15m"),
            (1500000, "20m"), (2700000, "30m"), (5400000, "1h"), (9000000, "2h"), (16200000, "3h"),
            (27000000, "6h"), (86400000, "12h"), (604800000, "1d"), (1814400000, "1w"), (3628800000, "30d")]
#: What Grafana itself defines, besides the dashboard's variables.
BUILTIN = {"timeFilter", "__interval", "__interval_ms", "interval", "__from", "__to", "col", "__all"}
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|{}\[\]/])")


def round_interval_ms(ms: float) -> str:
    return next((name for limit, name in ROUNDING if ms < limit), "1y")


def escape(value: str) -> str:
    return REGEX_SPECIAL.sub(r"\\\1", value)


def variable_value(values: list[str]) -> str:
    escaped = [escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interval_ms(text: str) -> int:
    """A Grafana interval ("15m", "1h", "30s") in milliseconds."""
    number, unit = int(text[:-1]), text[-1]
    return number * {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000,
                      "y": 31_536_000_000}[unit]


def expand(query: str, from_ms: int, to_ms: int, variables: dict[str, list[str]], max_points: int = 1000,
           min_interval: str | None = None) -> str:
    """The query as Grafana sends it to InfluxDB; `min_interval` is the panel's own (its "interval")."""
    interval = round_interval_ms((to_ms - from_ms) / max_points)
    if min_interval is not None and interval_ms(interval) < interval_ms(min_interval):
        interval = min_interval
    fixed = {"timeFilter": f"time >= {from_ms}ms and time <= {to_ms}ms", "__interval": interval,
             "interval": interval, "__from": str(from_ms), "__to": str(to_ms)}

    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name in fixed:
            return fixed[name]
        if name in variables:
            return variable_value(variables[name])
        if name.startswith("tag_") or name == "col":
            return match.group(0)   # alias patterns, filled in from the reply
        raise KeyError(f"${name} is not a variable of this dashboard")

    return VARIABLE.sub(value, query)


def used_variables(text: str) -> set[str]:
    return {m.group(1) or m.group(2) for m in VARIABLE.finditer(text)}
