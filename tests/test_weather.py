"""The weather source against a local Open-Meteo stand-in: good replies, faults, the disk cache
and the clear-sky fallback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from shades.weather import MAX_AGE, OpenMeteo, WeatherCache, WeatherError, WeatherService, parse_open_meteo

NOW = datetime(2026, 6, 22, 6, 0, tzinfo=UTC)


def reply(start: datetime = NOW, hours: int = 48, cloud: float = 40) -> dict:
    t0 = int(start.timestamp()) // 3600 * 3600
    return {"latitude": 57.0, "longitude": 10.0, "hourly_units": {"cloud_cover": "%"},
            "hourly": {"time": [t0 + 3600 * i for i in range(hours)], "cloud_cover": [cloud] * hours,
                       "temperature_2m": [15 + (i % 24) / 3 for i in range(hours)],
                       "wind_speed_10m": [4.0] * hours, "precipitation": [0.0] * hours}}


class Api:
    def __init__(self) -> None:
        self.mode, self.queries = "ok", []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                api.queries.append(parse_qs(urlsplit(self.path).query))
                status, body = {"ok": (200, json.dumps(reply())), "500": (500, "oops"),
                                "html": (200, "<html>login</html>"),
                                "error": (400, json.dumps({"error": True, "reason": "bad latitude"})),
                                "short": (200, json.dumps({"hourly": {"time": [1, 2], "cloud_cover": [1]}}))
                                }[api.mode]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1/forecast"


@pytest.fixture
def api() -> Iterator[Api]:
    server = Api()
    yield server
    server.server.shutdown()


def test_a_forecast_is_fetched_parsed_and_cached(api: Api, tmp_path: Path) -> None:
    clock = [NOW]
    service = WeatherService(OpenMeteo(57.015, 9.985, api.url), WeatherCache(tmp_path / "w.json"), lambda: clock[0])
    weather = service.refresh()
    assert weather.source == "forecast"
    query = api.queries[0]
    assert query["wind_speed_unit"] == ["ms"] and query["timeformat"] == ["unixtime"]
    assert "cloud_cover" in query["hourly"][0]
    times = pd.DatetimeIndex([NOW + timedelta(minutes=30)])
    assert weather.cloud_fraction(times).iloc[0] == pytest.approx(0.4)
    assert weather.now("wind_mps", NOW) == 4.0
    # the next process starts from the cache, with the source down
    api.mode = "500"
    again = WeatherService(OpenMeteo(57.015, 9.985, api.url), WeatherCache(tmp_path / "w.json"), lambda: clock[0])
    assert again.weather().source == "forecast"
    clock[0] = NOW + timedelta(hours=2)
    assert again.refresh().source == "forecast"       # failed refresh: the cached forecast stays
    assert "HTTP 500" in again.last_error
    clock[0] = NOW + MAX_AGE + timedelta(minutes=1)
    assert again.refresh().source == "clear-sky"      # too old: clear sky


@pytest.mark.parametrize(("mode", "message"), [("500", "HTTP 500"), ("html", "did not answer JSON"),
                                                ("error", "HTTP 400"), ("short", "does not match")])
def test_bad_replies_are_clear_errors_and_never_cached(api: Api, tmp_path: Path, mode: str, message: str) -> None:
    api.mode = mode
    with pytest.raises(WeatherError, match=message):
        OpenMeteo(57.0, 10.0, api.url).fetch()
    service = WeatherService(OpenMeteo(57.0, 10.0, api.url), WeatherCache(tmp_path / "w.json"), lambda: NOW)
    assert service.refresh().source == "clear-sky"
    assert not (tmp_path / "w.json").exists()


def test_an_unreachable_source_falls_back_to_clear_sky(tmp_path: Path) -> None:
    service = WeatherService(OpenMeteo(57.0, 10.0, "http://127.0.0.1:9/v1/forecast", timeout_s=1),
                             WeatherCache(tmp_path / "w.json"), lambda: NOW)
    assert service.refresh().source == "clear-sky"
    assert "unreachable" in service.last_error


def test_a_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "w.json").write_text("{not json")
    assert WeatherService(None, WeatherCache(tmp_path / "w.json"), lambda: NOW).weather().source == "clear-sky"


def test_out_of_range_values_become_unknown() -> None:
    data = reply(hours=3)
    data["hourly"]["cloud_cover"] = [50, 250, None]
    data["hourly"]["wind_speed_10m"] = [3, -1, "x"]
    frame = parse_open_meteo(data)
    assert frame["cloud_fraction"].tolist()[0] == 0.5 and frame["cloud_fraction"].isna().sum() == 2
    assert frame["wind_mps"].isna().sum() == 2


def test_current_hour_values_for_frost_and_wind() -> None:
    data = reply(hours=3)
    data["hourly"]["temperature_2m"] = [-2.0, -2.5, -3.0]
    data["hourly"]["precipitation"] = [0.4, 0.0, 0.0]
    from shades.weather import Weather
    weather = Weather("forecast", NOW, parse_open_meteo(data))
    start = datetime.fromtimestamp(data["hourly"]["time"][0], UTC)
    assert weather.now("temperature_c", start) == -2.0
    assert weather.now("precipitation_mm", start) == 0.4
    assert weather.now("wind_mps", start + timedelta(hours=30)) is None     # beyond the forecast
