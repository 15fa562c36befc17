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


def test_the_facade_sees_the_forecast_irradiance_transposed_by_pvlib_and_cloud_cover_only_where_it_is_missing(
        ) -> None:
    """A forecast whose irradiance is half of clear sky's at every hour puts half the clear-sky
    irradiance on the façade, whatever its cloud cover says (90 % here, which alone would scale clear
    sky to 0.35 + 0.65 x 0.1 of it); the hours it lacks fall back to cloud cover."""
    from datetime import date

    from shades.outlook import facade_day
    from shades.solar import Facade, clear_sky_wm2, site_location
    from shades.weather import Weather

    location = site_location(57.015, 9.985, 10, "Europe/Copenhagen")
    hours = pd.date_range("2026-06-21 22:00", periods=30, freq="1h", tz="UTC")
    clear = clear_sky_wm2(location, hours)
    hourly = pd.DataFrame({"cloud_fraction": 0.9, "temperature_c": 20.0, "wind_mps": 3.0, "precipitation_mm": 0.0,
                           "ghi_wm2": clear["ghi"] / 2, "dni_wm2": clear["dni"] / 2, "dhi_wm2": clear["dhi"] / 2},
                          index=hours)
    hourly.loc[hours >= pd.Timestamp("2026-06-22 15:00", tz="UTC"), ["ghi_wm2", "dni_wm2", "dhi_wm2"]] = float("nan")
    east = facade_day(location, Facade(90.0), Weather("forecast", NOW, hourly), date(2026, 6, 22))
    on_the_hour = east[(east.index.minute == 0) & east["irradiance_forecast"]]
    assert len(on_the_hour) >= 10 and not east.loc["2026-06-22 18:00":, "irradiance_forecast"].any()
    morning = on_the_hour.between_time("06:00", "10:00")
    assert (morning["poa_wm2"] / morning["poa_clear_wm2"]).to_numpy() == pytest.approx(0.5, abs=0.01)
    cloudy = facade_day(location, Facade(90.0), Weather("forecast", NOW, hourly.drop(
        columns=["ghi_wm2", "dni_wm2", "dhi_wm2"])), date(2026, 6, 22))
    assert not cloudy["irradiance_forecast"].any()
    assert cloudy.loc["2026-06-22 08:00", "poa_wm2"] < 0.5 * cloudy.loc["2026-06-22 08:00", "poa_clear_wm2"]


def test_the_forecast_asks_for_the_irradiance_at_each_hour_and_refuses_impossible_values() -> None:
    data = reply(hours=3)
    data["hourly"] |= {"shortwave_radiation_instant": [500.0, 2000.0, None],
                       "direct_normal_irradiance_instant": [700.0, 600.0, 500.0],
                       "diffuse_radiation_instant": [100.0, -5.0, 90.0]}
    frame = parse_open_meteo(data)
    assert frame["ghi_wm2"].tolist()[0] == 500.0 and frame["ghi_wm2"].isna().tolist()[1:] == [True, True]
    assert frame["dhi_wm2"].isna().tolist() == [False, True, False]
    assert {"shortwave_radiation_instant", "direct_normal_irradiance_instant", "diffuse_radiation_instant"} <= set(
        OpenMeteo(57.0, 10.0).params["hourly"].split(","))
