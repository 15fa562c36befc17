"""The operator page's chart: inline SVG with the power, the event window and its baseline; no
script and no style attribute (the page's CSP forbids them), nothing at all without power."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from demand_response.baseline import Baseline
from demand_response.chart import power_chart

TZ = ZoneInfo("Europe/Copenhagen")
NOW = 1_784_120_400.0   # 2026-07-15 15:00 local


def test_the_chart_draws_power_the_event_and_its_baseline_as_plain_svg() -> None:
    t = NOW - 60 * np.arange(6 * 60)[::-1]
    kw = np.where((t >= NOW - 3600) & (t < NOW), 37.0, 45.0)
    baseline = Baseline("e1", NOW - 3600, (45.0, 45.0, 46.0, 46.0), (44.0,) * 4, "forecast")
    svg = power_chart(t, kw, NOW, 6, TZ, [baseline], [(NOW - 3600, NOW + 1800)])
    root = ET.fromstring(svg)   # well-formed
    ns = "{http://www.w3.org/2000/svg}"
    power, forecast, standard = root.findall(f"{ns}polyline")
    assert len(power.get("points", "").split()) == 72                   # 6 hours of 5-minute means
    assert len(forecast.get("points", "").split()) == 8 and forecast.get("stroke-dasharray") == "6 3"
    assert len(standard.get("points", "").split()) == 8 and standard.get("stroke-dasharray") == "2 3"
    assert "high 5 of 10" in standard.find(f"{ns}title").text
    (event,) = root.findall(f"{ns}rect")                                 # the event window, its rest included:
    (now,) = [line for line in root.findall(f"{ns}line") if line.find(f"{ns}title") is not None]
    right = float(event.get("x")) + float(event.get("width"))
    assert right == pytest.approx(360 - 6) and right - float(now.get("x1")) > 20   # half an hour to go, visible
    labels = [e.text for e in root.findall(f"{ns}text")]
    assert "10:00" in labels and "14:00" in labels                       # local hours
    assert all(float(e.get("font-size")) >= 12 for e in root.findall(f"{ns}text"))   # 11 px on a 390 px phone
    assert "<script" not in svg and "style=" not in svg and not re.search(r"href", svg)


def test_no_power_no_chart() -> None:
    assert power_chart(np.array([]), np.array([]), NOW, 6, TZ) == ""
    old = NOW - 86400 - 60 * np.arange(10)
    assert power_chart(old, np.full(10, 30.0), NOW, 6, TZ) == ""        # nothing in the last 6 hours
