"""The outdoor temperature in the running forecast: the target hour's from the weather forecast, else
the BMS thermometer's, kept in the store at the minute it was known; the nightly training learns
from what was kept; when neither source has a value the forecast goes on from power alone."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from esus.parts.bacnet import BacnetBridge
from esus.parts.forecasting import ForecastService
from esus.parts.outdoor import TEMPERATURE_SERIES, OutdoorTemperature
from esus.parts.power import POWER_SERIES, PowerInput
from esus.runtime.clock import ManualClock
from esus.settings.config import Settings, load_settings
from esus.settings.errors import SettingsError
from esus.settings.site import BmsPoint
from esus.state.outbox import Outbox
from esus.state.store import HistoryStore
from esus.state.telemetry import Telemetry
from shades.weather import Weather, clear_sky
from tests.bacnet_harness import free_udp_port

NOW = datetime(2026, 6, 22, 0, 0, tzinfo=UTC)
POINT = "9001"
DAYS = 16


def site_settings(tmp_path: Path, mode: str = "auto") -> Settings:
    settings = load_settings({"ESUS_BACNET_ADDRESS": f"127.0.0.1/8:{free_udp_port()}",
                              "ESUS_STATE_DIR": str(tmp_path / "state")}, demo=True)
    site = settings.site
    thermometer = BmsPoint(externallogid=9001, source="/weather/OAT", room="tmv23", kind="outdoor_temperature",
                           unit="°C")
    site = site.model_copy(update={"forecast": site.forecast.model_copy(update={"outdoor_temperature": mode}),
                                   "bms": site.bms.model_copy(update={"points": [*site.bms.points, thermometer]})})
    return dataclasses.replace(settings, site=site)


def cooled_history(store: HistoryStore) -> None:
    """16 days of 1-minute power whose chiller follows the outdoor temperature, which changes level
    every hour; and what a forecast would have known of each target hour's temperature."""
    rng = np.random.default_rng(8)
    t = int(NOW.timestamp()) - DAYS * 86400 + 60 * np.arange(DAYS * 1440)
    hour = (t % 86400) / 3600
    working = (((t // 86400) + 3) % 7 < 5) & (hour >= 7) & (hour < 18)
    temperature = 22 + 6 * np.sin(2 * np.pi * (hour - 9) / 24) + np.repeat(rng.normal(0, 5, t.size // 60 + 1),
                                                                            60)[: t.size]
    power = 6 + 15 * working + 1.5 * np.maximum(temperature - 18, 0) + rng.normal(0, 0.5, t.size)
    store.append_many({POWER_SERIES: list(zip(t.tolist(), power.tolist(), strict=True)),
                       # known an hour ahead (the target hour's, as a weather forecast gives it)
                       TEMPERATURE_SERIES: list(zip((t - 3600).tolist(), temperature.tolist(), strict=True))})


def forecast_weather(at: datetime, celsius: float) -> Weather:
    index = pd.date_range(at - timedelta(hours=2), at + timedelta(hours=6), freq="h", tz="UTC")
    return Weather("forecast", at, pd.DataFrame({"temperature_c": celsius}, index=index))


class Sources:
    """What the weather part and the BMS poller would answer; a test changes them."""

    def __init__(self) -> None:
        self.weather = forecast_weather(NOW, 31.0)
        self.bms: float | None = 24.0

    def bms_value(self, point: int, max_age: timedelta) -> float | None:
        assert point == POINT and max_age > timedelta(0)
        return self.bms


def build(tmp_path: Path, mode: str = "auto") -> tuple[ForecastService, BacnetBridge, Sources, Outbox]:
    settings = site_settings(tmp_path, mode)
    store = HistoryStore(settings.state_dir / "history.db")
    cooled_history(store)
    clock, sources, outbox = ManualClock(NOW), Sources(), Outbox(store)
    telemetry = Telemetry(outbox, "t")
    power = PowerInput(telemetry, clock, min_kw=-50, max_kw=500, stale_after=timedelta(minutes=5))
    bridge = BacnetBridge(settings, power)
    outdoor = OutdoorTemperature(settings.site, lambda: sources.weather, sources.bms_value)
    return ForecastService(settings, store, power, bridge, clock, telemetry, outdoor), bridge, sources, outbox


def kept(service: ForecastService) -> list[tuple[float, float]]:
    times, values = service.store.range(TEMPERATURE_SERIES, NOW, NOW + timedelta(hours=1))
    return list(zip(times.tolist(), values.tolist(), strict=True))


@pytest.mark.slow
def test_the_forecast_takes_the_weather_then_the_bms_then_power_alone(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, bridge, sources, outbox = build(tmp_path)
        try:
            await bridge.start()
            await service.nightly_training(NOW)       # the real job, in its own process
            assert service.model is not None and service.model.with_temperature is not None
            assert service.last_training["temperature_rows"] > 0
            assert service.last_training["temperature_gain_pct"] < 0

            await service.minute_tick(NOW)            # the weather forecast's, for the target hour
            assert service.outdoor.last == (31.0, "weather forecast")
            assert kept(service) == [(NOW.timestamp(), 31.0)]
            assert service.live.forecast.method == "model with the outdoor temperature"
            assert "outdoor temperature" in str(bridge.device.objects["one-hour-future-power"].description)
            assert any("forecast_temperature_c=31" in line for line in outbox_lines(outbox))

            sources.weather = clear_sky()             # the weather source is gone: the BMS thermometer
            await service.minute_tick(NOW)
            assert service.outdoor.last == (24.0, f"BMS point {POINT}")
            assert service.live.forecast.method == "model with the outdoor temperature"

            sources.bms = None                        # and the thermometer too: power alone, on time
            service.clock.jump(4 * 3600)              # the last kept value is too old to be known
            await service.minute_tick(service.clock.now())
            assert service.outdoor.last is None
            assert service.live.forecast is not None and service.live.forecast.method == "model"
            assert np.isfinite(service.live.forecast.kw)
        finally:
            bridge.close()
            service.store.close()

    asyncio.run(scenario())


def outbox_lines(outbox: Outbox) -> list[str]:
    batch = outbox.oldest(10_000)
    return batch.lines if batch else []


@pytest.mark.parametrize(("mode", "expected"), [
    ("weather", 31.0), ("bms", 24.0), ("none", None),
])
def test_the_site_file_says_which_source_the_forecast_may_use(tmp_path: Path, mode: str,
                                                              expected: float | None) -> None:
    async def scenario() -> None:
        service, bridge, sources, _ = build(tmp_path, mode)
        try:
            await bridge.start()
            await service.minute_tick(NOW)
            assert (service.outdoor.last or (None,))[0] == expected
            assert kept(service) == ([] if expected is None else [(NOW.timestamp(), expected)])
            if mode == "weather":                    # no fall back to the BMS when the site says weather
                sources.weather = clear_sky()
                await service.minute_tick(NOW + timedelta(minutes=1))
                assert service.outdoor.last is None
        finally:
            bridge.close()
            service.store.close()

    asyncio.run(scenario())


def test_a_failing_source_is_said_once_and_the_forecast_goes_on(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        service, bridge, sources, _ = build(tmp_path)
        try:
            await bridge.start()
            broken = Weather("forecast", NOW, pd.DataFrame({"temperature_c": [1.0]}, index=[0]))  # no times
            sources.weather, sources.bms = broken, None
            for minute in range(3):
                await service.minute_tick(NOW + timedelta(minutes=minute))
                assert service.outdoor.last is None and service.live.forecast is not None
        finally:
            bridge.close()
            service.store.close()

    asyncio.run(scenario())
    assert caplog.text.count("outdoor temperature for the forecast failed") == 1


def test_a_bms_source_without_a_thermometer_is_refused_with_one_line(tmp_path: Path) -> None:
    site = (tmp_path / "site.toml")
    site.write_text('[site]\nname = "x"\nlatitude = 57.0\nlongitude = 9.9\ntimezone = "Europe/Copenhagen"\n'
                    '[forecast]\noutdoor_temperature = "bms"\n')
    with pytest.raises(SettingsError, match='outdoor_temperature = "bms" needs'):
        load_settings({"ESUS_SITE": str(site), "ESUS_BACNET_ADDRESS": "127.0.0.1/8:47808",
                       "ESUS_STATE_DIR": str(tmp_path / "s")})
    site.write_text(site.read_text().replace('"bms"', '"sometimes"'))
    with pytest.raises(SettingsError, match="outdoor_temperature"):
        load_settings({"ESUS_SITE": str(site), "ESUS_BACNET_ADDRESS": "127.0.0.1/8:47808",
                       "ESUS_STATE_DIR": str(tmp_path / "s")})
