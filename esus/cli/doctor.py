"""`esus doctor`: check each configured part and say, in plain words, what is wrong."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from bacnet_server.app import port_is_free
from esus.settings.config import Settings
from esus.settings.errors import SettingsError
from esus.state.files import StateFiles
from esus.state.store import HistoryStore

if TYPE_CHECKING:
    from bms_wrapper.adapters import BmsAdapter
    from bms_wrapper.poller import PointRef

TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False

    def line(self) -> str:
        word = "WARN" if self.warning and self.ok else ("ok" if self.ok else "FAIL")
        return f"{word:<5}{self.name:<10}{self.detail}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's process (the esus service user): it is there
        return True
    return True


def running_pid(settings: Settings) -> int | None:
    """The pid of the esus running with this state directory (from its health file), if it runs."""
    try:
        report = json.loads(StateFiles(settings.state_dir).health.read_text())
        pid = int(report["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if not report.get("stopped") and _alive(pid) else None


def holds_udp_port(pid: int, port: int) -> bool | None:
    """Whether process `pid` has the UDP socket bound to `port` open (Linux /proc); None when this
    cannot be seen (another user's process, another system)."""
    inodes = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    try:
        links = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
    except OSError:
        return None
    return any(f"socket:[{inode}]" in links for inode in inodes)


def check_service(settings: Settings) -> Check:
    """The running service's parts, from the file it keeps in the state directory."""
    path = StateFiles(settings.state_dir).health
    try:
        report = json.loads(path.read_text())
        parts = report["parts"]
        pid = int(report["pid"])
    except FileNotFoundError:
        return Check("service", True, f"esus has not run with the state directory {settings.state_dir}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Check("service", True, f"{path} is unreadable ({exc}); esus rewrites it at its next change",
                     warning=True)
    if report.get("stopped"):
        return Check("service", True, f"esus is not running (stopped cleanly at {report['stopped']})")
    if not _alive(pid):
        return Check("service", True, f"esus is not running: process {pid} ended without a clean stop "
                     f"(last update {report.get('updated')}); see `journalctl -u esus`", warning=True)
    failing = {name: part for name, part in parts.items() if part.get("error")}
    if failing:
        return Check("service", False, f"esus (pid {pid}) runs with {len(failing)} part(s) failing: " + "; ".join(
            f"{name} since {part.get('since')}: {part['error']}" for name, part in failing.items()))
    return Check("service", True, f"esus (pid {pid}) is running; every part is running")


def check_settings(settings: Settings) -> Check:
    site = settings.site
    mode = "demo (no .env found)" if settings.demo else f"from {settings.env_file or 'the environment'}"
    return Check("settings", True, f"{mode}; site '{site.site.name}' from {settings.site_path}: "
                 f"{len(site.bms.points)} BMS points, {len(site.shades.groups)} shade groups")


def check_store(settings: Settings) -> Check:
    path = StateFiles(settings.state_dir).history
    if not path.exists():
        return Check("store", True, f"{path} will be created at first start")
    try:
        with HistoryStore(path, readonly=True) as store:
            names = store.series_names()
            result = store.integrity()
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        return Check("store", False, f"{path} cannot be read ({exc}); esus will move it aside at start")
    if result != "ok":
        return Check("store", False, f"{path} is damaged ({result}); esus will move it aside at start")
    return Check("store", True, f"{path}: {len(names)} series, intact")


def check_forecast(settings: Settings) -> Check:
    """The model the service forecasts with, and what it takes beyond power."""
    from esus.parts.outdoor import TEMPERATURE_SERIES
    from forecast.model import ModelFileError, PowerModel

    files, mode = StateFiles(settings.state_dir), settings.site.forecast.outdoor_temperature
    outdoor = f"outdoor temperature {mode}"
    if mode != "none" and files.history.exists():
        try:
            with HistoryStore(files.history, readonly=True) as store:
                latest = store.latest(TEMPERATURE_SERIES)
        except Exception:  # noqa: BLE001 - the store check says what is wrong with it
            latest, outdoor = None, outdoor + ", unknown (the store cannot be read)"
        else:
            outdoor += (f", last known {latest[0]:%Y-%m-%d %H:%M} UTC ({latest[1]:.1f} °C)" if latest
                        else ", none known yet (no fresh weather forecast or BMS reading)")
    try:
        model = PowerModel.load(files.model)
    except ModelFileError as exc:
        if not files.model.exists():
            return Check("forecast", True, "no model yet: the fallback forecasts until the first training "
                                           f"(it needs 14 days of power history); {outdoor}")
        return Check("forecast", True, f"{exc}: the fallback forecasts until the next training replaces it; "
                                       f"{outdoor}", warning=True)
    info = model.info
    if model.with_temperature is None:
        inputs = "from power alone"
    else:
        gain = info.temperature_gain_pct
        inputs = "with the outdoor temperature" + ("" if gain is None else f" ({gain:+.1f} % RMSE out of sample)")
    return Check("forecast", True, f"model trained {info.trained_at} on {info.rows} rows {inputs}, held-out RMSE "
                 f"{info.rmse_kw or float('nan'):.2f} kW (persistence {info.persistence_rmse_kw or float('nan'):.2f} "
                 f"kW), 90 % bound calibrated at {model.bound.level:.3f}; {outdoor}")


def check_shade_rooms(settings: Settings) -> Check:
    """Per shade group, whether its learnt room or the VDI 3813 rule decides, and why."""
    from esus.parts.room_learning import kept_fits_in

    groups = settings.site.shades.groups
    if not groups:
        return Check("rooms", True, "no shade groups")
    fits = kept_fits_in(settings)
    said = []
    for g in groups:
        fit = fits.get(g.number)
        if fit is None:
            said.append(f"{g.name}: the rule (no room fit yet; one is made each night from three weeks of record)")
        elif fit.validated:
            said.append(f"{g.name}: the room model ({fit.rmse_k:.2f} K a day ahead on the held-out days, fitted "
                        f"{fit.fitted_at[:16].replace('T', ' ')})")
        else:
            said.append(f"{g.name}: the rule ({fit.reason})")
    failed = any(f.model is None and "failed" in f.reason for f in fits.values())
    return Check("rooms", True, "; ".join(said) + " (`esus shades rooms` shows the fits)", warning=failed)


def check_sun(settings: Settings) -> Check:
    """Where the shades' sun comes from: the table pvlib made in a process of its own, or pvlib
    in the service (more memory) while there is none."""
    from esus.parts.shading import location_of
    from esus.parts.sun_table import NEEDED_AHEAD
    from shades.sun import SunTable, SunTableError

    if not settings.site.shades.groups:
        return Check("sun", True, "no shade groups")
    place = location_of(settings)
    path = place.table_path
    assert path is not None
    if not path.exists():
        return Check("sun", True, f"no table yet ({path}): the service has pvlib make one at its start")
    try:
        table = SunTable.load(path)
    except SunTableError as exc:
        return Check("sun", True, f"{exc}: pvlib answers in the service until the night's table replaces it",
                     warning=True)
    if not table.is_for(place.latitude, place.longitude, place.altitude_m):
        return Check("sun", True, f"{path.name} was made for {table.latitude:g}, {table.longitude:g} (the site "
                                  "file moved the site): the next start makes the site's")

    def day(s: float) -> str:
        return datetime.fromtimestamp(s, settings.site.site.tz).strftime("%Y-%m-%d %H:%M")
    short = table.end_s < time.time() + NEEDED_AHEAD.total_seconds()
    return Check("sun", True, f"pvlib {table.made_by}'s, {day(table.start_s)} to {day(table.end_s)} ({path.name})"
                 + ("; it ends soon: renewed each night at 00:40 by a running service" if short else ""),
                 warning=short)


def check_wind(settings: Settings) -> Check:
    """The wind the shades' lockout follows: without any, every blind stays retracted for ever."""
    shades = settings.site.shades
    if not shades.groups:
        return Check("wind", True, "no shade groups")
    if shades.wind_point is not None:
        return Check("wind", True, f"the anemometer, BMS point {shades.wind_point}")
    if settings.weather_url is None:
        return Check("wind", False, "no wind at all: [shades] has no wind_point and the weather forecast is off "
                                    "(ESUS_WEATHER_URL): every blind stays retracted (wind-data-lost); give the "
                                    "anemometer's BMS point as [shades] wind_point, or let esus reach the forecast")
    return Check("wind", True, "no anemometer ([shades] wind_point): the lockout follows the weather forecast's "
                               f"wind ({settings.weather_url}); while no fresh forecast has it, the blinds stay "
                               "retracted (wind-data-lost)", warning=True)


def check_bms(settings: Settings) -> Check:
    from esus.parts.bms_sources import bms_configured

    if not bms_configured(settings):
        what = "simulated (demo)" if settings.demo else "not configured (ESUS_BMS_URL unset): no polling"
        return Check("bms", True, what, warning=not settings.demo)
    from bms_wrapper.adapters import HttpAdapter
    from bms_wrapper.poller import resolve_points
    from bms_wrapper.transport import BmsError, RetryPolicy
    from esus.parts.bms import configured_points
    from esus.parts.bms_sources import command_context, make_adapter

    with command_context(settings) as context:
        adapter = make_adapter(settings, context=context)
        if isinstance(adapter, HttpAdapter):   # one quick attempt: the doctor says, the poll retries
            adapter.transport.retry = RetryPolicy(attempts=1)
            adapter.transport.read_timeout_s = adapter.transport.deadline_s = TIMEOUT_S
            adapter.transport.deadline_set_by = (f"the doctor waits {TIMEOUT_S:g} s; the service waits [bms] "
                                                 f"deadline_s, {settings.site.bms.deadline_s:g} s")
        try:
            listed = adapter.list_points()
            usable, messages = resolve_points(configured_points(settings), listed)
            read = read_one(adapter, usable)
        except BmsError as exc:
            return Check("bms", False, str(exc))
        finally:
            adapter.close()
    where = settings.bms.url if settings.bms is not None else "the controllers"
    detail = f"{where} ({settings.site.bms.api}): {len(listed)} points listed, {len(usable)} of the site's found{read}"
    if messages:
        return Check("bms", True, f"{detail}; {messages[0]} (`esus bms points` lists all)", warning=True)
    dropped = implausible_counts(settings)
    if dropped:
        return Check("bms", True, f"{detail}; values no sensor can read were dropped: " + ", ".join(
            f"point {point} {count}" for point, count in dropped.items()) + " (check those sensors and units)",
            warning=True)
    return Check("bms", True, detail)


def read_one(adapter: BmsAdapter, usable: list[PointRef]) -> str:
    """The last hour of the site's first point, as the poll reads it: a BMS that lists its points
    but fails every read (HTTP 500 on each) must not pass. Raises BmsError as the read does."""
    if not usable:
        return ""
    point, end = usable[0], datetime.now(UTC)
    samples = adapter.read_history(point.point_id, end - timedelta(hours=1), end, point.unit)
    return f"; point {point.point_id} read ({len(samples)} samples in the last hour)"


def implausible_counts(settings: Settings) -> dict[str, int]:
    """Per point, the values the service dropped as implausible (kept in the store)."""
    from esus.parts.bms import dropped_key

    path = StateFiles(settings.state_dir).history
    if not path.exists():
        return {}
    try:
        with HistoryStore(path, readonly=True) as store:
            counts = {p.point_id: int(store.get_state(dropped_key(p.point_id)) or 0)
                      for p in settings.site.bms.points}
    except (sqlite3.Error, ValueError):   # the store check says what is wrong with the file
        return {}
    return {point: count for point, count in counts.items() if count}


def check_influx(settings: Settings) -> Check:
    if settings.influx is None:
        return Check("influxdb", True, "not configured (ESUS_INFLUX_URL unset): lines are kept in the "
                     "local outbox", warning=True)
    url = f"{settings.influx.url}/ping"
    try:
        reply = requests.get(url, timeout=TIMEOUT_S)
    except requests.ConnectionError:
        return Check("influxdb", False, f"cannot connect to {settings.influx.url}: is InfluxDB running? "
                     "check ESUS_INFLUX_URL")
    except requests.Timeout:
        return Check("influxdb", False, f"{settings.influx.url} did not answer within {TIMEOUT_S:g} s")
    if reply.status_code not in (200, 204):
        return Check("influxdb", False, f"GET {url} answered HTTP {reply.status_code}")
    return Check("influxdb", True, f"{settings.influx.url} is up")


def check_bacnet(settings: Settings) -> Check:
    ip, port = settings.bacnet.ip, settings.bacnet.port
    ok, detail = port_is_free(ip, port)
    pid = None if ok else running_pid(settings)
    if pid is not None and holds_udp_port(pid, port) is not False:
        return Check("bacnet", True, f"UDP {ip}:{port} is served by the running esus (pid {pid}), device "
                                     f"{settings.device_id}")
    loopback = settings.bacnet.interface.ip.is_loopback
    if ok and loopback and not settings.demo:
        return Check("bacnet", True, f"{detail}, but it is loopback: the BAS cannot reach it; "
                     "set ESUS_BACNET_ADDRESS to the OT LAN address", warning=True)
    return Check("bacnet", ok, f"{detail} (device {settings.device_id})" if ok else detail)


def check_gpio(settings: Settings) -> Check:
    from esus.runtime.pins import load_pin_factory

    if settings.demo or (settings.pin_factory or "").lower() == "mock":
        return Check("gpio", True, "mock pins (no hardware is switched)")
    chip = Path("/dev/gpiochip0")
    if chip.exists() and not os.access(chip, os.R_OK | os.W_OK):
        return Check("gpio", False, "no access to /dev/gpiochip0: add the esus user to the 'gpio' group")
    try:
        factory = load_pin_factory(settings.pin_factory)
    except SettingsError as exc:
        return Check("gpio", False, str(exc))
    try:
        return Check("gpio", True, f"{type(factory).__name__} drives the pins")
    finally:
        factory.close()


def check_demand_response(settings: Settings) -> Check:
    """The VTN reachable, every shed point readable (nothing is written), the Modbus meter read."""
    config = settings.site.demand_response
    if not (config.actions or settings.oadr):
        return Check("dr", True, "not configured (no shed actions, ESUS_OADR_VTN_URL unset)")
    import asyncio

    from esus.cli.dr_check import probe
    problems, found = asyncio.run(probe(settings, TIMEOUT_S))
    if problems:
        return Check("dr", False, "; ".join(problems))
    return Check("dr", True, "; ".join(found))


def check_demand_limit(settings: Settings) -> Check:
    """What demand limiting decided last, and why; the target and the period's peak it holds."""
    from esus.parts.demand_limit import STATE_KEY

    config = settings.site.demand_limit
    if config is None:
        return Check("limit", True, "not configured (no [demand_limit] in the site file)")
    how = ("sheds with " + (", ".join(config.actions) or "every shed action")) if config.act \
        else "publishes dl-level only"
    files = StateFiles(settings.state_dir)
    try:
        with HistoryStore(files.history, readonly=True) as store:
            last = store.get_state(STATE_KEY)
    except Exception:  # noqa: BLE001 - the store check says what is wrong with it
        last = None
    if not last:
        return Check("limit", True, f"{how}; no decision yet (the service decides each minute once it runs)")

    def kw(key: str) -> str:
        return f"{last[key]:.1f} kW" if isinstance(last.get(key), int | float) else "none yet"

    return Check("limit", True, f"{how}; at {str(last.get('at', ''))[:16].replace('T', ' ')}: {last.get('reason')}; "
                 f"period peak {kw('peak_kw')}, target {kw('target_kw')} (learnt floor {kw('floor_kw')}), "
                 f"headroom {kw('headroom_kw')}, {last.get('used_min', 0)} min shed today of "
                 f"{config.max_hours_per_day * 60:.0f}")


def check_state_files(settings: Settings) -> Check:
    """The state files esus found damaged and moved aside: each was said once in the log when it
    happened; here they stay in view until someone has looked and deleted them."""
    aside = StateFiles(settings.state_dir).set_aside_files()
    if not aside:
        return Check("state", True, f"{settings.state_dir}: no damaged file set aside")
    names = ", ".join(f"{p.name} ({p.stat().st_size / 1e6:.1f} MB)" for p in aside[-5:])
    more = f" and {len(aside) - 5} older" if len(aside) > 5 else ""
    return Check("state", True, f"damaged and set aside (esus started afresh; the log says what was lost): {names}"
                 f"{more} in {settings.state_dir}; inspect, then delete them", warning=True)


CHECKS: list[Callable[[Settings], Check]] = [
    check_settings, check_service, check_state_files, check_store, check_forecast, check_shade_rooms, check_sun,
    check_wind,
    check_bms, check_influx, check_bacnet, check_gpio, check_demand_response, check_demand_limit]


def run_doctor(settings: Settings) -> list[Check]:
    return [check(settings) for check in CHECKS]
