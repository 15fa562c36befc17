"""The operator page's chart: the last hours of building power, the event window and its baseline,
as inline SVG drawn on the server. No script and no style sheet: presentation attributes only, so
the page's Content-Security-Policy (default-src 'self') holds, and it scales to a phone's width."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from demand_response.baseline import INTERVAL_S, Baseline

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 24
#: power is drawn as means over this many seconds (a 1-minute meter is too busy for a phone)
BUCKET_S = 300


def power_chart(times_s: np.ndarray, kw: np.ndarray, now_s: float, hours: float, tz: ZoneInfo,
                baselines: Sequence[Baseline] = (), events: Sequence[tuple[float, float]] = ()) -> str:
    """An <svg> of power over the `hours` before `now_s` (5-minute means), each event's window
    shaded and its forecast baseline drawn as steps; empty when there is no power to draw."""
    start = now_s - hours * 3600
    times_s, kw = np.asarray(times_s, dtype=np.float64), np.asarray(kw, dtype=np.float64)
    keep = (times_s >= start) & (times_s <= now_s) & np.isfinite(kw)
    times_s, kw = times_s[keep], kw[keep]
    if times_s.size < 2:
        return ""
    last = max(0, int(hours * 3600 // BUCKET_S) - 1)   # a sample at `now_s` belongs to the last bucket
    bucket = np.minimum((times_s - start) // BUCKET_S, last).astype(int)
    counts = np.bincount(bucket)
    present = counts > 0
    means = np.bincount(bucket, weights=kw)[present] / counts[present]
    centres = start + (np.flatnonzero(present) + 0.5) * BUCKET_S
    steps = [(b.interval_start_s(i), v) for b in baselines for i, v in enumerate(b.forecast_kw) if v is not None]
    values = np.concatenate([means, [v for _, v in steps]])
    low, high = 0.0, float(values.max()) * 1.1 or 1.0

    def x(t: float) -> float:
        return LEFT + (min(max(t, start), now_s) - start) / (now_s - start) * (WIDTH - LEFT - RIGHT)

    def y(v: float) -> float:
        return TOP + (1 - (v - low) / (high - low)) * (HEIGHT - TOP - BOTTOM)

    parts = [f'<svg id="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
             f'aria-label="Building power over the last {hours:g} hours" xmlns="http://www.w3.org/2000/svg">']
    for began, ended in events:
        if ended > start and began < now_s:
            parts.append(f'<rect x="{x(began):.1f}" y="{TOP}" width="{max(1.0, x(ended) - x(began)):.1f}" '
                         f'height="{HEIGHT - TOP - BOTTOM}" fill="#f5a623" fill-opacity="0.18"/>')
    for fraction in (0.0, 0.5, 1.0):
        level = low + fraction * (high - low)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(level):.1f}" y2="{y(level):.1f}" stroke="#ccc"/>'
                     f'<text x="{LEFT - 4}" y="{y(level) + 4:.1f}" font-size="11" text-anchor="end">{level:.0f}</text>')
    for t in np.arange(np.ceil(start / 3600) * 3600, now_s + 1, 3600 * max(1, round(hours / 6))):
        label = datetime.fromtimestamp(float(t), tz).strftime("%H:%M")
        anchor = "end" if x(t) > WIDTH - RIGHT - 20 else "middle"   # the last hour stays inside the frame
        parts.append(f'<text x="{x(t):.1f}" y="{HEIGHT - 6}" font-size="11" text-anchor="{anchor}">{label}</text>')
    line = " ".join(f"{x(t):.1f},{y(m):.1f}" for t, m in zip(centres, means, strict=True))
    parts.append(f'<polyline points="{line}" fill="none" stroke="#1f5fbf" stroke-width="2"/>')
    for b in baselines:
        path = []
        for i, kw_i in enumerate(b.forecast_kw):
            if kw_i is not None and b.interval_start_s(i) < now_s:
                a = b.interval_start_s(i)
                path.append(f"{x(a):.1f},{y(kw_i):.1f} {x(a + INTERVAL_S):.1f},{y(kw_i):.1f}")
        if path:
            parts.append(f'<polyline points="{" ".join(path)}" fill="none" stroke="#333" stroke-width="1.5" '
                         f'stroke-dasharray="5 3"><title>{html.escape(b.event_id)} baseline</title></polyline>')
    parts.append(f'<text x="{LEFT + 4}" y="{TOP + 12}" font-size="11">kW: power (blue), baseline (dashed), '
                 "event (shaded)</text></svg>")
    return "".join(parts)
