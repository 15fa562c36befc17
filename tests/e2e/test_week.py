"""The whole service through a replayed stretch of the week (see tests/e2e/week.py for the scene).

By default 3.5 simulated days, Sunday 21:00 to Thursday 09:00, in which every scripted event of the
week happens (the first training, the windy afternoon, the BMS outage, the occupant's press and its
hold expiring, the time-series server going away, the kill -9 half-way): about 9 minutes at 600x.
E2E_DAYS=7 replays the whole week (about 17 minutes); bench/soak.py runs 30 days. E2E_SPEED sets
the pace. `-m "not e2e"` leaves it out of a quick run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.checks import all_checks, figures
from tests.e2e.week import Week


@pytest.mark.e2e
@pytest.mark.timeout(2400)
def test_a_replayed_week_with_a_crash_in_the_middle(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    week = Week(tmp_path, days=float(os.environ.get("E2E_DAYS", 3.5)),
                speed=float(os.environ.get("E2E_SPEED", 600)))
    week.play()
    checks = all_checks(week)
    report = "\n".join([figures(week)] + [check.line() for check in checks])
    with capsys.disabled():  # the report is the point of the run: shown even when it passes
        print("\nend to end:\n" + report)
    assert all(check.ok for check in checks), report
