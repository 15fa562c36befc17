"""Connects the BACnet device to the rest of esus: BAS power writes in, published values out,
and faults on every power-derived point when the BAS stops writing."""

from __future__ import annotations

import logging
import socket
from datetime import datetime
from typing import Any

from bacnet_server.app import BacnetDevice, DeviceIdentity
from bacnet_server.client import BacnetClient
from bacnet_server.points import PointSpec, ShadeGroupRef, point_table
from esus import __version__
from esus.parts.power import PowerInput, PowerValueError
from esus.settings.config import Settings

log = logging.getLogger(__name__)

POWER_POINT = "input-power-meter"


def site_points(settings: Settings) -> list[PointSpec]:
    site = settings.site
    groups = [ShadeGroupRef(g.number, g.name) for g in site.shades.groups]
    limit = site.demand_limit
    return point_table(site.power.min_kw, site.power.max_kw, groups, bool(site.demand_response.actions),
                       limit.interval_minutes if limit is not None else None)


def device_identity(settings: Settings) -> DeviceIdentity:
    address = settings.bacnet
    return DeviceIdentity(instance=settings.device_id, name=f"esus-{settings.site.site.name}",
                          ip=address.ip, prefix=address.interface.network.prefixlen, port=address.port,
                          software_version=__version__, bbmd=settings.bbmd, bbmd_ttl_s=settings.bbmd_ttl_s)


class BacnetBridge:
    def __init__(self, settings: Settings, power: PowerInput) -> None:
        self.power = power
        self.points = site_points(settings)
        self.device = BacnetDevice(device_identity(settings), self.points)
        self.device.on_write(POWER_POINT, self._power_written)
        self._derived = [p.name for p in self.points if p.derived_from_power]
        self._published: set[str] = set()

    async def start(self) -> None:
        await self.device.start()
        self.refresh_power_health()

    def close(self) -> None:
        self.device.close()

    def _power_written(self, _obj: Any) -> None:
        value = self.device.commanded(POWER_POINT)
        if value is None:
            log.warning("the BAS relinquished input-power-meter: power shows no-sensor until it writes again")
            self.power.mark_missing()
        else:
            try:
                self.power.write(float(value))
            except PowerValueError as exc:  # cannot happen after the BACnet range check; say so if it does
                log.error("input-power-meter write not kept: %s", exc)
        self.refresh_power_health()

    def publish(self, name: str, value: Any) -> None:
        """Publish a read-only value; power-derived points stay faulted while power is stale."""
        stale = name in self._derived and self.power.is_stale()
        self.device.set_value(name, value, "communicationFailure" if stale else "noFaultDetected")
        self._published.add(name)

    def refresh_power_health(self, now: datetime | None = None) -> bool:
        """Fault or clear input-power-meter and every point derived from it; returns 'stale'."""
        stale = self.power.is_stale(now)
        if stale:
            never = self.power.last_write is None
            self.device.set_fault(POWER_POINT, "noSensor" if never else "communicationFailure")
        else:
            self.device.set_fault(POWER_POINT, "noFaultDetected")
        for name in self._derived:
            if stale:
                self.device.set_fault(name, "communicationFailure" if name in self._published else "noSensor")
            elif name in self._published:
                self.device.set_fault(name, "noFaultDetected")
        return stale

    async def minute_tick(self, due: datetime) -> None:
        self.refresh_power_health()

    def status(self, now: datetime) -> str:
        health = self.device.reliability(POWER_POINT)
        bbmd = self.device.bbmd_registration()
        return (f"BACnet {self.device.writes} writes, power point {'ok' if health == 'noFaultDetected' else health}"
                + (f", {bbmd}" if bbmd else ""))


def client_beside(settings: Settings, instance: int, name: str, timeout_s: float) -> BacnetClient:
    """A BACnet client with a device of its own on a free UDP port beside esus's, for a command that
    runs while the service may hold esus's port (the doctor, `esus bms …`); closed by its `close`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((settings.bacnet.ip, 0))
        port = sock.getsockname()[1]
    prefix = settings.bacnet.interface.network.prefixlen
    return BacnetClient.own_device(f"{settings.bacnet.ip}/{prefix}:{port}", instance, name, timeout_s)
