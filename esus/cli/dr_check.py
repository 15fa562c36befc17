"""What `esus doctor` asks of demand response before an event needs it: can the VTN be reached,
does every shed point answer a read (nothing is written), does the Modbus meter give a reading."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from demand_response.ven3 import Ven3Config
from demand_response.vtn3_client import close_client, reach
from esus.parts.demand import modbus_meter_config
from esus.settings.config import Settings

DOCTOR_INSTANCE = 4194301   # a device instance of its own while the doctor asks


async def probe(settings: Settings, timeout_s: float) -> tuple[list[str], list[str]]:
    """(problems, findings), each a short phrase."""
    problems, found = [], []
    if isinstance(settings.oadr, Ven3Config):
        vtn = settings.oadr
        try:
            client, program_id = await asyncio.to_thread(reach, vtn, timeout_s)
            close_client(client)
            found.append(f"VTN {vtn.vtn_url} (OpenADR 3.1) granted a token; program {vtn.program!r} is {program_id}")
        except Exception as exc:  # noqa: BLE001 - whatever failed is the finding, in one line
            problems.append(f"VTN {vtn.vtn_url} (OpenADR 3.1): {type(exc).__name__}: {exc}: check "
                            "ESUS_OADR_VTN_URL, _CLIENT_ID, _CLIENT_SECRET and _PROGRAM")
    elif settings.oadr is not None:
        url = urlsplit(settings.oadr.vtn_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            async with asyncio.timeout(timeout_s):
                _, writer = await asyncio.open_connection(url.hostname, port)
            writer.close()
            found.append(f"VTN {url.hostname}:{port} reachable")
        except (TimeoutError, OSError) as exc:
            problems.append(f"VTN {url.hostname}:{port} cannot be reached ({type(exc).__name__}): "
                            "check ESUS_OADR_VTN_URL and the firewall")
    actions = settings.site.demand_response.actions
    if actions:
        silent = await _read_shed_points(settings, timeout_s)
        problems += silent
        found.append(f"{len(actions) - len(silent)} of {len(actions)} shed points answer")
    config = modbus_meter_config(settings)
    if config is not None:
        from demand_response.modbus_meter import MeterError, ModbusMeter

        meter = ModbusMeter(config)
        try:
            found.append(f"Modbus meter reads {await meter.read_kw():.2f} kW")
        except MeterError as exc:
            problems.append(str(exc))
        finally:
            meter.close()
    return problems, found


async def _read_shed_points(settings: Settings, timeout_s: float) -> list[str]:
    """One phrase per shed point that does not answer a ReadProperty of what esus would write."""
    from bacnet_server.client import BacnetClientError
    from esus.parts.bacnet import client_beside

    client = client_beside(settings, DOCTOR_INSTANCE, "esus-doctor", timeout_s)
    problems = []
    try:
        for action in settings.site.demand_response.actions:
            try:
                await client.read(action.address, action.object, action.property)
            except BacnetClientError as exc:
                problems.append(f"'{action.name}': {exc}: check the address, object and property")
    finally:
        client.close()
    return problems
