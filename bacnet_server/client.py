"""Reads and writes other devices' properties: the one BACnet client of esus.

bacpypes3 reports a device's Error, Reject or Abort by raising it from one call and returning it from
another (and returns a string or None for a reply it cannot decode); here each of these, a timeout and a
bad address become one `BacnetClientError` whose text says who refused what and why. The client works
through a bacpypes3 Application: esus's own device (a device is client and server on one port), or a
device of its own on a port beside it (the demo's BAS, `esus doctor`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bacpypes3.apdu import ErrorRejectAbortNack, ReadRangeACK, ReadRangeRequest
from bacpypes3.app import Application
from bacpypes3.basetypes import DateTime, LogRecord, Range, RangeBySequenceNumber, RangeByTime
from bacpypes3.constructeddata import ListOf
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import Date, Null, ObjectIdentifier, PropertyIdentifier, Time

TIMEOUT_S = 10.0
#: What bacpypes3 returns, as text, for an answer it cannot decode.
BACPYPES_REFUSALS = ("-no object class-", "-no property type-")


class BacnetClientError(Exception):
    """A device refused a request, did not answer, or the request could not be made."""


class BacnetClient:
    """ReadProperty and WriteProperty with one error type and a deadline on each request."""

    def __init__(self, app: Application | Callable[[], Application | None], timeout_s: float = TIMEOUT_S) -> None:
        """`app` is an Application, or a function giving the one in use (None while it is not running)."""
        self._app, self.timeout_s = app, timeout_s
        self._own: Application | None = None

    @classmethod
    def own_device(cls, address: str, instance: int, name: str, timeout_s: float = TIMEOUT_S) -> BacnetClient:
        """A client with a device of its own at `address` ("ip/prefix:port"), built on first use (in the
        running event loop, as bacpypes3 needs) and closed by `close`."""
        client = cls(lambda: None, timeout_s)

        def device() -> Application:
            if client._own is None:
                client._own = Application.from_object_list([
                    DeviceObject(objectIdentifier=("device", instance), objectName=name, vendorIdentifier=999),
                    NetworkPortObject(address, objectIdentifier=("network-port", 1), objectName="port-1")])
            return client._own

        client._app = device
        return client

    def application(self) -> Application:
        app = self._app() if callable(self._app) else self._app
        if app is None:
            raise BacnetClientError("the BACnet device is not running")
        return app

    async def read(self, address: str, object_id: str, property: str = "present-value",
                   array_index: int | None = None) -> Any:
        """The property's value (or one element of an array), cast to its datatype."""
        what = f"{address} {object_id} {property}" + (f"[{array_index}]" if array_index is not None else "")
        value = await self._ask(what, self.application().read_property(address, object_id, property,
                                                                       array_index=array_index))
        if value is None:   # bacpypes3's answer to a reply that is not a ReadPropertyACK
            raise BacnetClientError(f"{what}: the answer was not a value")
        return value

    async def device_at(self, address: str) -> str:
        """The device object at an address ("device,1001"), asked with a directed Who-Is."""
        try:
            answers = await self.application().who_is(address=Address(address), timeout=self.timeout_s)
        except (ValueError, TypeError, OSError) as exc:
            raise BacnetClientError(f"{address}: {type(exc).__name__}: {exc}") from None
        if not answers:
            raise BacnetClientError(f"{address}: no answer to Who-Is within {self.timeout_s:g} s")
        kind, instance = answers[0].iAmDeviceIdentifier
        return f"{kind},{instance}"

    async def read_log(self, address: str, trend_log: str, after: datetime | int, count: int
                       ) -> tuple[int, list[tuple[datetime, float | None]]]:
        """Up to `count` records of a TrendLog's buffer: those stamped after a local time, or from a
        sequence number on (ReadRange by time, by sequence number). Returns the first record's
        sequence number (the next page starts after the last: local times repeat once a year, the
        numbers never) and each record as (the controller's local time, naive; its value, None for
        a record that holds no number)."""
        if isinstance(after, datetime):
            what = f"{address} {trend_log} log-buffer after {after.isoformat()}"
            reference = DateTime(date=Date((after.year - 1900, after.month, after.day, after.isoweekday())),
                                 time=Time((after.hour, after.minute, after.second, 0)))
            wanted = Range(byTime=RangeByTime(referenceTime=reference, count=count))
        else:
            what = f"{address} {trend_log} log-buffer from record {after}"
            wanted = Range(bySequenceNumber=RangeBySequenceNumber(referenceSequenceNumber=after, count=count))
        try:
            request = ReadRangeRequest(objectIdentifier=ObjectIdentifier(trend_log),
                                       propertyIdentifier=PropertyIdentifier("log-buffer"), range=wanted,
                                       destination=Address(address))
        except (ValueError, TypeError) as exc:
            raise BacnetClientError(f"{what}: {type(exc).__name__}: {exc}") from None
        reply = await self._ask(what, self.application().request(request))
        if not isinstance(reply, ReadRangeACK):
            raise BacnetClientError(f"{what}: the answer was not a log buffer")
        try:
            records = reply.itemData.cast_out(ListOf(LogRecord))
        except (ValueError, TypeError, AttributeError) as exc:
            raise BacnetClientError(f"{what}: the log buffer could not be read ({type(exc).__name__})") from None
        first = int(reply.firstSequenceNumber) if reply.firstSequenceNumber is not None else 0
        return first, [(_naive(record.timestamp), _log_number(record.logDatum)) for record in records]

    async def write(self, address: str, object_id: str, value: Any, *, property: str = "present-value",
                    priority: int | None = None) -> None:
        """Write `value` (cast to the property's datatype); None writes NULL, which relinquishes `priority`."""
        shown = "NULL" if value is None else repr(value)
        at = "" if priority is None else f" at priority {priority}"
        what = f"{address} {object_id} {property} = {shown}{at}"
        encoded = Null(()) if value is None else value
        reply = await self._ask(what, self.application().write_property(address, object_id, property, encoded,
                                                                         priority=priority))
        if reply is not None:   # a simple ACK returns None
            raise BacnetClientError(f"{what}: unexpected reply {reply!r}")

    async def _ask(self, what: str, request: Any) -> Any:
        try:
            reply = await asyncio.wait_for(request, self.timeout_s)
        except TimeoutError:
            raise BacnetClientError(f"{what}: no answer within {self.timeout_s:g} s") from None
        except ErrorRejectAbortNack as answer:   # a BaseException in bacpypes3
            reply = answer
        except (ValueError, TypeError, KeyError, AttributeError, OSError) as exc:
            # a value the datatype cannot take, an unknown object type or property text, a bad address
            raise BacnetClientError(f"{what}: {type(exc).__name__}: {exc}") from None
        if isinstance(reply, ErrorRejectAbortNack):
            raise BacnetClientError(f"{what}: refused: {reply}")
        if isinstance(reply, str) and reply in BACPYPES_REFUSALS:   # a CharacterString value is a str too
            raise BacnetClientError(f"{what}: {reply.strip('-')}")
        return reply

    def close(self) -> None:
        """Closes the device this client built, if any (an Application handed in stays its owner's)."""
        if self._own is not None:
            self._own.close()
            self._own = None


def _naive(stamp: Any) -> datetime:
    """A BACnet DateTime (years since 1900) as a naive datetime."""
    year, month, day, _ = stamp.date
    hour, minute, second, hundredths = stamp.time
    return datetime(year + 1900, month, day, hour, minute, second, hundredths * 10_000)


def _log_number(datum: Any) -> float | None:
    """A log record's value as a number; None for a status, a failure, a null or a bit string."""
    for kind in ("realValue", "unsignedValue", "signedValue", "enumValue"):
        value = getattr(datum, kind, None)
        if value is not None:
            return float(value)
    boolean = getattr(datum, "booleanValue", None)
    return None if boolean is None else float(bool(boolean))
