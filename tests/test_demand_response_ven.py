"""The VEN against a real OpenADR VTN on loopback (openleadr's server), shedding on bacpypes3
controllers: events opted into and shed, cancelled early, power reported, an unreachable VTN."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from demand_response import ven as ven_module
from bacnet_server.client import BacnetClient
from demand_response.actions import ShedAction
from demand_response.ledger import Ledger
from demand_response.shedder import Shedder
from esus.parts.demand import ShedPointWriter
from demand_response.ven import Ven, VenConfig
from tests.dr_targets import Target, start_client, start_target
from tests.oadr_vtn import Vtn
from tests.test_demand_response_shed import in_loop


async def wait_until(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def building(tmp: Path, vtn: str | VenConfig, power_kw: float | None = 42.5
                   ) -> AsyncIterator[tuple[Ven, Target]]:
    """esus's demand response parts as the service composes them: VEN, shedder, a reconcile loop."""
    tmp.mkdir(parents=True, exist_ok=True)
    target, client = start_target(711), start_client()
    ledger = Ledger(tmp / "dr.sqlite")
    shedder = Shedder([ShedAction("setpoint", target.address, "analog-value,1", {1: 21.0, 2: 22.0}),
                       ShedAction("chiller", target.address, "analog-output,2", {2: 50.0})],
                      ledger, ShedPointWriter(BacnetClient(client, timeout_s=2.0)), stage_delay_s=0.05)
    wake = asyncio.Event()

    async def reconcile_loop() -> None:
        while True:
            await shedder.reconcile()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), 0.2)
            wake.clear()
    config = vtn if isinstance(vtn, VenConfig) else VenConfig(vtn, "esus-test")
    ven = Ven(config, shedder, lambda: power_kw, wake.set)
    tasks = [asyncio.create_task(ven.run()), asyncio.create_task(reconcile_loop())]
    try:
        yield ven, target
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ven.close()
        ledger.close()
        target.close()
        client.close()


def slots(target: Target) -> tuple[object, object]:
    return target.slot("analog-value,1", 10), target.slot("analog-output,2", 10)


@pytest.mark.slow
@in_loop
async def test_an_event_is_opted_into_shed_at_its_start_and_released_at_its_end(tmp_path: Path) -> None:
    async with Vtn() as vtn, building(tmp_path, vtn.url) as (ven, target):
        await wait_until(lambda: ven.registered)
        event_id = vtn.add_event(level=2, starts_in_s=2, duration_s=3)
        await wait_until(lambda: vtn.opts.get(event_id) == "optIn")
        assert slots(target) == (None, None)                      # not before its start
        await wait_until(lambda: slots(target) == (22.0, 50.0))
        await wait_until(lambda: slots(target) == (None, None))   # released at its end
        await wait_until(lambda: len(vtn.power) >= 2)
        assert {kw for _, kw in vtn.power} == {42.5}              # the telemetry report


@pytest.mark.slow
@in_loop
async def test_an_event_cancelled_by_the_vtn_is_released_at_once(tmp_path: Path) -> None:
    async with Vtn() as vtn, building(tmp_path, vtn.url) as (ven, target):
        await wait_until(lambda: ven.registered)
        event_id = vtn.add_event(level=1, starts_in_s=0, duration_s=600)
        await wait_until(lambda: slots(target) == (21.0, None))   # the chiller sits level 1 out
        vtn.server.cancel_event(ven_id="ven-esus-1", event_id=event_id)
        await wait_until(lambda: slots(target) == (None, None))


@pytest.mark.slow
@in_loop
async def test_an_event_without_a_simple_signal_is_opted_out(tmp_path: Path) -> None:
    async with Vtn() as vtn, building(tmp_path, vtn.url) as (ven, target):
        await wait_until(lambda: ven.registered)
        event_id = vtn.add_event(level=5.0, starts_in_s=0, duration_s=60, signal="ELECTRICITY_PRICE")
        await wait_until(lambda: vtn.opts.get(event_id) == "optOut")
        assert slots(target) == (None, None)


@pytest.mark.slow
@in_loop
async def test_an_unreachable_vtn_is_said_once_and_retried_until_it_answers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(ven_module, "RETRY_S", (0.3,))
    vtn = Vtn()                                                       # its port, nobody listening yet
    with caplog.at_level(logging.INFO, logger="demand_response"):
        async with building(tmp_path, vtn.url, power_kw=None) as (ven, target):
            await asyncio.sleep(1.5)
            assert not ven.registered and "did not register" in (ven.last_error or "")
            await vtn.start()
            try:
                await wait_until(lambda: ven.registered)
                event_id = vtn.add_event(level=2, starts_in_s=0, duration_s=600)
                await wait_until(lambda: slots(target) == (22.0, 50.0))
                assert vtn.opts[event_id] == "optIn"
                await asyncio.sleep(1.5)
                assert vtn.power == []                                # no reading, no made-up value
            finally:
                await vtn.stop()
    said = [r.getMessage() for r in caplog.records if r.name.startswith("demand_response.ven")]
    assert sum("did not register" in line for line in said) == 1
    assert any("registered with the VTN" in line and "attempts" in line for line in said)


@pytest.mark.slow
@in_loop
async def test_a_vtn_that_goes_away_is_said_once_and_its_return_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    vtn = await Vtn().start()
    with caplog.at_level(logging.INFO):
        async with building(tmp_path, vtn.url) as (ven, target):
            await wait_until(lambda: ven.registered)
            event_id = vtn.add_event(level=2, starts_in_s=0, duration_s=600)
            await wait_until(lambda: slots(target) == (22.0, 50.0))
            await vtn.stop()
            await wait_until(lambda: ven.last_error is not None, timeout_s=20)
            await asyncio.sleep(3)
            assert slots(target) == (22.0, 50.0)                      # the event goes on without the VTN
            await vtn.start()
            await wait_until(lambda: ven.last_error is None, timeout_s=20)
            assert vtn.opts.get(event_id) == "optIn"
            await vtn.stop()
    said = [r.getMessage() for r in caplog.records]
    assert sum("has not answered" in line for line in said) == 1
    assert sum("answers again" in line for line in said) == 1
    assert not [line for line in said if line.startswith("Could not connect")]   # openleadr's per-poll noise


@pytest.mark.slow
@in_loop
async def test_a_vtn_behind_tls_takes_the_ven_with_its_client_certificate_and_no_other(tmp_path: Path) -> None:
    from openleadr.utils import certificate_fingerprint

    from tests.tls_certs import make_certs

    certs = make_certs(tmp_path)
    async with Vtn(certs=certs) as vtn:
        config = VenConfig(vtn.url, "esus-test", cert=certs.client_cert, key=certs.client_key, ca_file=certs.ca,
                           vtn_fingerprint=certificate_fingerprint(certs.server_cert.read_bytes()))
        async with building(tmp_path, config) as (ven, target):
            await wait_until(lambda: ven.registered)                 # mutual TLS; the VTN's signature checked
            vtn.add_event(level=2, starts_in_s=0, duration_s=600)
            await wait_until(lambda: slots(target) == (22.0, 50.0))
        stranger = VenConfig(vtn.url, "stranger", cert=None, key=None, ca_file=None)
        async with building(tmp_path / "stranger", stranger) as (ven, _):
            await asyncio.sleep(3)
            assert not ven.registered and vtn.registrations == ["esus-test"]
        impostor_check = VenConfig(vtn.url, "esus-test", cert=certs.client_cert, key=certs.client_key,
                                   ca_file=certs.ca, vtn_fingerprint="00:11:22:33:44:55:66:77:88:99")
        async with building(tmp_path / "impostor", impostor_check) as (ven, _):
            await asyncio.sleep(3)
            assert not ven.registered                               # a VTN whose signature does not match
