"""The esus service: composes the domain packages on one event loop and one scheduler."""

from __future__ import annotations

import asyncio
import faulthandler
import json
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from datetime import datetime, time, timedelta

from gpiozero.pins import Factory

from bacnet_server.app import BacnetStartError
from bms_wrapper.adapters import BmsAdapter
from esus.parts.bacnet import BacnetBridge
from esus.parts.bms import BmsService
from esus.parts.bms_sources import bms_configured, make_adapter, service_context
from esus.parts.demand import DemandService
from esus.parts.demand_limit import DemandLimitService
from esus.parts.forecasting import ForecastService
from esus.parts.outdoor import OutdoorTemperature
from esus.parts.power import POWER_SERIES, PowerInput
from esus.parts.shading import ShadesService
from esus.parts.weather import REFRESH_S, WeatherPart
from esus.runtime.clock import AcceleratedClock, Clock
from esus.runtime.pins import load_pin_factory
from esus.runtime.scheduler import DailyAt, Every, Scheduler
from esus.runtime.supervisor import Health, Loop, Supervisor, end_tasks
from esus.runtime.systemd import notify, watchdog_period_s
from esus.settings.config import Settings
from esus.state.files import StateFiles
from esus.state.influx import InfluxSender, InfluxWriter
from esus.state.outbox import Outbox
from esus.state.store import HistoryStore
from esus.state.telemetry import Telemetry

log = logging.getLogger(__name__)
status_log = logging.getLogger("esus.status")


class StartupError(Exception):
    """A part could not start; the message says what to do."""

StatusPart = Callable[[datetime], str]


class Service:
    """Owns the store, the clock, the scheduler and the supervisor; each part adds its jobs, its
    background loop and its status. A part that fails is that part's fault: see `Health`."""

    def __init__(self, settings: Settings, clock: Clock, *, pin_factory: Factory | None = None,
                 bms_adapter: BmsAdapter | None = None) -> None:
        """`pin_factory` and `bms_adapter` replace the site's own devices (the demo's, a test's):
        by default gpiozero's pin library and the BMS from settings."""
        self.settings, self.clock = settings, clock
        site = settings.site
        self.tz = site.site.tz
        self.files = StateFiles(settings.state_dir)
        self.store = HistoryStore(self.files.history)
        latest = self.store.latest(POWER_SERIES)
        if isinstance(clock, AcceleratedClock) and latest is not None:
            clock.resume_after(latest[0])
        self.health = Health(clock)
        self.supervisor = Supervisor(self.health, clock)
        self.outbox = Outbox(self.store)
        self.outbox.take_over(self.files.outbox)
        self.telemetry = Telemetry(self.outbox, site.site.name)
        self.power = PowerInput(self.telemetry, clock, min_kw=site.power.min_kw, max_kw=site.power.max_kw,
                                stale_after=timedelta(minutes=site.power.stale_after_minutes))
        self.bacnet = BacnetBridge(settings, self.power)
        self.weather = WeatherPart(settings, clock)
        self.bms: BmsService | None = None
        if bms_adapter is None and bms_configured(settings):
            bms_adapter = make_adapter(settings, context=service_context(settings, lambda: self.bacnet.device.app,
                                                                         clock.now))
        if bms_adapter is not None:
            self.bms = BmsService(settings, self.store, self.telemetry, clock, bms_adapter, self.health)
        self.forecast = ForecastService(settings, self.store, self.power, self.bacnet, clock, self.telemetry,
                                        OutdoorTemperature(site, self.weather.weather,
                                                           self.bms.value if self.bms else None))
        self.scheduler = Scheduler(clock, self.health)
        self.status_parts: list[StatusPart] = [self._power_status, self.forecast.status, self.bacnet.status]
        self.background: dict[str, Loop] = {}   # part name -> its loop, kept running by the supervisor
        self.closers: list[Callable[[], None]] = []
        self._once: set[asyncio.Task[None]] = set()
        self.health.listeners.append(self._show_health)
        self.scheduler.add("bacnet-refresh", Every(60, 4), self.bacnet.minute_tick)
        self.scheduler.add("forecast", Every(60, 5), self.forecast.minute_tick)
        self.scheduler.add("status", Every(60, 6), self.minute_tick)
        self.scheduler.add("training", DailyAt(time(0, 0), self.tz), self.forecast.nightly_training)
        watchdog = watchdog_period_s()
        if watchdog:  # fed by the scheduler: if the event loop hangs, systemd restarts esus
            self.scheduler.add("watchdog", Every(max(1.0, round(watchdog, 1))), self._feed_watchdog)
        self.writer: InfluxWriter | None = None
        if settings.influx is not None:
            sender = InfluxSender(settings.influx)
            self.closers.append(sender.close)
            self.writer = InfluxWriter(self.outbox, sender.send, clock)
            self.background["influxdb-writer"] = self.writer.run
        self.scheduler.add("retention", DailyAt(time(0, 0), self.tz), self.nightly_retention)
        self.closers.append(self.weather.close)
        self.scheduler.add("weather", Every(REFRESH_S, 23), self.weather.refresh)
        if self.bms is not None:
            self.closers.append(self.bms.close)
            self.scheduler.add("bms", Every(site.bms.poll_minutes * 60, 17), self.bms.poll)
            self.status_parts.append(self.bms.status)
        else:
            log.warning("no BMS configured (ESUS_BMS_URL unset): room and weather points are not polled")
        self.shades: ShadesService | None = None
        if site.shades.groups:
            pin_factory = pin_factory or load_pin_factory(settings.pin_factory)
            self.shades = ShadesService(settings, self.store, self.bacnet, self.bms, self.telemetry, clock,
                                        self.weather.service, pin_factory, self.health)
            self.closers.append(self.shades.close)
            self.weather.listeners.append(self.shades.coordinator.wake.set)
            self.scheduler.add("shades-telemetry", Every(60, 7), self.shades.minute_tick)
            self.scheduler.add("shades-rooms", DailyAt(time(1, 30), self.tz), self.shades.rooms.nightly)
            self.scheduler.add("sun-table", DailyAt(time(0, 40), self.tz), self.shades.sun.renew)
            self.background["shades"] = self.shades.run
            self.status_parts.append(self.shades.status)
        self.demand: DemandService | None = None
        if site.demand_response.actions or settings.oadr is not None or settings.dr_page is not None:
            self.demand = DemandService(settings, self.bacnet, self.power, clock, self.telemetry,
                                        history=lambda a, b: self.store.range(POWER_SERIES, a, b),
                                        forecast_kw=self._forecast_kw)
            self.closers.append(self.demand.close)
            self.background["demand-response"] = self.demand.run
            self.status_parts.append(self.demand.status)
        self.limit: DemandLimitService | None = None
        if site.demand_limit is not None:
            demand = self.demand
            self.limit = DemandLimitService(settings, self.store, self.bacnet, clock, self.telemetry,
                                            demand.shedder if demand else None, self._forecast_pair,
                                            demand.wake if demand else lambda: None)
            self.scheduler.add("demand-limit", Every(60, 8), self.limit.minute_tick)
            self.scheduler.add("demand-limit-floor", DailyAt(time(0, 20), self.tz), self.limit.nightly)
            self.status_parts.append(self.limit.status)
            if demand is not None:
                demand.limiting = lambda: self.limit.last if self.limit else {}

    def _forecast_pair(self) -> tuple[float, float] | None:
        """The forecast just made and its upper bound (None: none, or the power is stale)."""
        live = self.forecast.live
        made = live.forecast if live is not None else None
        return (made.kw, made.upper_kw) if made is not None and not self.power.is_stale() else None

    def _forecast_kw(self) -> float | None:
        live = self.forecast.live
        return live.forecast.kw if live is not None and live.forecast is not None else None

    async def start(self) -> None:
        """Start the parts that bind or connect; raises StartupError with one line."""
        try:
            await self.bacnet.start()
        except BacnetStartError as exc:
            raise StartupError(str(exc)) from None
        self.closers.append(self.bacnet.close)
        if self.shades is not None:
            await self.shades.sun.at_start(self.clock.now())   # the BACnet device answers meanwhile
            await self.shades.start()
            if self.shades.rooms.wanted_now():   # a record long enough, and no fit: not only at night
                # its own name: the fit says its failures under "room learning", which the job's
                # success would otherwise clear
                self.once("first room fit", self.shades.rooms.nightly(self.clock.now()))
        self.once("weather", self.weather.refresh(self.clock.now()))
        if self.demand is not None:
            try:
                await self.demand.start()
            except OSError as exc:
                page = self.settings.dr_page
                where = f"{page.host}:{page.port}" if page else "its address"
                raise StartupError(f"the operator page cannot listen on {where} ({exc.strerror}): "
                                   "set ESUS_DR_PAGE_ADDRESS to this device's OT LAN address and a free port") from None
        await self.forecast.start()
        if self.bms is not None:
            self.once("bms", self.bms.poll(self.clock.now()))

    def once(self, part: str, job: Coroutine[object, object, None]) -> None:
        """Run a part's job once, now, in the background; its failure is the part's (see Health)."""
        task = asyncio.get_running_loop().create_task(self.supervisor.once(part, job), name=f"{part}:now")
        self._once.add(task)
        task.add_done_callback(self._once.discard)
        task.add_done_callback(lambda _: job.close())   # a stop before it began: closed, never left un-awaited

    def _power_status(self, now: datetime) -> str:
        if self.power.last_value is None:
            return "power: no BAS write yet"
        mean = self.forecast.live.mean_15min_kw if self.forecast.live else None
        stale = f"  STALE (no write for over {self.settings.site.power.stale_after_minutes:g} min)" \
            if self.power.is_stale(now) else ""
        mean_text = f"{mean:.2f}" if mean is not None else "-"
        return f"power {self.power.last_value:.2f} kW (15-min mean {mean_text}){stale}"

    def status_line(self, now: datetime) -> str:
        stamp = now.astimezone(self.tz).strftime("%Y-%m-%d %H:%M %Z")
        faults = self.health.summary()
        return " | ".join([stamp] + [part(now) for part in self.status_parts] + ([faults] if faults else []))

    def _show_health(self, health: Health) -> None:
        """Every change of a part's health: the BACnet device's systemStatus and the doctor's file."""
        self.bacnet.device.set_system_status([f"{p.name}: {p.error}" for p in health.failing()])
        self._write_health()

    def _write_health(self, stopped: datetime | None = None) -> None:
        report = {"pid": os.getpid(), "updated": self.clock.now().isoformat(),
                  "stopped": stopped.isoformat() if stopped else None,
                  "parts": {p.name: p.to_dict() for p in self.health.parts.values()}}
        path = self.files.health
        partial = path.with_name(path.name + ".tmp")
        try:
            partial.write_text(json.dumps(report, indent=1))
            os.replace(partial, path)
        except OSError as exc:  # a full disk must not stop the service: the other displays still work
            log.warning("cannot write %s (%s): esus doctor will not see the parts' health", path, exc.strerror)

    async def minute_tick(self, due: datetime) -> None:
        now = self.clock.now()
        line = self.status_line(now)
        status_log.info("%s", line)
        notify(f"STATUS={line}")
        self.telemetry.record("health", {
            "outbox_depth": self.outbox.depth, "outbox_dropped": self.outbox.counter("dropped"),
            "outbox_dead": self.outbox.counter("dead"), "bacnet_writes": self.bacnet.device.writes,
            "bms_errors": self.bms.errors if self.bms else None,
            "tick_lag_s": (now - due).total_seconds(), "rss_mb": resident_mb()}, now)

    async def _feed_watchdog(self, due: datetime) -> None:
        notify("WATCHDOG=1")

    async def nightly_retention(self, due: datetime) -> None:
        days = self.settings.site.history.retention_days
        deleted = await asyncio.to_thread(self.store.prune, due - timedelta(days=days))
        log.info("retention: deleted %d samples older than %d days", deleted, days)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until `stop` is set (SIGTERM/SIGINT set it when run from the CLI)."""
        stop = stop or asyncio.Event()
        mode = "demo" if self.settings.demo else "site"
        try:
            await self.start()
        except BaseException:
            self.close()
            raise
        log.info("esus started (%s mode, site %s, state %s)", mode, self.settings.site.site.name,
                 self.settings.state_dir)
        self._write_health()
        notify("READY=1")
        loops = {"scheduler": self.scheduler.run, **self.background}
        tasks = [asyncio.create_task(self.supervisor.keep_running(name, loop), name=name)
                 for name, loop in loops.items()]
        try:
            await stop.wait()
        finally:
            await end_tasks(tasks + list(self._once))
            notify("STOPPING=1")
            if self.demand is not None:
                await self.demand.stop()
            # let worker threads (a BMS poll, a forecast) finish before their store is closed
            await asyncio.get_running_loop().shutdown_default_executor()
            if self.writer is not None:
                self.writer.flush()
            self._write_health(stopped=self.clock.now())
            self.close()

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()
        self.closers.clear()
        self.store.close()
        log.info("esus stopped")


def resident_mb() -> float | None:
    """Current resident memory of this process (Linux), in MB."""
    try:
        with open("/proc/self/status") as status:
            for row in status:
                if row.startswith("VmRSS:"):
                    return int(row.split()[1]) / 1024
    except OSError:
        pass
    return None


#: A stop that takes longer than this is stuck (it takes 2-3 s, under emulation too; a stuck task
#: is left after TASKS_END_S + 1 s, and a demand-response release takes at most RELEASE_AT_STOP_S,
#: 15 s): every thread's stack is written to stderr,
#: where the journal keeps it, and the process ends with status 1, before systemd's TimeoutStopSec
#: (30 s) kills it without a word about where it hung.
STOP_LIMIT_S = 25


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT stop the service; the first one also starts the stop's time limit."""
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        if not stop.is_set():
            log.info("%s: stopping (every thread's stack is written out if it takes over %d s)", name, STOP_LIMIT_S)
            faulthandler.dump_traceback_later(STOP_LIMIT_S, exit=True)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
