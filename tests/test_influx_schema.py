"""esus's lines obey InfluxDB 3's schema rules (and so 1.x's and 2.x's, which are looser): within a
table no tag key equals a field key, a table's tag keys are the same on every line, a field's type
never changes, names are plain and within the limits."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from esus.state.telemetry import SCHEMA, line, quantized
from tests.line_protocol import field_type, parse
from tests.site_day import site_day

#: InfluxDB 3 (Clustered, Cloud Dedicated) allows 250 columns per table by default; Core 500.
MAX_COLUMNS = 250
#: Plain names: no quoting needed in SQL or InfluxQL, and none reserved ("time", "_…", "iox::…").
NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
RESERVED = {"time"}
T0 = datetime(2026, 6, 1, tzinfo=UTC)


def test_the_schema_itself() -> None:
    for name, spec in SCHEMA.items():
        tags = {"site", *spec.tags}
        fields = set(spec.fields) | set(spec.string_fields)
        assert not tags & fields, f"{name}: {tags & fields} is both a tag and a field"
        assert len(tags) + len(fields) + 1 <= MAX_COLUMNS, name
        for column in (name, *tags, *fields):
            assert NAME.fullmatch(column) and column not in RESERVED, f"{name}: {column!r} is not a plain name"


values = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                   st.floats(allow_nan=True, allow_infinity=True))
tag_text = st.text(max_size=12)


@given(st.sampled_from(sorted(SCHEMA)), st.data())
def test_every_line_has_its_table_s_tags_and_float_or_string_fields(measurement: str, data: st.DataObject) -> None:
    spec = SCHEMA[measurement]
    fields = {f: data.draw(values, label=f) for f in spec.fields}
    fields |= {f: data.draw(st.text(max_size=20), label=f) for f in spec.string_fields}
    tags = {t: data.draw(tag_text, label=t) for t in spec.tags}
    text = line(measurement, fields, T0, tags, data.draw(tag_text, label="site"))
    if text is None:
        return
    name, got_tags, got_fields = parse(text)
    assert name == measurement
    assert set(got_tags) == {"site", *spec.tags} and all(got_tags.values())
    for field, literal in got_fields.items():
        assert field_type(literal) == ("string" if field in spec.string_fields else "float"), (field, literal)


def test_a_day_of_real_lines_keeps_each_table_s_tags_and_types() -> None:
    tag_sets: dict[str, set[frozenset[str]]] = {}
    types: dict[tuple[str, str], set[str]] = {}
    for text in site_day("tmv23", T0, count=180):
        name, tags, fields = parse(text)
        tag_sets.setdefault(name, set()).add(frozenset(tags))
        for field, literal in fields.items():
            types.setdefault((name, field), set()).add(field_type(literal))
    assert set(tag_sets) == set(SCHEMA)
    for name, sets in tag_sets.items():
        assert sets == {frozenset({"site", *SCHEMA[name].tags})}, name
    for key, seen in types.items():
        assert len(seen) == 1, f"{key}: {seen}"


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_are_kept_to_a_thousandth_of_their_unit(number: float) -> None:
    kept = quantized(number)
    assert abs(kept - number) <= 1 / 2048 or abs(number) >= 2.0 ** 52
    assert quantized(kept) == kept and quantized(round(number)) == round(number)
