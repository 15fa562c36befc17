"""Writes shed values and NULLs (releases) to other controllers' priority arrays over BACnet/IP.

It uses a bacpypes3 Application as a client: in the service, esus's own BACnet device (a device is
client and server on one port); in tests, one of its own."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from bacpypes3.apdu import ErrorRejectAbortNack
from bacpypes3.primitivedata import Null

from demand_response.actions import ShedAction, Value

WRITE_TIMEOUT_S = 10.0


class ShedWriteError(Exception):
    """A controller did not take a write (refused it, or did not answer)."""


class PointWriter(Protocol):
    async def write(self, action: ShedAction, value: Value | None) -> None: ...


class BacnetWriter:
    def __init__(self, app: Any, timeout_s: float = WRITE_TIMEOUT_S) -> None:
        self.app, self.timeout_s = app, timeout_s

    async def write(self, action: ShedAction, value: Value | None) -> None:
        """The shed value at the action's priority, or NULL there when value is None."""
        what = "NULL" if value is None else repr(value)
        encoded = Null(()) if value is None else value  # bacpypes3 casts to the property's datatype
        try:
            reply = await asyncio.wait_for(
                self.app.write_property(action.address, action.object_id, action.property, encoded,
                                        priority=action.priority), self.timeout_s)
        except TimeoutError:
            raise ShedWriteError(f"{action.address} did not answer within {self.timeout_s:g} s") from None
        except ErrorRejectAbortNack as answer:  # bacpypes3 raises the device's error (a BaseException)
            reply = answer
        except Exception as exc:  # noqa: BLE001 - a value the point's datatype cannot take, a bad address
            raise ShedWriteError(f"writing {what} failed: {type(exc).__name__}: {exc}") from None
        if isinstance(reply, (ErrorRejectAbortNack, str)):
            raise ShedWriteError(f"{action.address} refused {action.object_id} {action.property} = {what} "
                                 f"at priority {action.priority}: {reply}")
