"""Demand response in the running service: the VEN, the shedder and its reconcile loop, the power
the VTN is told, and the dr-* BACnet points. Shed writes go out through esus's own BACnet device
(one device is client and server on one port)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from bacpypes3.basetypes import BinaryPV, PriorityValue
from bacpypes3.primitivedata import Enumerated

from bacnet_server.client import BacnetClient, BacnetClientError
from demand_response.actions import ShedAction, Value
from demand_response.baseline import History, period_mean
from demand_response.delivered import Delivered
from demand_response.ledger import Ledger, Override
from demand_response.modbus_meter import ModbusMeter, ModbusMeterConfig
from demand_response.shedder import Shedder, ShedState, ShedWriteError, SlotReading
from demand_response.ven import Ven
from demand_response.ven3 import Ven3, Ven3Config
from esus.parts.bacnet import BacnetBridge
from esus.parts.power import PowerInput
from esus.parts.shed_tracking import ShedTracker
from esus.runtime.clock import Clock, sleep_or_wake
from esus.settings.config import Settings
from esus.state.files import StateFiles, set_aside
from esus.state.sqlite import damage
from esus.state.telemetry import INTERVAL, IntervalEnds, Telemetry, line

if TYPE_CHECKING:
    from demand_response.page import OperatorPage
    from shades.solar import Facade
    from shades.sun import Place

log = logging.getLogger(__name__)
T = TypeVar("T")

RECONCILE_S = 10.0      # event starts and ends are acted on within this, and failed writes retried
RELEASE_AT_STOP_S = 15.0
READ_BACK_S = 60.0      # during an event, each acknowledged override is read back this often


def no_history(start_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray]:
    return np.empty(0), np.empty(0)


def modbus_meter_config(settings: Settings) -> ModbusMeterConfig | None:
    """The Modbus TCP meter the VTN's reports come from, when the site file says so."""
    config = settings.site.demand_response
    if config.meter != "modbus" or config.modbus is None:
        return None
    m = config.modbus
    return ModbusMeterConfig(host=m.host, register=m.register_address, port=m.port, unit_id=m.unit_id,
                             register_type=m.register_type, data_type=m.data_type, byte_order=m.byte_order,
                             word_order=m.word_order, scale=m.scale, poll_s=m.poll_s, timeout_s=m.timeout_s)


def shed_actions(settings: Settings) -> list[ShedAction]:
    """The site file's overrides as the shedder takes them."""
    return [ShedAction(name=a.name, address=a.address, object_id=a.object, values=a.typed_values(),
                       property=a.property, priority=a.priority, condition=a.when_sun_on)
            for a in settings.site.demand_response.actions]


class DemandService:
    def __init__(self, settings: Settings, bacnet: BacnetBridge, power: PowerInput, clock: Clock,
                 telemetry: Telemetry | None = None, history: History | None = None,
                 forecast_kw: Callable[[], float | None] = lambda: None) -> None:
        """`history(start_s, end_s)`: the building's power samples; `forecast_kw()`: the forecast
        published last (both for the events' baselines)."""
        self.settings, self.bacnet, self.power, self.clock = settings, bacnet, power, clock
        self.telemetry = telemetry
        self._recorded: tuple[object, float] | None = None   # what was last logged, and when
        self.intervals = IntervalEnds()
        self._event_in_interval = False   # whether an event was active at any pass of this interval
        config = settings.site.demand_response
        self.actions = shed_actions(settings)
        path = StateFiles(settings.state_dir).demand_response
        why = damage(path)
        if why is not None:
            set_aside(path, why, "the record of events and of the overrides written (every shed point is "
                                 "released once now, as nothing says which ones this service holds)")
        self.ledger = Ledger(path)
        self.writer = ShedPointWriter(BacnetClient(lambda: bacnet.device.app))
        self.shedder = Shedder(self.actions, self.ledger, self.writer,
                               stage_delay_s=config.stage_delay_s, clock=lambda: self.clock.now().timestamp(),
                               sleep=clock.sleep, holds=self.sun_on)
        if why is not None:
            self.shedder.release_unknown()
        self.tracker = ShedTracker(self.ledger, history or no_history, forecast_kw, settings.site.site.work_calendar(),
                                   settings.site.site.tz, lambda: self.clock.now().timestamp())
        self._tracking_error: str | None = None
        self._read_back_due = clock.monotonic() + READ_BACK_S
        meter = modbus_meter_config(settings)
        self.meter = ModbusMeter(meter, clock.monotonic, clock.sleep) if meter is not None else None
        self.ven: Ven | Ven3 | None = None
        if isinstance(settings.oadr, Ven3Config):
            self.ven = Ven3(settings.oadr, self.shedder, self.interval_kw, self.wake,
                            clock=lambda: self.clock.now().timestamp(), sleep=clock.sleep)
        elif settings.oadr is not None:
            self.ven = Ven(settings.oadr, self.shedder, self.power_kw, self.wake, sleep=clock.sleep)
        elif self.actions:
            log.warning("shed actions are declared in the site file but ESUS_OADR_VTN_URL is unset: "
                        "no demand response event will come")
        self._wake = asyncio.Event()
        self.page: OperatorPage | None = None
        #: what demand limiting decided last, for the page (the service sets it when it limits)
        self.limiting: Callable[[], Mapping[str, object]] = dict

    async def start(self) -> None:
        """The operator page, bound to the address from settings; raises OSError when it cannot bind."""
        access = self.settings.dr_page
        if access is None:
            return
        from demand_response.page import OperatorPage, load_secret  # here: aiohttp only where the page is on

        self.page = OperatorPage(self.shedder, self.power_kw, self.wake, user=access.user,
                                 password_hash=access.password_hash.get_secret_value(),
                                 secret=load_secret(StateFiles(self.settings.state_dir).page_key, on_damage=set_aside),
                                 tz=self.settings.site.site.tz, site_name=self.settings.site.site.name,
                                 delivered=lambda: self.tracker.now, history=self.tracker.history,
                                 clock=lambda: self.clock.now().timestamp(), limiting=lambda: self.limiting())
        await self.page.start(access.host, access.port)

    def sun_on(self, group: str) -> bool:
        """Whether the sun is on this shade group's façade now (pvlib's sun): lowering shades on
        a façade in shadow sheds nothing and only takes the daylight."""
        import pandas as pd

        from shades.solar import sun_on_facade, sun_position

        location, facades = self._sun_geometry
        sun = sun_position(location, pd.DatetimeIndex([self.clock.now()]))
        return bool(sun_on_facade(facades[group], sun).iloc[0])

    @functools.cached_property
    def _sun_geometry(self) -> tuple[Place, dict[str, Facade]]:
        """The site and its façades, built on first use (only shade actions with when_sun_on ask)."""
        from esus.parts.shading import location_of
        from shades.solar import Facade

        groups = self.settings.site.shades.groups
        return location_of(self.settings), {g.name: Facade(g.facade_azimuth_deg) for g in groups}

    def power_kw(self) -> float | None:
        """The power reported to the VTN: the Modbus meter's, or what the BAS writes (not when stale)."""
        if self.meter is not None:
            return self.meter.latest_kw()
        return None if self.power.is_stale() else self.power.last_value

    def interval_kw(self, start_s: float, end_s: float) -> float | None:
        """The building's mean power over an event interval, for the VTN's reports (None: not measured)."""
        return period_mean(*self.tracker.history(start_s, end_s), start_s, end_s)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Reconcile until cancelled, with the VEN and the meter beside it (restarted with it)."""
        parts = [asyncio.create_task(self.ven.run(), name="openadr-ven")] if self.ven else []
        if self.meter is not None:
            parts.append(asyncio.create_task(self.meter.run(), name="modbus-meter"))
        try:
            while True:
                await self.tick()
                await sleep_or_wake(self.clock, RECONCILE_S, self._wake)
        finally:
            for part in parts:
                part.cancel()
            await asyncio.gather(*parts, return_exceptions=True)
            if self.ven is not None:
                await self.ven.close()

    async def tick(self) -> None:
        """One pass: the interval that ended, if one did (before its event is summed up, which lets
        the baseline go); the baselines and what the shed delivers (before the sheds, so a baseline
        is frozen before they go out), the writes the events ask for (the first pass releases what
        outlived its event), the read-back when due, the points."""
        await self._record_interval()
        await self._track()
        await self.shedder.reconcile()
        if self.clock.monotonic() >= self._read_back_due:
            self._read_back_due = self.clock.monotonic() + READ_BACK_S
            if await self.shedder.verify():
                await self.shedder.reconcile()   # what a controller lost is written again now
        self._publish()

    async def _track(self) -> None:
        """Baselines and what the shed delivered."""
        await self._measuring(self.tracker.update())

    async def _measuring(self, work: Awaitable[T]) -> T | None:
        """A measurement of the shed; a failure here is said once and never stops the shedding."""
        try:
            result = await work
        except Exception as exc:   # any failure of the measurement: the shed goes on without it
            if self._tracking_error != str(exc):
                log.exception("demand response: what the shed delivers cannot be measured (%s); shedding goes on", exc)
            self._tracking_error = str(exc)
            return None
        self._tracking_error = None
        return result

    async def _record_interval(self) -> None:
        """At the first pass after a quarter hour, the interval that ended: whether an event was
        active in it, and what the shed delivered in it."""
        if self.telemetry is None or not self.actions:
            return
        active = bool(self.shedder.state().events)
        ended = self.intervals.ended(self.clock.now())
        if ended is None:
            self._event_in_interval |= active
            return
        shed = None
        if self._event_in_interval:
            shed = await self._measuring(self.tracker.interval((ended - INTERVAL).timestamp()))
        self.telemetry.record("interval_15min", {"event_active": self._event_in_interval,
                                                 "shed_kw": shed.shed_kw if shed else None}, ended)
        self._event_in_interval = active

    async def stop(self) -> None:
        """At a stop of esus: the page closed, and what the overrides hold released."""
        if self.page is not None:
            await self.page.close()
        await self._release_at_stop()

    async def _release_at_stop(self) -> None:
        """A stopped esus cannot end an event's overrides on time, so a clean stop releases them
        (a restart during the event writes them again)."""
        try:
            # staged as usual where the deadline allows, closer where it does not: the last release
            # goes out early enough for a controller that does not answer to time out before it
            async with asyncio.timeout(RELEASE_AT_STOP_S):
                done = await self.shedder.release_held(RELEASE_AT_STOP_S - 1.0, self.writer.client.timeout_s)
            if done.released:
                log.info("demand response: stopping, so released %s", ", ".join(done.released))
            if done.not_released:
                log.warning("demand response: stopping, %s not released (no controller acknowledged it): the next "
                            "start releases it", ", ".join(done.not_released))
        except TimeoutError:
            log.warning("demand response: not every override was released before stopping; "
                        "the next start releases them")

    def _publish(self) -> None:
        if not self.actions:
            return
        state = self.shedder.state()
        now = self.clock.now().timestamp()
        self.bacnet.publish("dr-event-active", "active" if state.events else "inactive")
        self.bacnet.publish("dr-signal-level", state.level + 1)
        self.bacnet.publish("dr-event-end", max(0.0, (state.until_s or now) - now))
        shed = self.tracker.now if state.events else None
        self.bacnet.publish("dr-baseline", (shed.forecast_baseline_kw or 0.0) if shed else 0.0)
        if shed is not None and shed.shed_kw is None:   # no power measured in this interval: not a number
            self.bacnet.device.set_fault("dr-shed-delivered", "noSensor")
        else:
            self.bacnet.publish("dr-shed-delivered", shed.shed_kw if shed else 0.0)
        self._record(state, now, shed)

    def _record(self, state: ShedState, now_s: float, shed: Delivered | None) -> None:
        """Log to InfluxDB on any change of event or override, and once a minute besides."""
        if self.telemetry is None:
            return
        actions: dict[str, dict[str, bool | str | int]] = {}
        for action in self.actions:
            o = state.overrides.get(action.name)
            error = o.error if o is not None and o.state in ("failed", "releasing") else None
            actions[action.name] = {"shed": o is not None and o.state == "active",
                                    "pending": o is not None and o.state in ("writing", "lost", "releasing"),
                                    "failing": error is not None, "reason": error or "",
                                    "state": override_state(o),
                                    "outranked_by": (o.outranked_by or 0) if o is not None else 0,
                                    "lost_count": o.lost if o is not None else 0}
        snapshot = (bool(state.events), state.level, tuple(tuple(a.values()) for a in actions.values()))
        if self._recorded is not None and self._recorded[0] == snapshot and now_s - self._recorded[1] < 60:
            return
        self._recorded = (snapshot, now_s)
        at, site = self.clock.now(), self.telemetry.site
        self.telemetry.record_many([line("demand_response", {
            "event_active": bool(state.events), "signal_level": state.level,
            "seconds_to_end": max(0.0, (state.until_s or now_s) - now_s),
            "overrides_shed": sum(a["shed"] is True for a in actions.values()),
            "overrides_failing": sum(a["failing"] is True for a in actions.values()),
            "overrides_lost": sum(a["state"] == "lost" for a in actions.values()), "report_kw": self.power_kw(),
            "baseline_kw": shed.forecast_baseline_kw if shed else None,
            "standard_baseline_kw": shed.standard_baseline_kw if shed else None,
            "measured_kw": shed.measured_kw if shed else None, "shed_kw": shed.shed_kw if shed else None,
        }, at, None, site)] + [line("dr_override", fields, at, {"action": name}, site)
                               for name, fields in actions.items()])

    def status(self, now: datetime) -> str:
        state = self.shedder.state()
        overrides = [o for o in state.overrides.values() if o.state != "released"]
        failing = sum(o.state in ("failed", "releasing") and o.error is not None for o in overrides)
        vtn = "" if self.ven is None else (" (VTN registered)" if self.ven.registered else " (VTN not reached)")
        if not state.events or state.until_s is None:
            held = f", {len(overrides)} override(s) to release" if overrides else ""
            return f"DR idle{vtn}{held}"
        until = datetime.fromtimestamp(state.until_s, self.settings.site.site.tz).strftime("%H:%M")
        return (f"DR level {state.level} until {until}{vtn}: {len(overrides)} override(s)"
                + (f", {failing} failing" if failing else ""))

    def close(self) -> None:
        if self.meter is not None:
            self.meter.close()
        self.ledger.close()


class ShedPointWriter:
    """The shedder's writes over BACnet, through esus's own device."""

    def __init__(self, client: BacnetClient) -> None:
        self.client = client

    async def write(self, action: ShedAction, value: Value | None) -> None:
        try:
            await self.client.write(action.address, action.object_id, value, property=action.property,
                                    priority=action.priority)
        except BacnetClientError as exc:
            raise ShedWriteError(str(exc)) from None

    async def read_back(self, action: ShedAction) -> SlotReading:
        """A commanded present-value's slot and the first slot above it that holds a value, from one
        read of its priority array; any other property itself (it has no priorities)."""
        binary = action.object_id.startswith("binary")
        try:
            if action.property != "present-value":
                read = await self.client.read(action.address, action.object_id, action.property)
                return SlotReading(slot_value(read, binary=binary))
            array = list(await self.client.read(action.address, action.object_id, "priority-array"))
        except BacnetClientError as exc:
            raise ShedWriteError(str(exc)) from None
        above = next((p for p, slot in enumerate(array[:action.priority - 1], start=1) if slot_value(slot) is not None),
                     None)
        return SlotReading(slot_value(array[action.priority - 1], binary=binary), above)


def override_state(o: Override | None) -> str:
    """An override's state in a word, as InfluxDB keeps it: none, writing, held, outranked, lost,
    failing, releasing or released."""
    if o is None:
        return "none"
    if o.state == "active":
        return "outranked" if o.outranked_by else "held"
    if o.state == "failed" or (o.state == "releasing" and o.error):
        return "failing"
    return o.state


def slot_value(value: object, binary: bool = False) -> Value | None:
    """A priority-array entry or a property's value as the shedder writes values: None for NULL, a
    binary state by its name (a priority array gives its number), a number otherwise."""
    if isinstance(value, PriorityValue):
        for kind in ("real", "enumerated", "unsigned", "integer", "double", "boolean", "characterString"):
            inner = getattr(value, kind, None)
            if inner is not None:
                return slot_value(inner, binary)
        return None   # null
    if binary and isinstance(value, int):
        return str(BinaryPV(int(value)))
    if isinstance(value, Enumerated):
        return str(value)
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)
