"""bacpypes3 objects for the point table, with what stock bacpypes3 0.0.110 gets wrong put right.

- every object carries eventState, reliability and outOfService from the start;
- a change of reliability or outOfService reaches COV subscribers (statusFlags is computed by
  bacpypes3, so its own change detection never sees it);
- the device reports the services and object types it really supports.
"""

from __future__ import annotations

import inspect
import math
from functools import partial
from typing import Any, ClassVar

from bacpypes3.basetypes import (
    EngineeringUnits,
    EventState,
    ObjectTypesSupported,
    PropertyIdentifier,
    Reliability,
    Segmentation,
    ServicesSupported,
)
from bacpypes3.constructeddata import ArrayOf
from bacpypes3.local.analog import AnalogValueObject
from bacpypes3.local.binary import BinaryValueObject
from bacpypes3.local.cmd import Commandable
from bacpypes3.local.cov import GenericCriteria
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.multistate import MultiStateValueObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.local.object import Object as LocalObject
from bacpypes3.primitivedata import CharacterString

from bacnet_server.points import Access, PointSpec

#: Services this device executes (protocolServicesSupported must not claim more).
CONFIRMED_SERVICES = ("readProperty", "readPropertyMultiple", "writeProperty", "subscribeCOV")
UNCONFIRMED_SERVICES = ("whoIs", "whoHas", "iAm", "iHave")
OBJECT_TYPES = ("device", "analogValue", "binaryValue", "multiStateValue", "networkPort")


_ASYNC_PROPERTY: dict[tuple[type, str], bool] = {}


class FastAttributes:
    """Property reads without bacpypes3's per-access `inspect.getattr_static`.

    bacpypes3's local Object looks up every property statically on each read to see whether it
    is an async @property; that is a class-level fact, so it is cached per class here. This
    roughly doubles ReadProperty throughput; the rare async path still goes through bacpypes3.
    """

    _elements: ClassVar[dict[str, Any]]   # bacpypes3's property table of the class mixed into

    def __getattribute__(self, attr: str) -> Any:
        if attr[0] == "_":
            return object.__getattribute__(self, attr)
        cls = type(self)
        element = cls._elements.get(attr)
        if element is None:
            return object.__getattribute__(self, attr)
        key = (cls, attr)
        is_async = _ASYNC_PROPERTY.get(key)
        if is_async is None:
            found = inspect.getattr_static(cls, attr, None)
            is_async = isinstance(found, property) and inspect.iscoroutinefunction(found.fget)
            _ASYNC_PROPERTY[key] = is_async
        if is_async:
            return LocalObject.__getattribute__(self, attr)
        return element.get_attribute(getter=partial(super(LocalObject, self).__getattribute__, attr))


#: What Property_List must not name (ASHRAE 135, 12.1.1.4.1): every object has these four.
NOT_IN_PROPERTY_LIST = frozenset({"objectIdentifier", "objectName", "objectType", "propertyList"})


class StandardPropertyList:
    """Property_List as the standard has it: bacpypes3 lists the four properties every object has
    too, and a client that walks the list (an EPICS tool, a BAS import) then reads them twice or
    flags the device as non-conformant."""

    _not_listed: ClassVar[frozenset[str]] = NOT_IN_PROPERTY_LIST

    @property
    def propertyList(self) -> Any:
        listed = LocalObject.propertyList.fget(self)
        return ArrayOf(PropertyIdentifier)([p for p in listed if p.attr not in self._not_listed])

    @propertyList.setter
    def propertyList(self, value: Any) -> None:
        """Computed; writes are refused before they get here."""


def _bits(bit_string_class: type, names: tuple[str, ...]) -> Any:
    value = bit_string_class([])
    for name in names:
        value[getattr(value, name)] = 1
    return value


class EsusDevice(StandardPropertyList, FastAttributes, DeviceObject):
    vendorName = "esus"
    modelName = "esus edge service"
    # bacpypes3 0.0.110 fails inside segmented responses (an assertion in ServerSSM), so the device
    # says it does not segment: a reply too long for one APDU is answered with an abort, and
    # workstations fall back to smaller requests. Max_Segments_Accepted is then absent, as the
    # standard has it for a device that does not segment (bacpypes3 would say 16).
    segmentationSupported = Segmentation.noSegmentation
    maxApduLengthAccepted = 1476
    _not_listed = NOT_IN_PROPERTY_LIST | {"maxSegmentsAccepted"}

    @property
    def maxSegmentsAccepted(self) -> None:
        """Absent (a read answers unknown-property): this device does not segment."""
        return None

    @maxSegmentsAccepted.setter
    def maxSegmentsAccepted(self, value: Any) -> None:
        """Not kept: bacpypes3 sets its default of 16 at start."""

    @property
    def protocolServicesSupported(self) -> ServicesSupported:
        return _bits(ServicesSupported, CONFIRMED_SERVICES + UNCONFIRMED_SERVICES)

    @protocolServicesSupported.setter
    def protocolServicesSupported(self, value: Any) -> None:
        """Computed; writes are refused before they get here."""

    @property
    def protocolObjectTypesSupported(self) -> ObjectTypesSupported:
        return _bits(ObjectTypesSupported, OBJECT_TYPES)

    @protocolObjectTypesSupported.setter
    def protocolObjectTypesSupported(self, value: Any) -> None:
        """Computed; writes are refused before they get here."""


class EsusNetworkPort(StandardPropertyList, NetworkPortObject):
    pass


class PointMixin(StandardPropertyList, FastAttributes):
    """What every esus point object does beyond bacpypes3."""

    _spec: PointSpec
    # properties of the bacpypes3 object this is mixed into (untyped there)
    presentValue: Any
    outOfService: Any
    reliability: Any
    description: Any
    covIncrement: Any

    @property
    def spec(self) -> PointSpec:
        return self._spec

    def set_process_value(self, value: Any) -> bool:
        """Update a read-only point from esus; ignored while out of service (the BAS owns it then).

        Commandable points are never set from Python: bacpypes3 would write priority 16, the BAS's.
        """
        if self._spec.access is Access.COMMANDABLE:
            raise TypeError(f"{self._spec.name} is commandable: only the BAS writes it")
        if self.outOfService:
            return False
        self.presentValue = value
        return True

    def set_reliability(self, reliability: str) -> None:
        if self.reliability != Reliability(reliability):
            self.reliability = Reliability(reliability)
            self.status_changed()

    def status_changed(self) -> None:
        """Tell COV subscribers that statusFlags changed (bacpypes3 does not notice)."""
        app = getattr(self, "_app", None)
        detection = app._cov_detections.get(self.objectIdentifier) if app else None
        if detection is not None:
            detection.statusFlags = self.statusFlags
            detection.send_cov_notifications()

    @property
    def effective_priority(self) -> int | None:
        """Priority slot that drives presentValue, or None when relinquished (or not commandable)."""
        current = getattr(self, "currentCommandPriority", None)
        return None if current is None or current.unsigned is None else int(current.unsigned)


class EsusAnalogValue(PointMixin, AnalogValueObject):
    pass


class EsusCommandableAnalogValue(PointMixin, Commandable, AnalogValueObject):
    pass


class EsusBinaryValue(PointMixin, BinaryValueObject):
    pass


class EsusCommandableBinaryValue(PointMixin, Commandable, BinaryValueObject):
    pass


class EsusMultiStateValue(PointMixin, MultiStateValueObject):
    _cov_criteria = GenericCriteria  # multi-state values have no covIncrement


def make_object(spec: PointSpec) -> PointMixin:
    """Build the bacpypes3 object for one point of the table (must run inside the event loop)."""
    common: dict[str, Any] = dict(
        objectIdentifier=(spec.object_type, spec.instance),
        objectName=spec.name,
        description=CharacterString(spec.description),
        eventState=EventState.normal,
        reliability=Reliability.noSensor,  # until esus (or the BAS) gives it a value
        outOfService=False,
    )
    commandable = spec.access is Access.COMMANDABLE
    if spec.object_type == "analog-value":
        cls = EsusCommandableAnalogValue if commandable else EsusAnalogValue
        extra: dict[str, Any] = dict(presentValue=float(spec.relinquish_default or 0.0),
                                     units=EngineeringUnits(spec.units or "noUnits"),
                                     covIncrement=float(spec.cov_increment or 0.0))
        if commandable:
            extra["relinquishDefault"] = float(spec.relinquish_default or 0.0)
        if spec.minimum is not None and math.isfinite(spec.minimum):
            extra["minPresValue"] = float(spec.minimum)
        if spec.maximum is not None and math.isfinite(spec.maximum):
            extra["maxPresValue"] = float(spec.maximum)
    elif spec.object_type == "binary-value":
        cls = EsusCommandableBinaryValue if commandable else EsusBinaryValue
        default = "active" if spec.relinquish_default else "inactive"
        extra = dict(presentValue=default, inactiveText=spec.inactive_text, activeText=spec.active_text)
        if commandable:
            extra["relinquishDefault"] = default
    elif spec.object_type == "multi-state-value":
        cls = EsusMultiStateValue
        extra = dict(presentValue=1, numberOfStates=len(spec.states), stateText=list(spec.states))
    else:
        raise ValueError(f"unsupported object type {spec.object_type}")
    obj = cls(**common, **extra)
    obj._spec = spec
    if commandable and not spec.needs_write:
        obj.reliability = Reliability.noFaultDetected
    return obj
