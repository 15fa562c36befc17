"""A small BAS-side client: writes a point of another device the way a BAS does.

The demo uses it to write the replayed meter into input-power-meter over real BACnet/IP.
"""

from __future__ import annotations

import logging

from bacpypes3.apdu import ErrorRejectAbortNack
from bacpypes3.app import Application
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.primitivedata import Real

log = logging.getLogger(__name__)


class BacnetWriteError(Exception):
    pass


class BasClient:
    """A minimal BACnet device that writes presentValues to a target device."""

    def __init__(self, address: str, instance: int, name: str = "esus-demo-bas") -> None:
        self.address, self.instance, self.name = address, instance, name
        self.app: Application | None = None

    def start(self) -> None:
        device = DeviceObject(objectIdentifier=("device", self.instance), objectName=self.name,
                              vendorIdentifier=999)
        port = NetworkPortObject(self.address, objectIdentifier=("network-port", 1), objectName="port-1")
        self.app = Application.from_object_list([device, port])

    async def write_real(self, target: str, object_id: str, value: float, priority: int) -> None:
        """WriteProperty presentValue; raises BacnetWriteError with the device's answer."""
        if self.app is None:
            raise RuntimeError("start() the client first")
        reply = await self.app.write_property(target, object_id, "present-value", Real(value),
                                              priority=priority)
        if isinstance(reply, ErrorRejectAbortNack):
            raise BacnetWriteError(f"{target} refused {object_id} = {value}: {reply}")

    def close(self) -> None:
        if self.app is not None:
            self.app.close()
            self.app = None
