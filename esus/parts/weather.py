"""The weather forecast in the service: one source for every part that reads it (the shades'
policy, the power forecast's outdoor temperature), fetched every ten minutes in a worker thread,
cached on disk, clear sky when it cannot be had."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from esus.runtime.clock import Clock
from esus.settings.config import Settings
from esus.state.files import StateFiles, json_damage, set_aside
from shades.weather import OpenMeteo, Weather, WeatherCache, WeatherService

log = logging.getLogger(__name__)

REFRESH_S = 600


def weather_service(settings: Settings, now: Callable[[], datetime]) -> WeatherService:
    """The site's forecast (Open-Meteo unless ESUS_WEATHER_URL=off) over its cache file; a damaged
    cache is set aside with one line."""
    site = settings.site.site
    source = OpenMeteo(site.latitude, site.longitude, settings.weather_url) if settings.weather_url else None
    cached = StateFiles(settings.state_dir).weather
    why = json_damage(cached)
    if why is not None:
        set_aside(cached, why, "the last weather forecast (clear sky until the next one is fetched)")
    return WeatherService(source, WeatherCache(cached), now)


class WeatherPart:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.service = weather_service(settings, clock.now)
        #: called after each refresh (the shades re-plan)
        self.listeners: list[Callable[[], None]] = []

    def weather(self) -> Weather:
        return self.service.weather()

    async def refresh(self, due: datetime) -> None:
        before = self.service.weather().source
        weather = await asyncio.to_thread(self.service.refresh)
        if weather.source != before:
            log.info("weather source is now %s", weather.source)
        for listener in self.listeners:
            listener()

    def close(self) -> None:
        self.service.close()
