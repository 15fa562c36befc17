"""Controllers that demand response overrides, played by bacpypes3 apps on loopback ports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bacpypes3.app import Application
from bacpypes3.basetypes import EngineeringUnits
from bacpypes3.local.analog import AnalogOutputObject, AnalogValueObjectCmd
from bacpypes3.local.binary import BinaryOutputObject
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject

from tests.bacnet_harness import free_udp_port


@dataclass
class Target:
    """A controller with a supply air setpoint (AV 1), a chiller demand limit (AO 2) and a fan (BO 3)."""
    app: Application
    address: str
    objects: dict[str, Any]

    def slot(self, obj: str, priority: int) -> Any:
        """The value in a priority slot (1-16), None for NULL."""
        entry = self.objects[obj].priorityArray[priority - 1]
        if entry.null is not None:
            return None
        for kind in ("real", "enumerated", "unsigned"):
            value = getattr(entry, kind, None)
            if value is not None:
                return str(value) if kind == "enumerated" else value
        raise AssertionError(f"unexpected priority value {entry!r}")

    def close(self) -> None:
        self.app.close()


def start_target(instance: int, port: int | None = None) -> Target:
    """Must run inside the event loop."""
    port = port or free_udp_port()
    device = DeviceObject(objectIdentifier=("device", instance), objectName=f"controller-{instance}",
                          vendorIdentifier=999)
    network = NetworkPortObject(f"127.0.0.1/8:{port}", objectIdentifier=("network-port", 1), objectName="port-1")
    objects = {
        "analog-value,1": AnalogValueObjectCmd(objectIdentifier=("analog-value", 1), objectName="supply-air-sp",
                                               presentValue=18.0, units=EngineeringUnits.degreesCelsius),
        "analog-output,2": AnalogOutputObject(objectIdentifier=("analog-output", 2), objectName="chiller-limit",
                                              presentValue=100.0, units=EngineeringUnits.percent),
        "binary-output,3": BinaryOutputObject(objectIdentifier=("binary-output", 3), objectName="fan",
                                              presentValue="active"),
    }
    app = Application.from_object_list([device, network, *objects.values()])
    return Target(app, f"127.0.0.1:{port}", objects)


def start_client(instance: int = 598) -> Application:
    port = free_udp_port()
    device = DeviceObject(objectIdentifier=("device", instance), objectName="esus-dr-test", vendorIdentifier=999)
    network = NetworkPortObject(f"127.0.0.1/8:{port}", objectIdentifier=("network-port", 1), objectName="port-1")
    return Application.from_object_list([device, network])
