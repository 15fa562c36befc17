"""The EPICS shipped in docs/ is what `esus bacnet epics` prints for the example site, and the
running device matches it on the wire (read by an independent stack): the objects, each object's
properties, and the values the EPICS gives."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import rusty_bacnet as rb
from bacpypes3.basetypes import EngineeringUnits, PropertyIdentifier

from bacnet_server.app import BacnetDevice
from bacnet_server.epics import epics_text, parse_objects
from esus.parts.bacnet import device_identity, site_points
from esus.settings.config import load_settings
from tests.bacnet_harness import free_udp_port, serving
from tests.conftest import esus_env

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "docs" / "epics.tpi"
TYPES = {"device": rb.ObjectType.DEVICE, "network-port": rb.ObjectType.NETWORK_PORT,
         "analog-value": rb.ObjectType.ANALOG_VALUE, "binary-value": rb.ObjectType.BINARY_VALUE,
         "multi-state-value": rb.ObjectType.MULTI_STATE_VALUE}
BY_TYPE = {v.to_raw(): k for k, v in TYPES.items()}


def identifier(text: str) -> rb.ObjectIdentifier:
    kind, instance = text.strip("()").split(", ")
    return rb.ObjectIdentifier(TYPES[kind], int(instance))


def test_the_shipped_epics_is_what_the_command_prints(tmp_path: Path) -> None:
    printed = subprocess.run([sys.executable, "-m", "esus", "bacnet", "epics"], cwd=tmp_path, env=esus_env(tmp_path),
                             capture_output=True, text=True, timeout=120, check=True).stdout
    assert printed == SHIPPED.read_text(), "docs/epics.tpi is stale: regenerate it with `esus bacnet epics`"


def test_the_running_device_matches_its_epics(tmp_path: Path) -> None:
    settings = load_settings({"ESUS_STATE_DIR": str(tmp_path), "ESUS_BACNET_ADDRESS": f"127.0.0.1/8:{free_udp_port()}"},
                             demo=True)
    identity, points = device_identity(settings), site_points(settings)

    async def scenario() -> None:
        objects = parse_objects(epics_text(identity, points))
        async with serving(device=BacnetDevice(identity, points)) as s:
            device = rb.ObjectIdentifier(rb.ObjectType.DEVICE, identity.instance)
            on_wire = (await s.client.read_property(s.address, device, rb.PropertyIdentifier.OBJECT_LIST)).value
            assert [f"({BY_TYPE[o.object_type.to_raw()]}, {o.instance})" for o in on_wire] == list(objects)
            for name, props in objects.items():
                oid = identifier(name)
                listed = (await s.client.read_property(s.address, oid, rb.PropertyIdentifier.PROPERTY_LIST)).value
                wire_names = {str(PropertyIdentifier(p.to_raw() if hasattr(p, "to_raw") else int(p))) for p in listed}
                assert set(props) == wire_names | {"object-identifier", "object-name", "object-type"}, name
                read = lambda prop: s.client.read_property(s.address, oid, prop)  # noqa: E731
                assert f'"{(await read(rb.PropertyIdentifier.OBJECT_NAME)).value}"' == props["object-name"]
                if "units" in props:
                    units = (await read(rb.PropertyIdentifier.UNITS)).value
                    assert str(EngineeringUnits(units)) == props["units"], name
                if "number-of-states" in props:
                    assert str((await read(rb.PropertyIdentifier.NUMBER_OF_STATES)).value) == props["number-of-states"]
                if "relinquish-default" in props and "analog" in name:
                    value = (await read(rb.PropertyIdentifier.RELINQUISH_DEFAULT)).value
                    assert abs(value - float(props["relinquish-default"])) < 1e-6, name
    asyncio.run(scenario())
