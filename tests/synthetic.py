"""Synthetic building power: a working-day profile with noise, for fast forecast tests."""

from __future__ import annotations

import numpy as np

from forecast.series import Grid


def office_power(days: int, step_s: int = 300, seed: int = 0, start_s: int = 1_656_633_600) -> Grid:
    """Base 5 kW, 20 kW more during working hours on weekdays, cycling noise. Starts on a Friday."""
    rng = np.random.default_rng(seed)
    n = days * 86400 // step_s
    t = start_s + np.arange(n) * step_s
    hour = (t % 86400) / 3600
    weekday = ((t // 86400) + 3) % 7
    working = (weekday < 5) & (hour >= 7) & (hour < 18)
    values = 5 + 20 * working + 3 * np.sin(2 * np.pi * hour / 24) + rng.normal(0, 1.5, n)
    return Grid(int(t[0]), step_s, values)
