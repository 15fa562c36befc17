"""Building controllers played by bacpypes3 apps on loopback ports, for the BACnet BMS source: analog
inputs whose present value is the simulated AAU BMS's value for the same kind at the test clock's
minute, and, on a controller that keeps them, a TrendLog of each input served by ReadRange by time
(bacpypes3 serves no ReadRange, so it is written here from the standard, clause 15.8). Records are
stamped in Copenhagen wall-clock time, as a controller keeps them. Faults: objects that refuse
reads, a controller that stops answering."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from bacpypes3.apdu import ReadPropertyRequest, ReadRangeACK, ReadRangeRequest
from bacpypes3.app import Application
from bacpypes3.basetypes import DateTime, DeviceObjectPropertyReference, LogRecord, LogRecordLogDatum, ResultFlags, \
    StatusFlags
from bacpypes3.constructeddata import Any as AnyValue
from bacpypes3.constructeddata import ListOf
from bacpypes3.errors import ExecutionError
from bacpypes3.local.analog import AnalogInputObject
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.object import TrendLogObject
from bacpypes3.primitivedata import Date, Time

from bms_wrapper.simulator import DANISH_TIME, SimPoint, values


def _bacnet_datetime(local: datetime) -> DateTime:
    return DateTime(date=Date((local.year - 1900, local.month, local.day, local.isoweekday())),
                    time=Time((local.hour, local.minute, local.second, 0)))


def _local(stamp: DateTime) -> datetime:
    year, month, day, _ = stamp.date
    hour, minute, second, _ = stamp.time
    return datetime(year + 1900, month, day, hour, minute, second)


@dataclass
class ControllerPoint:
    object_id: str     # "analog-input,3"
    name: str
    sim: SimPoint      # the signal


@dataclass
class Controller:
    """One controller: its app, its address, and the faults it is put through."""

    instance: int
    port: int
    points: list[ControllerPoint]
    trend_logs: bool
    now: Callable[[], datetime]
    refusing: set[str] = field(default_factory=set)   # objects whose reads are refused
    app: Application | None = None
    read_ranges: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Controller:
        """Must run inside the event loop."""
        objects = [DeviceObject(objectIdentifier=("device", self.instance), objectName=f"controller-{self.instance}",
                                vendorIdentifier=999),
                   NetworkPortObject(f"127.0.0.1/8:{self.port}", objectIdentifier=("network-port", 1),
                                     objectName="port-1")]
        for i, point in enumerate(self.points, start=1):
            kind, number = point.object_id.split(",")
            objects.append(AnalogInputObject(objectIdentifier=(kind, int(number)), objectName=point.name,
                                             presentValue=0.0))
            if self.trend_logs:
                # naming its own device in the optional field, as bacnet-stack's controllers do
                logged = DeviceObjectPropertyReference(objectIdentifier=(kind, int(number)),
                                                       propertyIdentifier="present-value",
                                                       deviceIdentifier=("device", self.instance))
                objects.append(TrendLogObject(objectIdentifier=("trend-log", i), objectName=f"log-{point.name}",
                                              logDeviceObjectProperty=logged, logBuffer=ListOf(LogRecord)([]),
                                              logInterval=6000, recordCount=0, totalRecordCount=0))
        self.app = _App.from_object_list(objects)
        self.app.controller = self
        return self

    def stop(self) -> None:
        if self.app is not None:
            self.app.close()
            self.app = None

    def point_of(self, object_id: str) -> ControllerPoint | None:
        return next((p for p in self.points if p.object_id == object_id), None)

    def records(self, object_id: str, first_minute: int, count: int) -> list[LogRecord]:
        """Up to `count` one-minute records from a minute on (its sequence number is the minute
        since 1970, so it never repeats), none past now."""
        point = self.point_of(object_id)
        assert point is not None and count > 0
        last = int(self.now().timestamp()) // 60
        times = np.arange(first_minute, min(last, first_minute + count - 1) + 1, dtype=np.int64) * 60
        readings = values(point.sim, times).tolist()
        return [LogRecord(timestamp=_bacnet_datetime(datetime.fromtimestamp(int(t), UTC).astimezone(DANISH_TIME)),
                          logDatum=LogRecordLogDatum(realValue=v), statusFlags=StatusFlags([0, 0, 0, 0]))
                for t, v in zip(times.tolist(), readings, strict=True)]


class _App(Application):
    controller: Controller

    def _refuse(self, object_id: str) -> None:
        if object_id in self.controller.refusing:
            raise ExecutionError(errorClass="device", errorCode="operationalProblem")

    async def do_ReadPropertyRequest(self, apdu: ReadPropertyRequest) -> None:  # noqa: N802 # bacpypes3's name
        object_id = f"{apdu.objectIdentifier[0]},{apdu.objectIdentifier[1]}"
        self._refuse(object_id)
        point = self.controller.point_of(object_id)
        if point is not None and str(apdu.propertyIdentifier) == "present-value":
            now = int(self.controller.now().timestamp()) // 60 * 60
            self.get_object_id(apdu.objectIdentifier).presentValue = values(point.sim, np.array([now]))[0]
        await super().do_ReadPropertyRequest(apdu)

    async def do_ReadRangeRequest(self, apdu: ReadRangeRequest) -> None:  # noqa: N802 # bacpypes3's name
        log = self.get_object_id(apdu.objectIdentifier)
        if log is None or str(apdu.propertyIdentifier) != "log-buffer":
            raise ExecutionError(errorClass="object", errorCode="unknownObject")
        logged = log.logDeviceObjectProperty.objectIdentifier
        object_id = f"{logged[0]},{logged[1]}"
        self._refuse(object_id)
        wanted = apdu.range
        if wanted is not None and wanted.byTime is not None and wanted.byTime.count > 0:
            after = _local(wanted.byTime.referenceTime).replace(tzinfo=DANISH_TIME)   # a repeated hour: its first pass
            first, count = int(after.timestamp()) // 60 + 1, int(wanted.byTime.count)
        elif wanted is not None and wanted.bySequenceNumber is not None and wanted.bySequenceNumber.count > 0:
            first, count = int(wanted.bySequenceNumber.referenceSequenceNumber), int(wanted.bySequenceNumber.count)
        else:   # esus reads forward, by time then by sequence number
            raise ExecutionError(errorClass="services", errorCode="optionalFunctionalityNotSupported")
        self.controller.read_ranges += 1
        items = self.controller.records(object_id, first, count)
        more = len(items) == count
        await self.response(ReadRangeACK(
            context=apdu, objectIdentifier=apdu.objectIdentifier, propertyIdentifier=apdu.propertyIdentifier,
            resultFlags=ResultFlags([0, int(not more), int(more)]), itemCount=len(items),
            itemData=AnyValue(ListOf(LogRecord)(items)), firstSequenceNumber=first))
