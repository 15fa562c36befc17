"""Haystack 3 JSON read as Haystack 4 JSON. Haystack 3 encodes every value but a Bool or a Number
without a unit as a string with a type prefix ("n:21.5 °C", "r:p1 Room 1", "t:2026-06-10T12:00:00+02:00
Copenhagen", "m:"); Haystack 4 gives each kind an object with `_kind`, which is what esus's decoder
(phable) reads. Many servers in the field (shaystack, older SkySpark and nHaystack) still answer 3."""

from __future__ import annotations

from typing import Any

FLOATS = {"INF": float("inf"), "-INF": float("-inf"), "NaN": float("nan")}


def is_haystack3_grid(data: Any) -> bool:
    """A grid in Haystack 3 JSON: meta, cols and rows, and no `_kind` (Haystack 4 says `"_kind": "grid"`)."""
    return isinstance(data, dict) and "_kind" not in data and {"meta", "cols", "rows"} <= data.keys()


def haystack4(value: Any) -> Any:
    """A Haystack 3 JSON value (a grid, a dict, a list, a scalar) in Haystack 4 JSON."""
    if isinstance(value, dict):
        if is_haystack3_grid(value):
            return {"_kind": "grid", "meta": haystack4(value["meta"]), "cols": [haystack4(c) for c in value["cols"]],
                    "rows": [haystack4(r) for r in value["rows"]]}
        return {name: haystack4(v) for name, v in value.items() if v != "-:"}   # "-:" removes the tag
    if isinstance(value, list):
        return [haystack4(v) for v in value]
    if not isinstance(value, str) or len(value) < 2 or value[1] != ":":
        return value
    prefix, text = value[0], value[2:]
    if prefix == "m":
        return {"_kind": "marker"}
    if prefix == "z":
        return {"_kind": "na"}
    if prefix == "s":
        return text
    if prefix == "n":
        number, _, unit = text.partition(" ")
        parsed = FLOATS.get(number)
        val = float(number) if parsed is None else parsed
        return {"_kind": "number", "val": val, **({"unit": unit} if unit else {})}
    if prefix == "r":
        ref, _, dis = text.partition(" ")
        return {"_kind": "ref", "val": ref, **({"dis": dis} if dis else {})}
    if prefix == "t":
        stamp, _, zone = text.partition(" ")
        return {"_kind": "dateTime", "val": stamp, **({"tz": zone} if zone else {})}
    if prefix in "dhuxbc":
        kind = {"d": "date", "h": "time", "u": "uri", "x": "xstr", "b": "bin", "c": "coord"}[prefix]
        if kind == "coord":
            lat, _, lng = text.partition(",")
            return {"_kind": "coord", "lat": float(lat), "lng": float(lng)}
        if kind == "xstr":
            name, _, rest = text.partition(":")
            return {"_kind": "xstr", "type": name, "val": rest}
        return {"_kind": kind, "val": text}
    return value   # a string that merely has a colon second
