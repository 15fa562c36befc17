"""The one BACnet client: every way a request can fail is one BacnetClientError that says who and why."""

from __future__ import annotations

import pytest

from bacnet_server.client import BacnetClient, BacnetClientError
from tests.bacnet_harness import free_udp_port
from tests.dr_targets import start_target
from tests.test_demand_response_shed import in_loop


@in_loop
async def test_reads_writes_and_relinquishes_through_a_device_of_its_own() -> None:
    target = start_target(761)
    client = BacnetClient.own_device(f"127.0.0.1/8:{free_udp_port()}", 597, "esus-client-test", timeout_s=2.0)
    try:
        assert await client.read(target.address, "analog-value,1") == 18.0
        await client.write(target.address, "analog-value,1", 21.5, priority=10)
        assert target.slot("analog-value,1", 10) == 21.5
        assert await client.read(target.address, "analog-value,1") == 21.5
        await client.write(target.address, "analog-value,1", None, priority=10)    # NULL relinquishes
        assert target.slot("analog-value,1", 10) is None
        await client.write(target.address, "binary-output,3", "inactive", priority=9)
        assert target.slot("binary-output,3", 9) == "inactive"
    finally:
        client.close()
        target.close()
    client.close()   # twice is harmless


@in_loop
async def test_a_refusal_a_silence_and_a_bad_request_each_say_what_and_why() -> None:
    target = start_target(762)
    client = BacnetClient.own_device(f"127.0.0.1/8:{free_udp_port()}", 596, "esus-client-test", timeout_s=0.5)
    try:
        with pytest.raises(BacnetClientError, match=r"analog-value,99 present-value = 1.0 at priority 10: refused"):
            await client.write(target.address, "analog-value,99", 1.0, priority=10)
        with pytest.raises(BacnetClientError, match=r"analog-value,99 present-value: refused: .*unknown-object"):
            await client.read(target.address, "analog-value,99")
        silent = f"127.0.0.1:{free_udp_port()}"
        with pytest.raises(BacnetClientError, match=rf"^{silent} analog-value,1 present-value: no answer within 0.5 s$"):
            await client.read(silent, "analog-value,1")
        with pytest.raises(BacnetClientError, match=r"analog-value,1 present-value = 'warm'.*ValueError"):
            await client.write(target.address, "analog-value,1", "warm", priority=10)
        with pytest.raises(BacnetClientError, match=r"chair,1"):
            await client.read(target.address, "chair,1")
    finally:
        client.close()
        target.close()


@in_loop
async def test_a_client_of_a_device_that_is_not_running_says_so() -> None:
    client = BacnetClient(lambda: None)
    with pytest.raises(BacnetClientError, match="the BACnet device is not running"):
        await client.read("127.0.0.1:47808", "analog-value,1")
