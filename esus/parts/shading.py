"""The shades in the service: the coordinator wired to BACnet (commands in, state out), the BMS
(wind, façade irradiance, rooms), the weather forecast, the history store (state) and InfluxDB."""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
from datetime import UTC, date, datetime, time, timedelta

import pandas as pd
from gpiozero.pins import Factory

from bacnet_server.points import SHADE_MODES
from esus.parts.bacnet import BacnetBridge
from esus.parts.bms import BmsService, configured_points
from esus.parts.room_learning import (
    KEEP_EVERY_MINUTES,
    RoomLearning,
    RoomSeries,
    poa_series,
    points_by_room,
    position_series,
    room_series_of,
)
from esus.parts.sun_table import SunTableKeeper
from esus.parts.weather import weather_service
from esus.runtime.clock import Clock
from esus.runtime.supervisor import Health
from esus.settings.config import Settings
from esus.settings.site import ShadeSettings
from esus.state.store import HistoryStore
from esus.state.telemetry import Telemetry
from shades.coordinator import GroupStatus, Inputs, ShadeCoordinator
from shades.lockout import LockoutSettings
from shades.planner import GroupDay, GroupPlan, plan_day
from shades.solar import avoided_gain_kwh, site_location
from shades.sun import Place
from shades.weather import WeatherService, clear_sky

log = logging.getLogger(__name__)

ENABLE_POINT = "shade-automation-enable"
#: BMS values older than this are unknown to the shades (the poller runs every five minutes).
BMS_MAX_AGE = timedelta(minutes=15)
#: pvlib's sun over the site for the next fortnight (shades.sun), made each night by another process
SUN_TABLE_FILE = "sun-table.npz"
#: After a start, how long the stored wind lockout state holds while the first BMS poll is under way.
FIRST_POLL_GRACE = timedelta(minutes=10)


def location_of(settings: Settings) -> Place:
    """The site's place, from the site file, with the sun from the state directory's table."""
    info = settings.site.site
    return site_location(info.latitude, info.longitude, info.altitude_m, info.timezone,
                         settings.state_dir / SUN_TABLE_FILE)


def lockout_settings(shades: ShadeSettings) -> LockoutSettings:
    """The lockout's thresholds from the site file."""
    return LockoutSettings(retract_mps=shades.wind_retract_mps, release_mps=shades.wind_release_mps,
                           release_after_s=shades.wind_release_minutes * 60, frost_below_c=shades.frost_below_c)


class ShadesService:
    def __init__(self, settings: Settings, store: HistoryStore, bacnet: BacnetBridge, bms: BmsService | None,
                 telemetry: Telemetry, clock: Clock, weather: WeatherService, pin_factory: Factory | None = None,
                 health: Health | None = None) -> None:
        self.settings, self.store, self.bacnet, self.bms = settings, store, bacnet, bms
        self.telemetry, self.clock = telemetry, clock
        self.health = health if health is not None else Health(clock)
        site = settings.site
        self.shades, self.tz = site.shades, site.site.tz
        self.location = location_of(settings)
        self.sun = SunTableKeeper(self.location, self.health)
        self.weather = weather
        self.irradiance_points = {g.number: g.irradiance_point for g in self.shades.groups}
        self.started = False
        self.created_at = clock.now()
        self._saved: dict[str, str] = {}
        self.coordinator = ShadeCoordinator(
            self.shades, list(self.shades.groups), self.location, self.tz, clock.now, clock.monotonic,
            load=self._load, save=self._save, inputs=self.inputs, weather=self.weather.weather,
            pin_factory=pin_factory,
            on_status=self._publish, hold_minutes=self.shades.manual_hold_minutes,
            lockout=lockout_settings(self.shades))
        self.rooms = RoomLearning(self.shades, self.tz, store, telemetry, self.health, self.room_series,
                                  self.coordinator.set_room_fit)
        self.gain_kwh: dict[int, float] = {}
        self._gain_day: str | None = None
        for name in self._command_points():
            bacnet.device.on_write(name, functools.partial(self._command_written, name))
        if bms is not None:
            bms.listeners.append(self.coordinator.wake.set)

    # -- state in the history store --------------------------------------------------------------

    def _load(self, key: str) -> dict | None:
        value = self.store.get_state(key)
        if isinstance(value, str):   # before 0.2 the state was JSON text inside the JSON column
            try:
                value = json.loads(value)
            except ValueError:
                value = None
        if value is not None and not isinstance(value, dict):
            log.warning("stored state %s is unreadable: starting it afresh", key)
            return None
        return value

    def _save(self, key: str, value: dict) -> None:
        """Write only what changed: the coordinator saves every group on every pass."""
        text = json.dumps(value, sort_keys=True)
        if self._saved.get(key) != text:
            self.store.set_state(key, value)
            self._saved[key] = text

    # -- BACnet ----------------------------------------------------------------------------------

    def _command_points(self) -> list[str]:
        return [ENABLE_POINT] + [f"shade-{g.number}-command" for g in self.shades.groups]

    def _command_written(self, name: str, _obj: object = None) -> None:
        """Keep the BAS's command (it survives a restart) and act on it now."""
        slot = self.bacnet.device.command_slot(name)
        self._save(f"shades.bas.{name}", {"slot": list(slot) if slot else None})
        self.coordinator.wake.set()

    async def start(self) -> None:
        """After the BACnet device is up: the BAS's saved commands back, every group published."""
        for name in self._command_points():
            saved = self._load(f"shades.bas.{name}")
            if saved and saved.get("slot"):
                value, priority = saved["slot"]
                await self.bacnet.device.restore_command(name, value, int(priority))
                log.info("BACnet: restored the BAS's %s = %s at priority %d", name, value, priority)
        self.started = True
        for c in self.coordinator.groups.values():
            self._publish(c.status())

    def _publish(self, status: GroupStatus) -> None:
        part = f"shade {status.name}"
        if status.mode == "fault":
            self.health.failed(part, status.reason, logged=True)   # the coordinator said it
        else:
            self.health.recovered(part)
        self._record(status, self.clock.now())
        if not self.started:
            return
        g, device = status.number, self.bacnet.device
        device.set_value(f"shade-{g}-position", float(status.position_pct))
        device.set_value(f"shade-{g}-manual-override", "active" if status.hold_until else "inactive")
        held = (f"held by the wall switch until {status.hold_until.astimezone(self.tz):%Y-%m-%d %H:%M}"
                if status.hold_until else "no wall-switch hold")
        device.set_description(f"shade-{g}-manual-override", held)
        device.set_value(f"shade-{g}-mode", SHADE_MODES.index(status.mode) + 1)
        device.set_description(f"shade-{g}-mode", status.reason[:200])
        device.set_value("wind-lockout", "active" if self.coordinator.lockout.state.locked else "inactive")
        device.set_description("wind-lockout", self.coordinator.lockout.state.reason[:200])

    def _record(self, status: GroupStatus, at: datetime) -> None:
        self.telemetry.record("shades", {
            "position_pct": status.position_pct, "target_pct": status.target_pct,
            "relay_up": int(status.relay_up), "relay_down": int(status.relay_down),
            "mode_code": SHADE_MODES.index(status.mode) + 1, "hold": int(status.hold_until is not None),
            "lockout": int(status.lockout), "moves_today": status.moves_today, "reason": status.reason,
        }, at, {"group": status.name})

    # -- inputs ----------------------------------------------------------------------------------

    @property
    def room_points(self) -> dict[int, list[tuple[str, dict[str, str]]]]:
        """Per group, its rooms' point ids by kind: the site file's points, and those the BMS
        adapter chose by filter once it has listed them."""
        return points_by_room(self.settings, self.bms.points if self.bms is not None else configured_points(
            self.settings))

    def room_series(self) -> dict[int, RoomSeries]:
        return room_series_of(self.settings, self.bms.points if self.bms is not None else configured_points(
            self.settings))

    def _bms(self, point: str | None) -> float | None:
        return self.bms.value(point, BMS_MAX_AGE) if self.bms is not None and point is not None else None

    def inputs(self) -> Inputs:
        device, now = self.bacnet.device, self.clock.now()
        weather = self.weather.weather()
        if self.shades.wind_point is not None:
            sample = self.bms.sample(self.shades.wind_point, BMS_MAX_AGE) if self.bms is not None else None
            wind, wind_at = (sample.value, sample.time) if sample is not None else (None, None)
        else:  # no anemometer: the forecast's wind for this hour, while the forecast is fresh
            wind = weather.now("wind_mps", now)
            wind_at = now if wind is not None else None
        outdoor = self._bms(self.shades.outdoor_temperature_point)
        if outdoor is None:
            outdoor = weather.now("temperature_c", now)
        rain_mm = weather.now("precipitation_mm", now)
        rooms = {number: tuple((room, self._bms(kinds.get("temperature")), self._bms(kinds.get("setpoint_heating")),
                                self._bms(kinds.get("setpoint_cooling"))) for room, kinds in rooms)
                 for number, rooms in self.room_points.items()}
        commands = {}
        for g in self.shades.groups:
            value = device.commanded(f"shade-{g.number}-command")
            commands[g.number] = float(value) if value is not None else None
        pending = (self.bms is not None and self.bms.polls_done == 0
                   and now - self.created_at < FIRST_POLL_GRACE)
        return Inputs(wind_mps=wind, wind_at=wind_at, wind_pending=pending, outdoor_c=outdoor,
                      precipitation=rain_mm is not None and rain_mm >= 0.1,
                      automation_enabled=device.is_active(ENABLE_POINT),
                      bas_commands=commands, rooms=rooms,
                      measured_wm2={g.number: self._bms(g.irradiance_point) for g in self.shades.groups})

    # -- jobs ------------------------------------------------------------------------------------

    async def minute_tick(self, due: datetime) -> None:
        """Once a minute: every group's state and each façade's sun into InfluxDB; the day's avoided gain."""
        now = self.clock.now()
        today = now.astimezone(self.tz).date().isoformat()
        if self._gain_day != today:
            self._gain_day, self.gain_kwh = today, {}
        kept: dict[str, list] = {}
        for c in self.coordinator.groups.values():
            status = c.status()
            self._record(status, now)
            if c.day is None:
                continue
            row = c.day.row(now)
            measured = self._bms(self.irradiance_points[c.group.number])
            poa = measured if measured is not None else float(row["poa_wm2"])
            g = c.group
            kept[poa_series(g.name)] = [(now, poa)]
            kept[position_series(g.name)] = [(now, status.position_pct)]
            minute = pd.Series([poa, poa], index=pd.DatetimeIndex([now - timedelta(minutes=1), now]))
            shaded = pd.Series(status.position_pct / 100.0, index=minute.index)
            self.gain_kwh[g.number] = self.gain_kwh.get(g.number, 0.0) + avoided_gain_kwh(
                minute, shaded, g.window_area_m2, g.g_value, g.shade_factor_fc)
            self.telemetry.record("solar", {
                "elevation_deg": float(row["elevation_deg"]), "azimuth_deg": float(row["azimuth_deg"]),
                "aoi_deg": float(row["aoi_deg"]), "poa_wm2": poa, "poa_forecast_wm2": float(row["poa_wm2"]),
                "avoided_gain_kwh": self.gain_kwh[g.number]}, now, {"facade": g.name})
        if kept and now.astimezone(self.tz).minute % KEEP_EVERY_MINUTES == 0:
            self._keep(kept)

    def _keep(self, rows: dict[str, list]) -> None:
        """The façade's irradiance and the blind's position, the room record's share the BMS has not."""
        try:
            self.store.append_many(rows)
        except (sqlite3.Error, OSError) as exc:   # a full disk, a read-only store: the shades go on
            self.health.failed("shades record", f"the façade irradiance and blind positions are not kept "
                                                f"({type(exc).__name__}: {exc}); the rooms learn from fewer days")
        else:
            self.health.recovered("shades record")

    async def run(self) -> None:
        await self.coordinator.run(self.clock.sleep)

    def status(self, now: datetime) -> str:
        parts = []
        for c in self.coordinator.groups.values():
            s = c.status()
            parts.append(f"{s.name} {s.position_pct:.0f}% {s.mode}")
        lock = " LOCKED" if self.coordinator.lockout.state.locked else ""
        return f"shades {', '.join(parts) or 'none'}{lock}"

    def close(self) -> None:
        self.coordinator.close()


def day_plan(settings: Settings, day: date) -> tuple[list[GroupPlan], str]:
    """Each group's plan for `day` from the site file and the forecast (clear sky when it has none),
    with the rooms the service has learnt: the room forecast plans for a validated one, the rule
    for the others, as the service would."""
    from esus.parts.room_learning import kept_fits_in

    site = settings.site
    location = location_of(settings)
    service = weather_service(settings, lambda: datetime.now(UTC))
    try:
        weather = service.refresh()
    finally:
        service.close()
    if not weather.covers(datetime.combine(day, time(12), tzinfo=site.site.tz)):
        weather = clear_sky()  # the forecast does not reach that day
    fits = kept_fits_in(settings)
    plans = []
    for g in site.shades.groups:
        fit = fits.get(g.number)
        validated = fit is not None and fit.validated
        day_of = GroupDay.compute(location, g, site.shades, weather, day, fit.model if fit and validated else None)
        plans.append(plan_day(day_of, site.site.tz, model_validated=validated))
    return plans, weather.source
