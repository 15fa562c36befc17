"""A shade coordinator on MockFactory pins with simulated time, state in a dict, and a relay log."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from gpiozero.pins.mock import MockFactory

from esus.parts.shading import lockout_settings
from esus.settings.config import example_site_path
from esus.settings.site import ShadeSettings, load_site
from shades.coordinator import Inputs, ShadeCoordinator
from shades.planner import GroupDay
from shades.solar import site_location

_compute = GroupDay.compute.__func__
_days: dict = {}


def _cached_compute(cls, location, group, config, weather, day, learnt=None):
    """GroupDay.compute is pure; tests that restart often reuse its result (keyed on what it reads)."""
    if location is not LOCATION or not any(config is known for known in CACHED_CONFIGS):
        return _compute(cls, location, group, config, weather, day, learnt)
    key = (id(config), group.number, day, weather.source, weather.fetched_at, learnt)
    if key not in _days:
        _days[key] = _compute(cls, location, group, config, weather, day, learnt)
    return _days[key]


GroupDay.compute = classmethod(_cached_compute)  # type: ignore[method-assign]

SITE = load_site(example_site_path())
SHADES = SITE.shades
LOCATION = site_location(SITE.site.latitude, SITE.site.longitude, SITE.site.altitude_m, SITE.site.timezone)
TZ = SITE.site.tz
#: Shade settings whose days are cached (module constants: they live as long as the cache)
CACHED_CONFIGS: list[ShadeSettings] = [SHADES]


@dataclass
class SimTime:
    start: datetime
    mono: float = 0.0

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.mono)

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.mono += max(0.0, seconds)


@dataclass
class RelayEvent:
    at_s: float
    group: int
    relay: str      # "up" / "down"
    on: bool


@dataclass
class Rig:
    """Everything one test run shares across restarts: pins, time, stored state, inputs."""

    time: SimTime
    factory: MockFactory = field(default_factory=MockFactory)
    saved: dict = field(default_factory=dict)
    inputs: Inputs = field(default_factory=Inputs)
    events: list[RelayEvent] = field(default_factory=list)
    coordinator: ShadeCoordinator | None = None
    shades: ShadeSettings = SHADES

    def start(self) -> ShadeCoordinator:
        self.coordinator = ShadeCoordinator(
            self.shades, list(self.shades.groups), LOCATION, TZ, self.time.now, self.time.monotonic,
            load=self.saved.get, save=self.saved.__setitem__, inputs=lambda: self.inputs,
            pin_factory=self.factory, hold_minutes=self.shades.manual_hold_minutes,
            lockout=lockout_settings(self.shades))
        for number, c in self.coordinator.groups.items():
            for relay_name in ("up", "down"):
                self._watch(number, relay_name, getattr(c.motor, relay_name))
        return self.coordinator

    def _watch(self, number: int, relay_name: str, device) -> None:
        on, off = device.on, device.off

        def logged(switch, state: bool):
            def call() -> None:
                before = bool(device.value)
                switch()
                if bool(device.value) != before:
                    self.events.append(RelayEvent(self.time.mono, number, relay_name, state))
            return call
        device.on, device.off = logged(on, True), logged(off, False)

    def restart(self) -> ShadeCoordinator:
        """A clean stop and a new process: same pins, same stored state, same time."""
        assert self.coordinator is not None
        self.coordinator.close()
        return self.start()

    def crash(self) -> ShadeCoordinator:
        """kill -9: no close, the relays drop when the process dies, state as last saved."""
        assert self.coordinator is not None
        for number, c in self.coordinator.groups.items():
            for relay_name in ("up", "down"):
                device = getattr(c.motor, relay_name)
                if device.value:
                    self.events.append(RelayEvent(self.time.mono, number, relay_name, False))
            c.switches.close()
            c.motor.up.close()
            c.motor.down.close()
        self.coordinator.groups.clear()
        return self.start()

    def feed_wind(self, mps: float | None) -> None:
        self.inputs.wind_mps = mps
        self.inputs.wind_at = self.time.now() if mps is not None else None

    def run_for(self, seconds: float, keep_wind_fresh: bool = True) -> None:
        """What the coordinator's run loop does: evaluate at every motor deadline and every 30 s."""
        assert self.coordinator is not None
        end = self.time.mono + seconds
        for _ in range(100_000):
            step = min(self.coordinator.next_deadline_s(), end - self.time.mono)
            self.time.advance(step)
            if keep_wind_fresh and self.inputs.wind_mps is not None:
                self.inputs.wind_at = self.time.now()
            self.coordinator.evaluate()
            if self.time.mono >= end - 1e-9:
                return
        raise AssertionError("the coordinator did not let time pass")


def summer_morning() -> SimTime:
    return SimTime(datetime(2026, 6, 22, 2, 0, tzinfo=UTC))  # 04:00 local, before sunrise
