"""Line protocol read back, for the tests that check what esus writes (InfluxDB's client libraries
write it but do not parse it)."""

from __future__ import annotations


def parse(text: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """(measurement, tags, fields as their literal text) of one line of line protocol."""
    current, escaped, quoted = "", False, False
    sections: list[list[str]] = [[]]
    for ch in text:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"' and len(sections) == 2:   # quotes delimit string field values only
            quoted = not quoted
            current += ch
        elif ch == "," and not quoted:
            sections[-1].append(current)
            current = ""
        elif ch == " " and not quoted:
            sections[-1].append(current)
            sections.append([])
            current = ""
        else:
            current += ch
    sections[-1].append(current)
    assert len(sections) == 3, f"not measurement,tags fields time: {text!r}"
    head, fields, stamp = sections
    assert stamp[0].isdigit()
    return head[0], dict(p.split("=", 1) for p in head[1:]), dict(f.split("=", 1) for f in fields)


def field_type(literal: str) -> str:
    if literal.startswith('"'):
        return "string"
    if literal in ("t", "T", "true", "True", "f", "F", "false", "False"):
        return "boolean"
    if literal.endswith("i"):
        return "integer"
    if literal.endswith("u"):
        return "unsigned"
    float(literal)
    return "float"
