"""Writes grafana/dashboards/*.json from one description, so every query names real schema fields.

    .venv/bin/python scripts/grafana_dashboards.py
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "grafana" / "dashboards"
DATASOURCE = {"type": "influxdb", "uid": "esus-influxdb"}


def flux(measurement: str, fields: list[str], extra: str = "", fn: str = "mean", shift: str = "") -> str:
    field_test = " or ".join(f'r._field == "{f}"' for f in fields)
    query = (f'from(bucket: v.defaultBucket)\n  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n'
             f'  |> filter(fn: (r) => r._measurement == "{measurement}" and ({field_test}))\n')
    if extra:
        query += f"  |> filter(fn: (r) => {extra})\n"
    if shift:
        query += f"  |> timeShift(duration: {shift})\n"
    return query + f"  |> aggregateWindow(every: v.windowPeriod, fn: {fn}, createEmpty: false)"


def panel(title: str, queries: list[str], unit: str = "", kind: str = "timeseries", width: int = 24,
          description: str = "", overrides: list | None = None) -> dict:
    return {"type": kind, "title": title, "description": description, "datasource": DATASOURCE,
            "gridPos": {"w": width, "h": 8},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": overrides or []},
            "targets": [{"refId": chr(65 + i), "datasource": DATASOURCE, "query": q} for i, q in enumerate(queries)]}


def dashboard(uid: str, title: str, panels: list[dict], refresh: str = "1m") -> dict:
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
            "refresh": refresh, "time": {"from": "now-2d", "to": "now"}, "panels": panels}


DASHBOARDS = {
    "esus-power": dashboard("esus-power", "esus: building power", [
        panel("Power, forecast (aligned to its interval) and 90 % bound", [
            flux("power", ["input_kw", "mean_15min_kw"]),
            flux("power", ["forecast_kw", "forecast_upper_kw"], shift="1h"),
            flux("power", ["high_threshold_kw", "low_threshold_kw"], fn="last"),
        ], unit="kwatt", description="forecast_kw is issued 60 minutes before the interval it forecasts; "
              "it is shifted by one hour so it lines up with the power it forecast."),
        panel("High / low load flags", [flux("power", ["high_load", "low_load"], fn="max")], kind="state-timeline",
              width=12),
        panel("Rate of change", [flux("power", ["rate_kw_per_min"])], unit="kW/min", width=12),
        panel("Model RMSE vs persistence (held-out day)", [flux("model", ["rmse_kw", "persistence_rmse_kw"], fn="last")],
              unit="kwatt", width=12),
        panel("BAS stopped writing power", [flux("power", ["stale"], fn="max")], kind="state-timeline", width=12),
        panel("Demand response: event and signal level (0 normal to 3 special)",
              [flux("demand_response", ["event_active", "signal_level"], fn="max")], kind="state-timeline", width=12,
              description="Empty when no shed actions are declared in the site file."),
        panel("Demand response: baseline, measured power and shed delivered (during events)",
              [flux("demand_response", ["baseline_kw", "standard_baseline_kw", "measured_kw", "shed_kw"])],
              unit="kwatt", description="The baselines are frozen at the event's start: esus's forecast carried by the "
              "building's typical day, and the high 5 of the last 10 working days. shed_kw = baseline_kw - measured_kw "
              "(the 15-minute interval so far)."),
        panel("Shed overrides acknowledged, and failing (retrying)",
              [flux("dr_override", ["shed", "failing"], fn="max")], kind="state-timeline", width=12,
              description="One row per shed action and field; the operator page can release any of them."),
    ]),
    "esus-rooms": dashboard("esus-rooms", "esus: rooms", [
        panel("Room temperatures and setpoints",
              [flux("bms", ["value"], 'r.kind == "temperature" or r.kind == "setpoint_heating" or '
                                      'r.kind == "setpoint_cooling"')], unit="celsius"),
        panel("CO2", [flux("bms", ["value"], 'r.kind == "co2"')], unit="ppm", width=12),
        panel("Façade irradiance (BMS) and wind", [flux("bms", ["value"], 'r.kind == "irradiance" or '
                                                                         'r.kind == "wind_speed"')], width=12),
    ]),
    "esus-shades": dashboard("esus-shades", "esus: shades and sun", [
        panel("Shade positions", [flux("shades", ["position_pct", "target_pct"])], unit="percent"),
        panel("Modes (1 auto 2 bas 3 manual 4 wind 5 frost 6 fault 7 disabled)",
              [flux("shades", ["mode_code"], fn="last")], kind="state-timeline", width=12),
        panel("Automatic moves today", [flux("shades", ["moves_today"], fn="max")], width=12),
        panel("Façade irradiance, measured and forecast", [flux("solar", ["poa_wm2", "poa_forecast_wm2"])],
              unit="W/m²", width=12),
        panel("Sun elevation and angle of incidence", [flux("solar", ["elevation_deg", "aoi_deg"])], unit="degree",
              width=12),
        panel("Avoided solar gain today", [flux("solar", ["avoided_gain_kwh"], fn="last")], unit="kwatth", width=12),
        panel("Wall-switch holds and wind lockouts", [flux("shades", ["hold", "lockout"], fn="max")],
              kind="state-timeline", width=12),
    ]),
    "esus-health": dashboard("esus-health", "esus: service health", [
        panel("Outbox depth (lines waiting for InfluxDB)", [flux("health", ["outbox_depth"], fn="max")], width=12),
        panel("Dropped and dead-letter lines", [flux("health", ["outbox_dropped", "outbox_dead"], fn="last")],
              width=12),
        panel("Minute tick lateness", [flux("health", ["tick_lag_s"], fn="max")], unit="s", width=12),
        panel("Resident memory", [flux("health", ["rss_mb"], fn="max")], unit="decmbytes", width=12),
        panel("BMS errors and BACnet writes", [flux("health", ["bms_errors", "bacnet_writes"], fn="last")], width=24),
    ]),
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, board in DASHBOARDS.items():
        (OUT / f"{name}.json").write_text(json.dumps(board, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {OUT / name}.json")


if __name__ == "__main__":
    main()
