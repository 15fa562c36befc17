"""Haystack histories in Zinc, read column by column. phable reads about 35,000 rows a second, so a
week of 171 points (1.7 million rows) would take most of a minute; a server's his grid is regular
(a `ts` column of datetimes with their offsets, columns of numbers with a unit), so pandas reads it
whole. Each instant comes from its offset, which phable's decoder drops. Anything less regular (a
Bool, a Str, NA, column meta) is left to phable: `his_columns` returns None."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: A Zinc Number and its unit: 21.5°C, -3, 1_000kW, 2.5e-3m/s (INF and NaN go to phable)
NUMBER = r"^(-?\d[\d_]*(?:\.\d+)?(?:[eE][+-]?\d+)?)([a-zA-Z%_/$\u0080-\uffff]*)$"
NULLS = ("", "N")


def his_columns(text: str, columns: int) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]] | None:
    """A his grid's instants (epoch seconds) and, per value column, its values (NaN where a row has
    none) and unit; None where the grid is not that regular."""
    lines = text.split("\n")
    names = lines[1].split(",") if len(lines) > 1 and lines[0].startswith("ver:") else []
    if len(names) != columns + 1 or names[0] != "ts" or not all(name.isidentifier() for name in names):
        return None   # an error grid (its one column is `empty`), column meta, another shape
    rows = [line.split(",") for line in lines[2:] if line.strip()]
    if not rows:
        return np.empty(0, dtype=np.int64), [(np.empty(0), "")] * columns
    if any(len(row) != columns + 1 for row in rows):
        return None
    table = pd.DataFrame(rows)
    try:
        times = pd.to_datetime(table[0].str.split(" ", n=1).str[0], format="ISO8601", utc=True)
    except (ValueError, TypeError):
        return None
    out = []
    for column in range(1, columns + 1):
        cells = table[column].str.strip()
        parts = cells.str.extract(NUMBER)
        if (parts[0].isna() & ~cells.isin(NULLS)).any():
            return None
        values = pd.to_numeric(parts[0].str.replace("_", "", regex=False), errors="coerce").to_numpy(np.float64)
        units = parts[1].dropna()
        out.append((values, str(units[units != ""].iloc[0]) if (units != "").any() else ""))
    return times.dt.as_unit("s").astype("int64").to_numpy(), out
