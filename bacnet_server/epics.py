"""The device's EPICS (the Electronic PICS of ASHRAE 135.1, in the text form bacnet-stack's bacepics
prints), generated from the same point table the device serves, so a BAS technician can review
the device before it is on site and a test can hold the running device to it.

Properties whose values are the site's (names, units, states, limits, what the device supports)
are given; those that change at run time (present values, flags, the network port's address) are
"?"; what a BAS may write is marked "Writable".
"""

from __future__ import annotations

import re
from typing import Any

from bacpypes3.basetypes import PropertyIdentifier
from bacpypes3.constructeddata import Array, List
from bacpypes3.primitivedata import BitString, Boolean, CharacterString, Enumerated, ObjectIdentifier, Real

from bacnet_server.app import device_object, network_port_object
from bacnet_server.objects import CONFIRMED_SERVICES, OBJECT_TYPES, UNCONFIRMED_SERVICES, PointMixin, make_object
from bacnet_server.points import Access, PointSpec

#: Properties whose values are fixed by the site and the code, not by what happens at run time.
GIVEN = frozenset({
    "objectIdentifier", "objectName", "objectType", "description", "units", "numberOfStates", "stateText",
    "inactiveText", "activeText", "relinquishDefault", "minPresValue", "maxPresValue", "vendorName",
    "vendorIdentifier", "modelName", "firmwareRevision", "applicationSoftwareVersion", "protocolVersion",
    "protocolRevision", "maxApduLengthAccepted", "segmentationSupported", "protocolServicesSupported",
    "protocolObjectTypesSupported", "objectList"})
SERVICE_NAMES = {"readProperty": "ReadProperty", "readPropertyMultiple": "ReadPropertyMultiple",
                 "writeProperty": "WriteProperty", "subscribeCOV": "SubscribeCOV", "whoIs": "Who-Is",
                 "whoHas": "Who-Has", "iAm": "I-Am", "iHave": "I-Have"}
OBJECT_TYPE_NAMES = {"device": "Device", "analogValue": "Analog Value", "binaryValue": "Binary Value",
                     "multiStateValue": "Multi-state Value", "networkPort": "Network Port"}
BIBBS = ("DS-RP-B", "DS-RPM-B", "DS-WP-B", "DS-COV-B", "DM-DDB-B", "DM-DOB-B")


def hyphenated(attr: str) -> str:
    """bacpypes3's attribute name as the standard spells the property: objectName -> object-name."""
    return str(PropertyIdentifier(attr))


def epics_value(value: Any) -> str:
    """A property value in EPICS notation."""
    if isinstance(value, ObjectIdentifier):
        kind, instance = str(value).rsplit(",", 1)
        return f"({kind}, {instance})"
    if isinstance(value, Boolean | bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, CharacterString | str):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Enumerated):
        return str(value)
    if isinstance(value, BitString):
        return "{" + ",".join("T" if bit else "F" for bit in value) + "}"
    if isinstance(value, Array | List | list | tuple):
        return "{" + ", ".join(epics_value(v) for v in value) + "}"
    if isinstance(value, Real | float):
        return repr(float(value))
    return str(value)


def _writable(obj: Any, attr: str) -> bool:
    if not isinstance(obj, PointMixin):
        return False
    spec = obj.spec
    return attr == "outOfService" or (attr == "presentValue" and spec.access is Access.COMMANDABLE) or (
        attr == "covIncrement" and spec.object_type == "analog-value")


def _object_block(obj: Any, object_list: list[Any]) -> list[str]:
    lines = ["  {"]
    attrs = ["objectIdentifier", "objectName", "objectType"] + [p.attr for p in obj.propertyList]
    for attr in attrs:
        datatype = obj._elements[attr]
        if attr == "objectList":   # the device computes it from its application, which is not running here
            value = epics_value(object_list)
        elif attr in GIVEN:
            raw = getattr(obj, attr)
            value = epics_value(raw if isinstance(raw, datatype) or raw is None else datatype(raw))
        else:
            value = "?"
        lines.append(f"    {hyphenated(attr)}: {value}{' Writable' if _writable(obj, attr) else ''}")
    lines.append("  }")
    return lines


def epics_text(identity: Any, points: list[PointSpec]) -> str:
    """The EPICS of the device with these points (run inside an event loop: bacpypes3 objects need one)."""
    device = device_object(identity)
    objects: list[Any] = [device, network_port_object(identity)] + [make_object(spec) for spec in points]
    object_list = [o.objectIdentifier for o in objects]
    header = [
        "PICS 0", "BACnet Protocol Implementation Conformance Statement", "",
        f'Vendor Name: "{device.vendorName}"', f'Product Name: "{device.modelName}"',
        f'Product Model Number: "{device.modelName}"',
        f'Product Description: "{device.description}"', "",
        "BIBBs Supported:", "{", *(f" {b}" for b in BIBBS), "}", "",
        "BACnet Standard Application Services Supported:", "{",
        *(f" {SERVICE_NAMES[s]} Execute" for s in CONFIRMED_SERVICES),
        " ConfirmedCOVNotification Initiate", " UnconfirmedCOVNotification Initiate",
        *(f" {SERVICE_NAMES[s]} {'Initiate' if s in ('iAm', 'iHave') else 'Execute'}" for s in UNCONFIRMED_SERVICES),
        "}", "",
        "Standard Object Types Supported:", "{", *(f" {OBJECT_TYPE_NAMES[t]}" for t in OBJECT_TYPES), "}", "",
        "Data Link Layer Option:", "{", " BACnet/IP, Annex J", "}", "",
        "Character Sets Supported:", "{", " ISO 10646 (UTF-8)", "}", "",
        "Special Functionality:", "{", f" Maximum APDU size in octets: {device.maxApduLengthAccepted}",
        " Segmentation: none", "}", "",
        "List of Objects in Test Device:", "{"]
    blocks = [_object_block(o, object_list) for o in objects]
    body = [line for block in blocks for line in (block[:-1] + ["  },"])]
    body[-1] = "  }"
    return "\n".join(header + body + ["}", "End of BACnet Protocol Implementation Conformance Statement", ""])


def parse_objects(text: str) -> dict[str, dict[str, str]]:
    """The objects of an EPICS text: '(type, n)' -> {property: value text} (for checking a device)."""
    objects: dict[str, dict[str, str]] = {}
    body = text.split("List of Objects in Test Device:", 1)[1]
    for block in re.findall(r"\n  \{\n(.*?)\n  \}", body, flags=re.S):
        props = {}
        for line in block.splitlines():
            name, _, value = line.strip().partition(": ")
            props[name] = value
        objects[props["object-identifier"]] = props
    return objects
