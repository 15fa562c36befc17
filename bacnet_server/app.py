"""The BACnet/IP device: a bacpypes3 application serving the point table.

Writes from the network pass one access policy (`check_write`), so no property of any object can
be changed unless the table says so; services the device does not implement are rejected rather
than half-served.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bacpypes3.apdu import SimpleAckPDU
from bacpypes3.app import Application
from bacpypes3.basetypes import BinaryPV, DeviceStatus, HostNPort, IPMode, PropertyIdentifier, Reliability
from bacpypes3.errors import ExecutionError
from bacpypes3.primitivedata import Boolean, Null, ObjectType, Real, Unsigned

from bacnet_server.objects import EsusDevice, EsusNetworkPort, PointMixin, make_object
from bacnet_server.points import Access, PointSpec
from bacnet_server.rejects import answer_malformed_requests
from bacnet_server.traffic import BadTrafficSummary, quiet_bad_traffic

log = logging.getLogger(__name__)

WILDCARD_INSTANCE = 4194303
BIND_TIMEOUT_S = 5.0
DEVICE_DESCRIPTION = "esus edge service: power forecast, load flags, shades"
#: Room for the failing parts in the device's description (front ends show about this much).
FAULT_TEXT_CHARS = 200


class BacnetStartError(Exception):
    """The device could not start; the message says what to do."""


@dataclass(frozen=True)
class DeviceIdentity:
    instance: int
    name: str
    ip: str
    prefix: int
    port: int
    vendor_identifier: int = 999
    software_version: str = "0"
    bbmd: str | None = None       # "ip:port" of the BBMD to register with as a foreign device
    bbmd_ttl_s: int = 900         # the registration's time to live; renewed before it lapses

    @property
    def address(self) -> str:
        return f"{self.ip}/{self.prefix}:{self.port}"


def port_is_free(ip: str, port: int) -> tuple[bool, str]:
    """Bind without SO_REUSEPORT, so another BACnet server on the port is noticed."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((ip, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False, f"UDP {ip}:{port} is already in use by another program (another esus?)"
            if exc.errno == errno.EADDRNOTAVAIL:
                return False, f"{ip} is not an address of this machine: check ESUS_BACNET_ADDRESS"
            return False, f"cannot bind UDP {ip}:{port}: {exc.strerror}"
    return True, f"UDP {ip}:{port} is free"


def _denied() -> ExecutionError:
    return ExecutionError(errorClass="property", errorCode="writeAccessDenied")


def _out_of_range() -> ExecutionError:
    return ExecutionError(errorClass="property", errorCode="valueOutOfRange")


def _invalid_type() -> ExecutionError:
    return ExecutionError(errorClass="property", errorCode="invalidDataType")


def _decode(any_value: Any, kind: type) -> Any:
    try:
        return any_value.cast_out(kind)
    except Exception:  # noqa: BLE001 - bacpypes3 raises several types for a wrong tag
        raise _invalid_type() from None


def decode_present_value(obj: PointMixin, any_value: Any, commanding: bool) -> Any:
    """The written presentValue, checked against the point's type and range; Null relinquishes."""
    spec = obj.spec
    if commanding:
        try:
            any_value.cast_out(Null)
            return Null(())
        except Exception:  # noqa: BLE001 - not a Null
            pass
    if spec.object_type == "analog-value":
        value = float(_decode(any_value, Real))
        low = -math.inf if spec.minimum is None else spec.minimum
        high = math.inf if spec.maximum is None else spec.maximum
        if not math.isfinite(value) or not low <= value <= high:
            raise _out_of_range()
        return Real(value)
    if spec.object_type == "binary-value":
        value = _decode(any_value, BinaryPV)
        if int(value) not in (0, 1):
            raise _out_of_range()
        return value
    value = int(_decode(any_value, Unsigned))
    if not 1 <= value <= len(spec.states):
        raise _out_of_range()
    return Unsigned(value)


#: COV subscriptions one address may hold at once: spoofed SubscribeCOVs cannot fill the device
MAX_SUBSCRIPTIONS_PER_ADDRESS = 64
#: Confirmed COV notifications a subscriber may leave unanswered in a row before its subscription ends
UNANSWERED_NOTIFICATIONS = 3


class EsusApplication(Application):
    """bacpypes3 Application with a strict write policy, the wildcard device instance, and COV
    subscriptions bounded per address and ended when their subscriber stops answering."""

    # Services this device does not implement: answered with reject unrecognized-service.
    do_WritePropertyMultipleRequest = None
    do_ReadRangeRequest = None
    do_ConfirmedCOVNotificationRequest = None
    do_UnconfirmedCOVNotificationRequest = None

    on_point_write: Callable[[PointMixin], None] | None = None
    bad_traffic: BadTrafficSummary | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: unanswered confirmed notifications in a row, per (subscriber address, process, object)
        self.unanswered: dict[tuple[str, int, str], int] = {}

    def _resolve_wildcard(self, object_identifier: Any) -> Any:
        if (object_identifier[0] == ObjectType.device and object_identifier[1] == WILDCARD_INSTANCE
                and self.device_object is not None):
            return self.device_object.objectIdentifier
        return object_identifier

    async def do_ReadPropertyRequest(self, apdu: Any) -> None:
        apdu.objectIdentifier = self._resolve_wildcard(apdu.objectIdentifier)
        await super().do_ReadPropertyRequest(apdu)

    async def do_ReadPropertyMultipleRequest(self, apdu: Any) -> None:
        for spec in apdu.listOfReadAccessSpecs or []:
            spec.objectIdentifier = self._resolve_wildcard(spec.objectIdentifier)
        await super().do_ReadPropertyMultipleRequest(apdu)

    async def do_SubscribeCOVRequest(self, apdu: Any) -> None:
        # The standard: with issueConfirmedNotifications given, an absent lifetime means an indefinite
        # subscription (0); bacpypes3 compares None > 0 and answers with an error instead.
        if apdu.issueConfirmedNotifications is not None and apdu.lifetime is None:
            apdu.lifetime = 0
        if apdu.issueConfirmedNotifications is not None and not self._subscribed(apdu):
            held = sum(str(cov.client_addr) == str(apdu.pduSource) for cov in self._subscriptions())
            if held >= MAX_SUBSCRIPTIONS_PER_ADDRESS:
                self._note(f"COV subscription refused: {MAX_SUBSCRIPTIONS_PER_ADDRESS} held by one address")
                raise ExecutionError(errorClass="resources", errorCode="noSpaceToAddListElement")
        await super().do_SubscribeCOVRequest(apdu)

    def _subscriptions(self) -> list[Any]:
        return [cov for detection in self._cov_detections.values() for cov in detection.cov_subscriptions]

    def _subscribed(self, apdu: Any) -> bool:
        """The request renews a subscription the address holds (which the bound must not refuse)."""
        return any(str(cov.client_addr) == str(apdu.pduSource) and cov.proc_id == apdu.subscriberProcessIdentifier
                   and cov.obj_id == apdu.monitoredObjectIdentifier for cov in self._subscriptions())

    def cov_confirmation(self, cov: Any, future: Any) -> None:
        """A confirmed notification's answer. bacpypes3 raises an unanswered one's AbortPDU in the
        event loop's exception handler (a traceback each); here it is counted with the bad traffic,
        and a subscriber that leaves UNANSWERED_NOTIFICATIONS in a row unanswered loses its
        subscription (it went away, or it was never there: a spoofed source address)."""
        if future.cancelled():
            return
        key = (str(cov.client_addr), int(cov.proc_id), str(cov.obj_id))
        error = future.exception()
        if error is None:
            self.unanswered.pop(key, None)
            return
        missed = self.unanswered[key] = self.unanswered.get(key, 0) + 1
        self._note(f"COV notification unanswered ({type(error).__name__})")
        if missed >= UNANSWERED_NOTIFICATIONS and cov.obj_ref is not None:
            del self.unanswered[key]
            self.cancel_subscription(cov)
            self._note("COV subscription ended: its subscriber stopped answering")

    def _note(self, why: str) -> None:
        if self.bad_traffic is not None:
            self.bad_traffic.note(why)

    async def do_WritePropertyRequest(self, apdu: Any) -> None:
        obj = self.get_object_id(self._resolve_wildcard(apdu.objectIdentifier))
        if obj is None:
            raise ExecutionError(errorClass="object", errorCode="unknownObject")
        if not isinstance(obj, PointMixin):
            raise _denied()  # the device and network port objects are configured, not written
        prop = PropertyIdentifier(apdu.propertyIdentifier).attr
        if apdu.propertyArrayIndex is not None:
            raise _denied()
        if prop == "outOfService":
            value = bool(_decode(apdu.propertyValue, Boolean))
            if bool(obj.outOfService) != value:
                obj.outOfService = value
                obj.status_changed()
        elif prop == "presentValue":
            await self._write_present_value(obj, apdu)
        elif prop == "covIncrement" and obj.spec.object_type == "analog-value":
            increment = float(_decode(apdu.propertyValue, Real))
            if not math.isfinite(increment) or increment < 0:
                raise _out_of_range()
            obj.covIncrement = increment
        else:
            raise _denied()
        log.debug("BACnet write accepted: %s.%s", obj.spec.name, prop)
        await self.response(SimpleAckPDU(context=apdu))

    async def _write_present_value(self, obj: PointMixin, apdu: Any) -> None:
        commandable = obj.spec.access is Access.COMMANDABLE
        if not commandable and not obj.outOfService:
            raise _denied()
        priority = apdu.priority
        if priority is not None and not 1 <= priority <= 16:
            raise ExecutionError(errorClass="property", errorCode="valueOutOfRange")
        value = decode_present_value(obj, apdu.propertyValue, commanding=commandable)
        if not commandable:
            obj.presentValue = value
            return
        await obj.write_property("presentValue", value, None, priority or 16)
        if self.on_point_write is not None:
            self.on_point_write(obj)


def device_object(identity: DeviceIdentity) -> EsusDevice:
    return EsusDevice(objectIdentifier=("device", identity.instance), objectName=identity.name,
                      vendorIdentifier=identity.vendor_identifier, applicationSoftwareVersion=identity.software_version,
                      firmwareRevision=identity.software_version, description=DEVICE_DESCRIPTION)


def network_port_object(identity: DeviceIdentity) -> EsusNetworkPort:
    """The device's BACnet/IP port; with a BBMD, a foreign device registered with it, so that a BAS on
    another subnet finds the device by broadcast (its BBMD forwards the Who-Is, and the I-Am back)."""
    port = EsusNetworkPort(identity.address, objectIdentifier=("network-port", 1), objectName="network-port-1")
    if identity.bbmd is not None:
        port.bacnetIPMode = IPMode.foreign
        port.fdBBMDAddress = HostNPort(identity.bbmd)
        port.fdSubscriptionLifetime = identity.bbmd_ttl_s
    return port


class BacnetDevice:
    """The device as esus sees it: set values and faults by point name, hear BAS writes."""

    def __init__(self, identity: DeviceIdentity, points: list[PointSpec]) -> None:
        self.identity, self.points = identity, points
        self.objects: dict[str, PointMixin] = {}
        self.app: EsusApplication | None = None
        self._listeners: dict[str, list[Callable[[PointMixin], None]]] = {}
        self.writes = 0
        self.faults: list[str] = []
        self.bad_traffic: BadTrafficSummary = quiet_bad_traffic()

    async def start(self) -> None:
        """Bind and serve; raises BacnetStartError when the port is taken or the address is wrong."""
        ip, port = self.identity.ip, self.identity.port
        free, detail = port_is_free(ip, port)
        if not free:
            raise BacnetStartError(f"BACnet cannot start: {detail}")
        self.objects = {spec.name: make_object(spec) for spec in self.points}
        self.app = EsusApplication.from_object_list([device_object(self.identity), network_port_object(self.identity),
                                                     *self.objects.values()])
        self.app.on_point_write = self._written
        self.app.bad_traffic = self.bad_traffic
        answer_malformed_requests(self.app)
        self.set_system_status(self.faults)
        link = next(iter(self.app.link_layers.values()))
        try:
            await asyncio.wait_for(link.server._local_transport_ready.wait(), BIND_TIMEOUT_S)
        except TimeoutError:
            self.close()
            raise BacnetStartError(f"BACnet cannot bind UDP {ip}:{port} within {BIND_TIMEOUT_S:g} s: "
                                   "check ESUS_BACNET_ADDRESS") from None
        log.info("BACnet device %d '%s' serving %d points on %s", self.identity.instance,
                 self.identity.name, len(self.objects), self.identity.address)

    def close(self) -> None:
        if self.app is not None:
            self.app.close()
            self.app = None
            self.bad_traffic.flush()

    def bbmd_registration(self) -> str | None:
        """With a BBMD: whether it has taken the foreign-device registration; None without one."""
        if self.identity.bbmd is None:
            return None
        link = next(iter(self.app.link_layers.values()), None) if self.app is not None else None
        status = getattr(link, "bbmdRegistrationStatus", -2)
        state = {0: "registered", -1: "registering", -2: "not registered"}.get(status, f"refused (code {status})")
        return f"BBMD {self.identity.bbmd} {state}"

    def set_system_status(self, faults: list[str]) -> None:
        """systemStatus operational, or non-operational with the failing parts named in the
        device's description (what a BAS alarms on, and what its technician reads first)."""
        self.faults = list(faults)
        device = self.app.device_object if self.app is not None else None
        if device is None:
            return  # applied at start
        device.systemStatus = DeviceStatus.nonOperational if faults else DeviceStatus.operational
        text = DEVICE_DESCRIPTION if not faults else f"FAULT {'; '.join(faults)}"[:FAULT_TEXT_CHARS]
        if str(device.description) != text:
            device.description = text

    def on_write(self, name: str, listener: Callable[[PointMixin], None]) -> None:
        """Call `listener(obj)` after each accepted BAS write of the named point's presentValue."""
        self._listeners.setdefault(name, []).append(listener)

    def _written(self, obj: PointMixin) -> None:
        self.writes += 1
        for listener in self._listeners.get(obj.spec.name, []):
            try:
                listener(obj)
            except Exception:  # a listener must not break the BACnet reply
                log.exception("handling the BACnet write of %s failed", obj.spec.name)

    def set_value(self, name: str, value: Any, reliability: str = "noFaultDetected") -> None:
        """Publish a fresh value of a read-only point with its reliability."""
        obj = self.objects[name]
        if obj.set_process_value(value):
            obj.set_reliability(reliability)

    def set_description(self, name: str, text: str) -> None:
        """Say something about a point's current state (e.g. which forecast method is in use)."""
        obj = self.objects[name]
        if str(obj.description) != text:
            obj.description = text

    def set_fault(self, name: str, reliability: str) -> None:
        """Mark a point unreliable (e.g. 'communicationFailure'); its last value stays, flagged."""
        self.objects[name].set_reliability(reliability)

    def reliability(self, name: str) -> str:
        return Reliability(self.objects[name].reliability).attr

    def present_value(self, name: str) -> Any:
        return self.objects[name].presentValue

    def commanded(self, name: str) -> Any:
        """The BAS's command of a commandable point, or None when every priority is relinquished."""
        obj = self.objects[name]
        return None if obj.effective_priority is None else obj.presentValue

    def command_slot(self, name: str) -> tuple[Any, int] | None:
        """The BAS's effective command (value, priority) of a commandable point, to keep across a restart."""
        obj = self.objects[name]
        priority = obj.effective_priority
        if priority is None:
            return None
        if obj.spec.object_type == "analog-value":
            return float(obj.presentValue), priority
        return ("active" if obj.presentValue == BinaryPV.active else "inactive"), priority

    async def restore_command(self, name: str, value: Any, priority: int) -> None:
        """Put a command saved before a restart back in its priority slot (no write listeners run)."""
        obj = self.objects[name]
        typed = Real(float(value)) if obj.spec.object_type == "analog-value" else BinaryPV(value)
        await obj.write_property("presentValue", typed, None, priority)

    def is_active(self, name: str) -> bool:
        """A binary point's present value (commanded or relinquish default)."""
        return self.objects[name].presentValue == BinaryPV.active
