"""Writes grafana/dashboards/*.json from one description, so every query names real schema fields.

    .venv/bin/python scripts/grafana_dashboards.py

The queries are InfluxQL: it runs on InfluxDB 1.8, on 2.x (through a DBRP mapping) and on 3.x,
where Flux does not. Every query is filtered by the `site` variable and grouped by site, so two
buildings in one database are never summed or mixed.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "grafana" / "dashboards"
DATASOURCE = {"type": "influxdb", "uid": "esus-influxdb"}
SITE_FILTER = '"site" =~ /^$site$/'


def influxql(measurement: str, fields: list[str], fn: str | tuple[str, ...] = "mean", where: str = "",
             by: tuple[str, ...] = (),
             per_interval: bool = True, window: str = "$timeFilter", source: str = "",
             names: tuple[str, ...] = ()) -> str:
    """One SELECT of `fn` (one, or one per field) over `fields` (named `names`, else as the fields),
    for the chosen sites in the dashboard's range, grouped by site (and `by`), per `$__interval` for
    charts or once for tables. `source` replaces the measurement with a subquery."""
    fns = fn if isinstance(fn, tuple) else (fn,) * len(fields)
    select = ", ".join(f'{f}("{x}") AS "{n}"' for f, x, n in zip(fns, fields, names or fields, strict=True))
    conditions = " AND ".join([SITE_FILTER] + ([f"({where})"] if where else []) + [window])
    groups = (["time($__interval)"] if per_interval else []) + ['"site"'] + [f'"{tag}"' for tag in by]
    query = f'SELECT {select} FROM {source or json.dumps(measurement)} WHERE {conditions} GROUP BY {", ".join(groups)}'
    return query + (" fill(none)" if per_interval else "")


def target(query: str, ref: int, table: bool = False, alias: str = "$tag_site $col") -> dict:
    out = {"refId": chr(65 + ref), "datasource": DATASOURCE, "query": query, "rawQuery": True,
           "resultFormat": "table" if table else "time_series"}
    if not table:
        out["alias"] = alias
    return out


def panel(title: str, queries: list[str], unit: str = "", kind: str = "timeseries", width: int = 24,
          description: str = "", alias: str = "$tag_site $col", height: int = 8, **extra: object) -> dict:
    table = kind == "table"
    return {"type": kind, "title": title, "description": description, "datasource": DATASOURCE,
            "gridPos": {"w": width, "h": height},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": extra.pop("overrides", [])},
            "targets": [target(q, i, table, alias) for i, q in enumerate(queries)], **extra}


def tag_variable(name: str, label: str, query: str) -> dict:
    """A multi-value variable with All, from the tag values InfluxDB has."""
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE, "query": query,
            "definition": query, "multi": True, "includeAll": True, "refresh": 2, "sort": 1,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}


SITE_VARIABLE = tag_variable("site", "Site", 'SHOW TAG VALUES WITH KEY = "site"')


def dashboard(uid: str, title: str, panels: list[dict], refresh: str = "1m", since: str = "now-2d",
              variables: tuple[dict, ...] = ()) -> dict:
    x = y = 0
    for p in panels:  # lay panels out left to right, top to bottom
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y = 0, y + h
        p["gridPos"].update(x=x, y=y)
        x += w
    for i, p in enumerate(panels, 1):
        p["id"] = i
    return {"uid": uid, "title": title, "tags": ["esus"], "timezone": "browser", "schemaVersion": 39,
            "refresh": refresh, "time": {"from": since, "to": "now"},
            "templating": {"list": [SITE_VARIABLE, *variables]}, "panels": panels}


def column(name: str, display: str, unit: str = "", **more: object) -> dict:
    """A portfolio table column: its display name and unit (and thresholds, mappings)."""
    properties = [{"id": "displayName", "value": display}]
    if unit:
        properties.append({"id": "unit", "value": unit})
    properties += [{"id": key, "value": value} for key, value in more.items()]
    return {"matcher": {"id": "byName", "options": name}, "properties": properties}


def red_above(limit: float) -> dict:
    return {"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "red", "value": limit}]}


NONE_IS = [{"type": "special", "options": {"match": "null", "result": {"text": "0", "color": "green", "index": 0}}}]
STALE = [{"type": "special", "options": {"match": "null",
                                         "result": {"text": "none for 10 min", "color": "red", "index": 0}}}]
LOAD_STATE = [{"type": "value", "options": {"0": {"text": "-", "index": 0}, "1": {"text": "ACTIVE", "color": "orange",
                                                                               "index": 1}}}]
PORTFOLIO_COLUMNS = [
    {"matcher": {"id": "byName", "options": "Time"}, "properties": [{"id": "custom.hidden", "value": True}]},
    column("site", "site"),
    column("power_kw", "power now", "kwatt", decimals=1),
    column("mean_15min_kw", "15-min mean", "kwatt", decimals=1),
    column("forecast_kw", "+1 h forecast", "kwatt", decimals=1),
    column("forecast_upper_kw", "+1 h 90 % bound", "kwatt", decimals=1),
    column("high_load", "high load", mappings=LOAD_STATE),
    column("low_load", "low load", mappings=LOAD_STATE),
    column("samples_10min", "power samples in 10 min", mappings=STALE),
    column("shade_groups_held", "shade groups in fault or lockout", mappings=NONE_IS, thresholds=red_above(1),
           custom={"cellOptions": {"type": "color-background"}}),
    column("event_active", "DR event", mappings=LOAD_STATE),
    column("shed_kw", "last shed delivered", "kwatt", decimals=1),
    column("outbox_depth", "outbox depth", thresholds=red_above(1000)),
    column("outbox_peak", "outbox peak", thresholds=red_above(1000)),
]


def estate(measurement: str, field: str, name: str, inner_fn: str = "mean", outer_fn: str = "sum") -> str:
    """One series for all chosen sites: per interval, `outer_fn` over the sites of each site's
    `inner_fn`. At a thousand sites a chart of one line per site is unreadable and slow to send."""
    inner = influxql(measurement, [field], fn=inner_fn, names=(name,))
    return (f'SELECT {outer_fn}("{name}") AS "{name}" FROM ({inner}) WHERE $timeFilter '
            'GROUP BY time($__interval) fill(none)')


def per_site(inner: str, fn: str, field: str, name: str, where: str = "") -> str:
    """An aggregate over a subquery's rows, per site. Its time is the start of the dashboard's range,
    like every query of several selectors, so Grafana's merge puts them all on one row per site."""
    return influxql("", [field], fn=fn, per_interval=False, source=f"({inner})", where=where, names=(name,))


ESTATE_NOTE = ("Read from interval_15min: one line per site and quarter hour, dated at the interval's end, so a "
               "day of a thousand sites is 96,000 points, not 1.4 million. A site that logged nothing in an interval "
               "is missing from that interval's sum.")

SITES_NOW = [
    influxql("power", ["input_kw", "mean_15min_kw", "forecast_kw", "forecast_upper_kw", "high_load", "low_load"],
             fn="last", per_interval=False, names=("power_kw", "mean_15min_kw", "forecast_kw", "forecast_upper_kw",
                                                   "high_load", "low_load")),
    per_site(influxql("power", ["input_kw"], fn="count", per_interval=False, window="time > now() - 10m"),
             "sum", "input_kw", "samples_10min"),
    # shade groups whose last mode is a wind or ice lockout (4, 5), a fault (6) or lost wind data (8)
    per_site(influxql("shades", ["mode_code"], fn="last", by=("group",), per_interval=False),
             "count", "mode_code", "shade_groups_held",
             where='("mode_code" >= 4 AND "mode_code" <= 6 OR "mode_code" >= 8)'),
    influxql("demand_response", ["event_active", "shed_kw"], fn="last", per_interval=False),
    influxql("health", ["outbox_depth", "outbox_depth"], fn=("last", "max"), per_interval=False,
             names=("outbox_depth", "outbox_peak")),
]

DASHBOARDS = {
    "esus-portfolio": dashboard("esus-portfolio", "esus: portfolio", [
        panel("Sites now (one row each)", SITES_NOW, kind="table", height=12, description=(
            "Every query is grouped by site and dated at the start of the range, so Grafana's merge puts them on "
            "one row per site. 'power samples in 10 min' is empty (red) when a site wrote no power for 10 "
            "minutes; the panel beside it says when each site's last sample came. Shade groups count those whose "
            "last mode is a wind, ice or lost-wind-data lockout or a fault."),
            overrides=PORTFOLIO_COLUMNS, width=18, transformations=[{"id": "merge", "options": {}}],
            options={"showHeader": True, "sortBy": [{"displayName": "site", "desc": False}]}),
        panel("Last power sample", [influxql("power", ["input_kw"], fn="last", per_interval=False,
                                             names=("power_kw",))], kind="table", width=6, height=12,
              overrides=[column("Time", "last sample", "dateTimeFromNow"), column("power_kw", "kW", "kwatt")]),
        panel("Estate power: the chosen sites' 15-minute means, and their +1 h forecasts (at the time they "
              "forecast), summed",
              [estate("interval_15min", "mean_kw", "power_kw"), estate("interval_15min", "forecast_kw", "forecast_kw")],
              unit="kwatt", alias="$col", interval="15m", description=ESTATE_NOTE),
        panel("Sites in a demand response event, and the shed they delivered (summed)",
              [estate("interval_15min", "event_active", "sites_in_event", inner_fn="max"),
               estate("interval_15min", "shed_kw", "shed_kw")], alias="$col", interval="15m",
              description=ESTATE_NOTE),
    ], since="now-24h"),
    "esus-power": dashboard("esus-power", "esus: building power", [
        panel("Power, forecast (at the time it forecast) and 90 % bound", [
            influxql("power", ["input_kw", "mean_15min_kw"]),
            influxql("forecast", ["kw", "upper_kw"]),
            influxql("power", ["high_threshold_kw", "low_threshold_kw"], fn="last"),
        ], unit="kwatt", description="The forecast is drawn at the end of the 15-minute interval it forecast, "
              "issued 60 minutes before, so it lines up with the 15-minute mean it forecast."),
        panel("High / low load flags", [influxql("power", ["high_load", "low_load"], fn="max")],
              kind="state-timeline", width=12),
        panel("Rate of change", [influxql("power", ["rate_kw_per_min"])], unit="kW/min", width=12),
        panel("Model RMSE vs persistence (held-out day)",
              [influxql("model", ["rmse_kw", "persistence_rmse_kw"], fn="last")], unit="kwatt", width=12),
        panel("BAS stopped writing power", [influxql("power", ["stale"], fn="max")], kind="state-timeline", width=12),
        panel("Demand response: event and signal level (0 normal to 3 special)",
              [influxql("demand_response", ["event_active", "signal_level"], fn="max")], kind="state-timeline",
              width=12, description="Empty when no shed actions are declared in the site file."),
        panel("Demand response: baseline, measured power and shed delivered (during events)",
              [influxql("demand_response", ["baseline_kw", "standard_baseline_kw", "measured_kw", "shed_kw"])],
              unit="kwatt", description="The baselines are frozen at the event's start: esus's forecast carried by the "
              "building's typical day, and the high 5 of the last 10 working days. shed_kw = baseline_kw - measured_kw "
              "(the 15-minute interval so far)."),
        panel("Demand limiting: the interval's upper bound against the target, the period's peak and headroom",
              [influxql("demand_limit", ["upper_kw", "target_kw", "peak_kw", "floor_kw", "headroom_kw"])],
              unit="kwatt", description="Empty without [demand_limit] in the site file. upper_kw: the 15- or "
              "30-minute interval under way as projected (metered so far plus the rest, with its learnt margin); "
              "target_kw: the fixed target, else the larger of peak_kw (the billing period's so far) and floor_kw "
              "(what the flexibility could have held the last 28 days to); headroom_kw: what a charger may add."),
        panel("Demand limiting: Guideline 36 level (0-3) and minutes shed today",
              [influxql("demand_limit", ["level"], fn="max"), influxql("demand_limit", ["used_min"], fn="last")],
              width=12, description="The reason for each minute's level is the string field `reason`."),
        panel("Shed overrides acknowledged, and failing (retrying)",
              [influxql("dr_override", ["shed", "failing"], fn="max", by=("action",))], kind="state-timeline",
              width=12, alias="$tag_site $tag_action $col",
              description="One row per shed action and field; the operator page can release any of them."),
    ]),
    "esus-rooms": dashboard("esus-rooms", "esus: rooms", [
        panel("Room temperatures and setpoints",
              [influxql("bms", ["value"], where='"room" =~ /^$room$/ AND ("kind" = \'temperature\' OR '
                                                '"kind" = \'setpoint_heating\' OR "kind" = \'setpoint_cooling\')',
                        by=("room", "kind"))], unit="celsius", alias="$tag_site $tag_room $tag_kind"),
        panel("CO2", [influxql("bms", ["value"], where='"room" =~ /^$room$/ AND "kind" = \'co2\'', by=("room",))],
              unit="ppm", width=12, alias="$tag_site $tag_room"),
        panel("Façade irradiance (BMS) and wind",
              [influxql("bms", ["value"], where='"kind" = \'irradiance\' OR "kind" = \'wind_speed\'',
                        by=("room", "kind"))], width=12, alias="$tag_site $tag_room $tag_kind"),
    ], variables=(tag_variable("room", "Room", 'SHOW TAG VALUES FROM "bms" WITH KEY = "room" WHERE "site" =~ '
                                               '/^$site$/'),)),
    "esus-shades": dashboard("esus-shades", "esus: shades and sun", [
        panel("Shade positions", [influxql("shades", ["position_pct", "target_pct"], by=("group",))], unit="percent",
              alias="$tag_site $tag_group $col"),
        panel("Modes (1 auto 2 bas 3 manual 4 wind 5 frost 6 fault 7 disabled 8 wind-data-lost)",
              [influxql("shades", ["mode_code"], fn="last", by=("group",))], kind="state-timeline", width=12,
              alias="$tag_site $tag_group"),
        panel("Automatic moves today", [influxql("shades", ["moves_today"], fn="max", by=("group",))], width=12,
              alias="$tag_site $tag_group"),
        panel("Façade irradiance, measured and forecast",
              [influxql("solar", ["poa_wm2", "poa_forecast_wm2"], by=("facade",))], unit="W/m²", width=12,
              alias="$tag_site $tag_facade $col"),
        panel("Sun elevation and angle of incidence", [influxql("solar", ["elevation_deg", "aoi_deg"], by=("facade",))],
              unit="degree", width=12, alias="$tag_site $tag_facade $col"),
        panel("Avoided solar gain today", [influxql("solar", ["avoided_gain_kwh"], fn="last", by=("facade",))],
              unit="kwatth", width=12, alias="$tag_site $tag_facade"),
        panel("Wall-switch holds and wind lockouts", [influxql("shades", ["hold", "lockout"], fn="max", by=("group",))],
              kind="state-timeline", width=12, alias="$tag_site $tag_group $col"),
        panel("Rooms learnt: day-ahead error on the held-out days", [influxql("shade_room", ["rmse_k", "worst_k"],
                                                                                fn="last", by=("group",))],
              unit="K", width=12, alias="$tag_site $tag_group $col",
              description="After each night's fit (`esus shades rooms` shows it whole): a room model decides only "
                          "with rmse_k at most 0.5 K."),
        panel("Rooms learnt: 1 the room model decides, 0 the VDI 3813 rule",
              [influxql("shade_room", ["validated"], fn="last", by=("group",))], kind="state-timeline", width=12,
              alias="$tag_site $tag_group"),
    ]),
    "esus-health": dashboard("esus-health", "esus: service health", [
        panel("Outbox depth (lines waiting for InfluxDB)", [influxql("health", ["outbox_depth"], fn="max")], width=12),
        panel("Dropped and dead-letter lines", [influxql("health", ["outbox_dropped", "outbox_dead"], fn="last")],
              width=12),
        panel("Minute tick lateness", [influxql("health", ["tick_lag_s"], fn="max")], unit="s", width=12),
        panel("Resident memory", [influxql("health", ["rss_mb"], fn="max")], unit="decmbytes", width=12),
        panel("BMS errors and BACnet writes", [influxql("health", ["bms_errors", "bacnet_writes"], fn="last")],
              width=24),
    ]),
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, board in DASHBOARDS.items():
        (OUT / f"{name}.json").write_text(json.dumps(board, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {OUT / name}.json")


if __name__ == "__main__":
    main()
