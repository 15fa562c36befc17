"""The operator page's chart: the last hours of building power, the event window and its two
baselines (esus's forecast and the utilities' high 5 of 10), as inline SVG drawn on the server. No
script and no style sheet: presentation attributes only, so the page's Content-Security-Policy
(default-src 'self') holds. The drawing is sized for a phone (a 360-unit-wide viewBox: its labels
are 11 px or more on a 390 px screen); the page caps its width on a desktop."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from demand_response.baseline import INTERVAL_S, Baseline

WIDTH, HEIGHT = 360, 210
LEFT, RIGHT, TOP, BOTTOM = 34, 6, 8, 22
FONT = 12
#: power is drawn as means over this many seconds (a 1-minute meter is too busy for a phone)
BUCKET_S = 300
#: an event under way is shown this far ahead at most (its strip and baselines are not a sliver at the edge)
AHEAD_S = 2 * 3600
#: the legend, for the page to show under the chart (a line of it would not fit the phone-sized drawing)
LEGEND = "kW: power (blue), esus's baseline (dashed), the utilities' high 5 of 10 (dotted), event (shaded)"


def power_chart(times_s: np.ndarray, kw: np.ndarray, now_s: float, hours: float, tz: ZoneInfo,
                baselines: Sequence[Baseline] = (), events: Sequence[tuple[float, float]] = ()) -> str:
    """An <svg> of power over the `hours` before `now_s` (5-minute means) and, while an event runs,
    what is left of it (up to AHEAD_S): each event's window shaded, its forecast baseline dashed and
    the utilities' dotted, as steps; empty when there is no power to draw."""
    start = now_s - hours * 3600
    times_s, kw = np.asarray(times_s, dtype=np.float64), np.asarray(kw, dtype=np.float64)
    keep = (times_s >= start) & (times_s <= now_s) & np.isfinite(kw)
    times_s, kw = times_s[keep], kw[keep]
    if times_s.size < 2:
        return ""
    running = [ended for began, ended in events if began <= now_s < ended]
    end = now_s + min(AHEAD_S, max(running) - now_s) if running else now_s
    last = max(0, int(hours * 3600 // BUCKET_S) - 1)   # a sample at `now_s` belongs to the last bucket
    bucket = np.minimum((times_s - start) // BUCKET_S, last).astype(int)
    counts = np.bincount(bucket)
    present = counts > 0
    means = np.bincount(bucket, weights=kw)[present] / counts[present]
    centres = start + (np.flatnonzero(present) + 0.5) * BUCKET_S
    lines: dict[str, list[tuple[float, float, str]]] = {"forecast": [], "standard": []}
    for b in baselines:
        for name, values in (("forecast", b.forecast_kw), ("standard", b.standard_kw)):
            lines[name] += [(b.interval_start_s(i), v, b.event_id) for i, v in enumerate(values)
                            if v is not None and b.interval_start_s(i) < end]
    steps = [v for drawn in lines.values() for _, v, _ in drawn]
    high = float(np.concatenate([means, steps]).max()) * 1.1 or 1.0

    def x(t: float) -> float:
        return LEFT + (min(max(t, start), end) - start) / (end - start) * (WIDTH - LEFT - RIGHT)

    def y(v: float) -> float:
        return TOP + (1 - v / high) * (HEIGHT - TOP - BOTTOM)

    parts = [f'<svg id="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
             f'aria-label="Building power over the last {hours:g} hours" xmlns="http://www.w3.org/2000/svg">']
    for began, ended in events:
        if ended > start and began < end:
            parts.append(f'<rect x="{x(began):.1f}" y="{TOP}" width="{max(1.0, x(ended) - x(began)):.1f}" '
                         f'height="{HEIGHT - TOP - BOTTOM}" fill="#f5a623" fill-opacity="0.2"/>')
    for fraction in (0.0, 0.5, 1.0):
        level = fraction * high
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(level):.1f}" y2="{y(level):.1f}" stroke="#ccc"/>'
                     f'<text x="{LEFT - 3}" y="{y(level) + 4:.1f}" font-size="{FONT}" text-anchor="end">'
                     f"{level:.0f}</text>")
    step_h = 3600 * max(2, round((end - start) / 3600 / 4))   # about four labels
    for t in np.arange(np.ceil(start / step_h) * step_h, end + 1, step_h):
        label = datetime.fromtimestamp(float(t), tz).strftime("%H:%M")
        anchor = "end" if x(t) > WIDTH - RIGHT - 18 else "start" if x(t) < LEFT + 18 else "middle"
        parts.append(f'<text x="{x(t):.1f}" y="{HEIGHT - 6}" font-size="{FONT}" text-anchor="{anchor}">{label}</text>')
    if end > now_s:   # the rest of the event: after this line, only the baselines
        parts.append(f'<line x1="{x(now_s):.1f}" x2="{x(now_s):.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" '
                     'stroke="#888" stroke-width="1"><title>now</title></line>')
    points = " ".join(f"{x(t):.1f},{y(m):.1f}" for t, m in zip(centres, means, strict=True))
    parts.append(f'<polyline points="{points}" fill="none" stroke="#1f5fbf" stroke-width="2"/>')
    for name, dash, colour, what in (("forecast", "6 3", "#333", "esus's baseline"),
                                     ("standard", "2 3", "#8a3ab9", "the utilities' high 5 of 10 baseline")):
        for event_id in dict.fromkeys(e for _, _, e in lines[name]):
            path = " ".join(f"{x(a):.1f},{y(v):.1f} {x(a + INTERVAL_S):.1f},{y(v):.1f}"
                            for a, v, e in lines[name] if e == event_id)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5" '
                         f'stroke-dasharray="{dash}"><title>{html.escape(event_id)}: {what}</title></polyline>')
    parts.append("</svg>")
    return "".join(parts)
