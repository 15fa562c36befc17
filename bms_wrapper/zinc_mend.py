"""Zinc a Haystack server wrote that the grammar does not allow, mended cell by cell so that one bad
cell costs that cell at most: a number whose unit Zinc does not allow (shaystack writes pint's names,
`7.14meter / second`, `595.6watt / meter ** 2`) is read with the spaces taken out and the powers as
superscripts (`7.14meter/second`, `595.6watt/meter²`), or without its unit where that is not enough;
any other cell that cannot be read alone is left empty (null). Only a grid that does not parse is
mended, and each kind of mend is said."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
#: What a Zinc decoder raises on text that is not Zinc
DECODING_ERRORS = (ValueError, LookupError, TypeError, AttributeError)

#: A number and a unit: 7.14m/s, and what Zinc does not allow, 7.14meter / second, 595.6watt / meter ** 2
NUMBER_UNIT = re.compile(r"^(-?\d[\d_]*(?:\.\d+)?(?:[eE][+-]?\d+)?)([a-zA-Z%_$\u0080-\uffff].*)$")
ZINC_UNIT = re.compile(r"^[a-zA-Z%_/$\u0080-\uffff]+$")
POWERS = {"**2": "²", "**3": "³", "^2": "²", "^3": "³"}


def zinc_unit(unit: str) -> str | None:
    """A unit as Zinc allows it: spaces taken out, pint's powers as superscripts; None where it still is not."""
    unit = re.sub(r"\s+", "", unit)
    for power, superscript in POWERS.items():
        unit = unit.replace(power, superscript)
    return unit if ZINC_UNIT.match(unit) else None


def cells(line: str) -> list[str]:
    """A Zinc row's cells: split at the commas outside strings ("a, b" is one cell)."""
    out, start, quoted, escaped = [], 0, False, False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = quoted
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            out.append(line[start:i])
            start = i + 1
    out.append(line[start:])
    return out


def mend(text: str, parse: Callable[[str], T]) -> tuple[T, list[str]] | None:
    """The grid mended and decoded by `parse`, and what was done (one line per kind, with its first
    example and how many cells); None where the header itself cannot be read or the mended text
    still cannot."""
    def readable(zinc: str) -> bool:
        return decoded(parse, zinc) is not None

    lines = text.split("\n")
    if len(lines) < 2 or not readable("\n".join(lines[:2]) + "\n"):
        return None
    rows = [cells(line) if line.strip() else [] for line in lines[2:]]   # [] joins back to an empty line
    units = [(row, i, match) for row in rows for i, cell in enumerate(row)
             if (match := NUMBER_UNIT.match(cell.strip())) and not ZINC_UNIT.match(match[2])]
    said = []
    mended_units: list[str] = []
    dropped: list[str] = []
    for row, i, match in units:
        unit = zinc_unit(match[2])
        (mended_units if unit else dropped).append(f"{row[i].strip()!r} as {match[1] + (unit or '')!r}")
        row[i] = match[1] + (unit or "")
    if mended_units:
        said.append(f"{len(mended_units)} unit(s) written as Zinc does not allow, mended (the first: "
                    f"{mended_units[0]})")
    if dropped:
        said.append(f"{len(dropped)} unit(s) no Zinc unit can say, dropped (the site file's unit applies; the "
                    f"first: {dropped[0]})")
    grid = decoded(parse, "\n".join(lines[:2] + [",".join(row) for row in rows]))
    if grid is not None:
        return grid, said
    emptied = []
    for row in rows:
        for i, cell in enumerate(row):
            if cell.strip() and not readable(f'ver:"3.0"\nv\n{cell}\n'):
                emptied.append(cell.strip())
                row[i] = ""
    if emptied:
        said.append(f"{len(emptied)} cell(s) that are no Zinc value, read as empty (the first: {emptied[0][:60]!r})")
    grid = decoded(parse, "\n".join(lines[:2] + [",".join(row) for row in rows]))
    return (grid, said) if grid is not None else None


def decoded(parse: Callable[[str], T], text: str) -> T | None:
    """`parse(text)`, or None where the text is not Zinc."""
    try:
        return parse(text)
    except DECODING_ERRORS:
        return None
