"""The service's parts run until it is stopped: a part that ends on its own stops esus loudly
(so systemd restarts it) instead of leaving a half-working service."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from esus.runtime.clock import ManualClock
from esus.settings.config import load_settings
from esus.service import Service
from tests.bacnet_harness import free_udp_port


def test_a_part_that_returns_stops_the_service_with_a_line_that_names_it(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings({"ESUS_BACNET_ADDRESS": f"127.0.0.1/8:{free_udp_port()}",
                              "ESUS_STATE_DIR": str(tmp_path / "state"), "ESUS_WEATHER_URL": "off"}, demo=True)
    service = Service(settings, ManualClock(datetime(2026, 6, 10, 12, 0, tzinfo=UTC)), pin_factory=MockFactory())

    async def finishes_early() -> None:
        await asyncio.sleep(0)

    service.background.append(finishes_early)
    with caplog.at_level(logging.ERROR):
        asyncio.run(asyncio.wait_for(service.run(asyncio.Event()), 30))
    assert "finishes_early ended on its own; stopping esus" in caplog.text
