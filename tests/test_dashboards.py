"""The Grafana dashboards, run for real: every panel's InfluxQL query, expanded as Grafana expands
it, against Debian's InfluxDB 1.6 holding a day of three sites' lines built by the telemetry
module. A query that fails, returns nothing, mixes sites or disagrees with what was written fails."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from esus.state.telemetry import SCHEMA
from tests.grafana_macros import BUILTIN, expand, used_variables
from tests.influx1 import BINARY, MISSING, InfluxV1
from tests.site_day import EXAMPLE_SITE, covered_names, site_day

ROOT = Path(__file__).resolve().parent.parent
BOARDS = {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "grafana" / "dashboards").glob("*.json"))}
DATASOURCES = yaml.safe_load((ROOT / "grafana/provisioning/datasources/esus.yml").read_text())["datasources"]
DATABASE = "esus"
#: Three sites of different sizes; "harbour" went silent 30 minutes ago, "school" has a group locked out.
SITES = {"tmv23": 1.0, "school": 0.6, "harbour": 1.7}
SILENT, SILENT_MINUTES, LOCKED_SITE, LOCKED_GROUP = "harbour", 30, "school", "west"
CHOSEN = ["tmv23", "harbour"]   # the site variable's selection in most checks


def targets() -> Iterator[tuple[str, dict, dict]]:
    for name, board in BOARDS.items():
        for panel in board["panels"]:
            for target in panel["targets"]:
                yield f"{name}: {panel['title']} [{target['refId']}]", panel, target


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InfluxV1, int, int, dict[str, list[str]]]]:
    """InfluxDB 1.6 with the last 24 hours of the three sites, written through /write."""
    if BINARY is None:
        pytest.fail(MISSING)
    influx = InfluxV1(tmp_path_factory.mktemp("influx1")).start()
    try:
        influx.create_database(DATABASE)
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        start = end - timedelta(days=1)
        written = {}
        for site, scale in SITES.items():
            count = 24 * 60 - (SILENT_MINUTES if site == SILENT else 0)
            lines = site_day(site, start, scale, count, LOCKED_GROUP if site == LOCKED_SITE else None)
            lines = [text for text in lines if int(text.rsplit(" ", 1)[1]) <= end.timestamp() * 1000]
            influx.write(DATABASE, lines)
            written[site] = lines
        yield influx, int(start.timestamp() * 1000), int(end.timestamp() * 1000), written
    finally:
        influx.stop()


def run(influx: InfluxV1, query: str) -> list[dict]:
    results = influx.query(query, DATABASE)
    assert len(results) == 1
    return results[0].get("series", [])


def field_values(lines: list[str], measurement: str, field: str) -> pd.Series:
    """One field of the written lines, by time (ms)."""
    pattern = re.compile(rf"(?:^|,){field}=([-0-9.e+]+)")
    out = {}
    for text in lines:
        if text.startswith(measurement + ",") and (match := pattern.search(text.split(" ", 1)[1])):
            out[int(text.rsplit(" ", 1)[1])] = float(match.group(1))
    return pd.Series(out).sort_index()


def test_the_day_covers_every_field_of_the_schema() -> None:
    lines = site_day("x", datetime(2026, 6, 10, tzinfo=UTC), count=24 * 60)
    seen = covered_names(lines)
    for name, spec in SCHEMA.items():
        assert seen[name] == set(spec.fields) | set(spec.string_fields), name


def test_every_panel_query_runs_and_keeps_to_the_chosen_sites(server) -> None:
    influx, start_ms, end_ms, _ = server
    checked = 0
    for where, panel, target in targets():
        query = expand(target["query"], start_ms, end_ms, {"site": CHOSEN, "room": ["1.213", "1.215"]},
                       min_interval=panel.get("interval"))
        series = run(influx, query)
        if '"site"' not in query.rsplit("GROUP BY", 1)[1]:   # one series over the chosen sites
            assert len(series) == 1 and "site" not in series[0].get("tags", {}), where
            checked += 1
            continue
        sites = {s["tags"]["site"] for s in series}
        expected = set(CHOSEN)
        if "samples_10min" in query:
            expected -= {SILENT}          # empty cell, shown red: no power in the last 10 minutes
        if "shade_groups_held" in query:
            expected = set()              # the chosen sites have no group held
        assert sites == expected, f"{where}: sites {sorted(sites)}, expected {sorted(expected)}\n{query}"
        if expected:
            values = [v for s in series for row in s["values"] for v in row[1:]]
            assert values and all(isinstance(v, int | float) and math.isfinite(v) for v in values), where
        checked += 1
    assert checked >= 30


def test_the_site_variable_and_all(server) -> None:
    influx, start_ms, end_ms, _ = server
    for name, board in BOARDS.items():
        for variable in board["templating"]["list"]:
            values = [row[1] for s in run(influx, expand(variable["query"], start_ms, end_ms, {"site": list(SITES)}))
                      for row in s["values"]]
            if variable["name"] == "site":
                assert sorted(set(values)) == sorted(SITES), name   # one series per measurement; Grafana merges them
            else:
                assert set(values) == {p.room for p in EXAMPLE_SITE.bms.points}, name
    # All: Grafana sends every value; the portfolio table then has a row per site
    held = next(t for _, _, t in targets() if "shade_groups_held" in t["query"])
    series = run(influx, expand(held["query"], start_ms, end_ms, {"site": list(SITES)}))
    assert [(s["tags"]["site"], s["values"][0][1]) for s in series] == [(LOCKED_SITE, 1)]


def test_a_table_of_several_queries_merges_into_one_row_per_site(server) -> None:
    """Grafana's merge joins rows whose common fields (time, site) are equal: every query of such a
    table must date its row at the start of the range."""
    influx, start_ms, end_ms, written = server
    tables = [p for board in BOARDS.values() for p in board["panels"] if p["type"] == "table" and len(p["targets"]) > 1]
    assert tables
    for panel in tables:
        rows: dict[str, dict[str, float]] = {}
        for target in panel["targets"]:
            for s in run(influx, expand(target["query"], start_ms, end_ms, {"site": list(SITES)})):
                (row,) = s["values"]
                assert row[0] == start_ms, f"{panel['title']} [{target['refId']}] is dated {row[0]}, not {start_ms}"
                rows.setdefault(s["tags"]["site"], {}).update(zip(s["columns"][1:], row[1:], strict=True))
        assert sorted(rows) == sorted(SITES)
        assert rows[SILENT].get("samples_10min") is None and rows["tmv23"]["samples_10min"] >= 8
        assert rows[LOCKED_SITE]["shade_groups_held"] == 1 and "shade_groups_held" not in rows["tmv23"]
        for site in SITES:   # each site's own last power, whenever it came (harbour's is 30 minutes old)
            assert rows[site]["power_kw"] == pytest.approx(field_values(written[site], "power", "input_kw").iloc[-1])


def test_power_panels_equal_what_was_written(server) -> None:
    influx, start_ms, end_ms, written = server
    variables = {"site": list(SITES)}
    (query,) = [t["query"] for where, _, t in targets() if where.startswith("esus-portfolio: Last power sample")]
    for s in run(influx, expand(query, start_ms, end_ms, variables)):
        site = s["tags"]["site"]
        power = field_values(written[site], "power", "input_kw")
        assert s["values"] == [[int(power.index[-1]), pytest.approx(power.iloc[-1])]], site
    chart = next(t for where, _, t in targets() if where.startswith("esus-power: Power,") and t["refId"] == "A")
    expanded = expand(chart["query"], start_ms, end_ms, variables)
    bucket_ms = int(re.search(r"GROUP BY time\((\d+)m\)", expanded).group(1)) * 60_000
    for s in run(influx, expanded):
        power = field_values(written[s["tags"]["site"]], "power", "input_kw")
        expected = power.groupby(power.index // bucket_ms * bucket_ms).mean()
        got = pd.Series({row[0]: row[1] for row in s["values"]})
        assert list(got.index) == list(expected.index)
        assert got.to_numpy() == pytest.approx(expected.to_numpy())


@pytest.mark.parametrize(("name", "field", "inner"), [("power_kw", "mean_kw", "mean"),
                                                    ("forecast_kw", "forecast_kw", "mean"),
                                                    ("sites_in_event", "event_active", "max"),
                                                    ("shed_kw", "shed_kw", "mean")])
def test_the_estate_charts_sum_the_chosen_sites_only(server, name: str, field: str, inner: str) -> None:
    """Each chart sums, per interval of at least 15 minutes, the chosen sites' own aggregate of their
    interval lines; the sites in an event are counted, two at most."""
    influx, start_ms, end_ms, written = server
    (panel, target), = [(p, t) for _, p, t in targets() if f'sum("{name}")' in t["query"]]
    assert panel["interval"] == "15m"
    for range_ms, bucket_ms in ((3_600_000, 900_000), (end_ms - start_ms, 900_000)):
        expanded = expand(target["query"], end_ms - range_ms, end_ms, {"site": CHOSEN}, min_interval=panel["interval"])
        assert f"GROUP BY time({bucket_ms // 60_000}m)" in expanded
        per_site = []
        for site in CHOSEN:
            values = field_values(written[site], "interval_15min", field)
            values = values[(values.index >= end_ms - range_ms) & (values.index <= end_ms)]
            per_site.append(values.groupby(values.index // bucket_ms * bucket_ms).agg(inner))
        expected = pd.concat(per_site, axis=1).sum(axis=1)
        series = run(influx, expanded)
        got = pd.Series({row[0]: row[1] for s in series for row in s["values"]})
        assert len(series) == (0 if expected.empty else 1)   # the shed: no event in the last hour
        assert list(got.index) == list(expected.index)
        assert got.to_numpy() == pytest.approx(expected.to_numpy())
    if name == "sites_in_event":   # over the day: both chosen sites had their event at the same hours
        assert set(got) == {0, 2}


def test_the_forecast_is_drawn_at_the_time_it_forecast(server) -> None:
    influx, start_ms, end_ms, written = server
    site = "tmv23"
    issued = field_values(written[site], "power", "forecast_kw")
    forecast = run(influx, f'SELECT "kw" FROM "forecast" WHERE "site" = \'{site}\'')[0]["values"]
    drawn = pd.Series({t: v for t, v in forecast})
    assert drawn.index[0] == issued.index[0] + 3_600_000
    assert drawn.to_numpy() == pytest.approx(issued.to_numpy()[: len(drawn)])


def test_dashboards_are_consistent() -> None:
    """Unique panel ids, data sources that resolve, every variable used is defined, only schema names."""
    uids = {source["uid"] for source in DATASOURCES}
    assert set(BOARDS) == {"esus-portfolio", "esus-power", "esus-rooms", "esus-shades", "esus-health"}
    for name, board in BOARDS.items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        defined = {v["name"] for v in board["templating"]["list"]}
        for variable in board["templating"]["list"]:
            assert variable["datasource"]["uid"] in uids
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] in uids
            for target in panel["targets"]:
                where = f"{name}: {panel['title']}"
                assert target["datasource"]["uid"] in uids and target["rawQuery"], where
                text = target["query"] + target.get("alias", "")
                unknown = {v for v in used_variables(text) if v not in defined | BUILTIN and not v.startswith("tag_")}
                assert not unknown, f"{where}: undefined variables {unknown}"
                assert_schema_names(where, target["query"])


def assert_schema_names(where: str, query: str) -> None:
    for select, measurement in re.findall(r'SELECT ((?:(?!FROM).)*?) FROM "(\w+)"', query):
        spec = SCHEMA[measurement]
        for field in re.findall(r'\w+\("(\w+)"\)', select):
            assert field in spec.fields, f"{where}: {measurement} has no field {field}"
        tail = query.split(f'FROM "{measurement}"', 1)[1]
        groups = " ".join(re.findall(r"GROUP BY ([^)]*?)(?: fill|\)|$)", tail))
        for tag in re.findall(r'"(\w+)" (?:=~|=)', tail) + re.findall(r'"(\w+)"', groups):
            assert tag in ("site",) + spec.tags, f"{where}: {measurement} has no tag {tag}"


def test_dashboards_are_generated_from_the_script() -> None:
    spec = importlib.util.spec_from_file_location("dashboards", ROOT / "scripts" / "grafana_dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, board in module.DASHBOARDS.items():
        assert BOARDS[name] == json.loads(json.dumps(board)), f"run scripts/grafana_dashboards.py ({name})"
