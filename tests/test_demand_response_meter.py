"""The Modbus TCP power meter: decoding by data type, byte and word order; a pymodbus server on
loopback; a meter that refuses, one that is not there, one that never answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from demand_response.modbus_meter import MeterError, ModbusMeter, ModbusMeterConfig, decode_kw
from tests.tsdb import free_tcp_port
from tests.test_demand_response_shed import in_loop

FORMATS = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f", "float64": "d"}


def registers(value: float, data_type: str, byte_order: str = "big", word_order: str = "big") -> list[int]:
    """How a meter with these settings lays the value out in its registers."""
    raw = struct.pack(">" + FORMATS[data_type], value)
    words = [raw[i:i + 2] for i in range(0, len(raw), 2)]
    if word_order == "little":
        words.reverse()
    if byte_order == "little":
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


@given(value=st.floats(-1e6, 1e6, allow_nan=False, width=32), byte_order=st.sampled_from(["big", "little"]),
       word_order=st.sampled_from(["big", "little"]))
def test_a_float32_decodes_in_every_byte_and_word_order(value: float, byte_order: str, word_order: str) -> None:
    config = ModbusMeterConfig("127.0.0.1", 0, data_type="float32", byte_order=byte_order, word_order=word_order)
    assert decode_kw(registers(value, "float32", byte_order, word_order), config) == value


@pytest.mark.parametrize(("data_type", "raw", "scale", "kw"), [
    ("int16", -1234, 0.1, -123.4), ("uint16", 65000, 0.01, 650.0), ("int32", -2_000_000, 0.001, -2000.0),
    ("uint32", 4_000_000_000, 0.000001, 4000.0), ("float64", 12.25, 1.0, 12.25),
])
def test_integer_and_double_registers_decode_with_the_scale(data_type: str, raw: float, scale: float,
                                                             kw: float) -> None:
    config = ModbusMeterConfig("127.0.0.1", 0, data_type=data_type, word_order="little", scale=scale)
    assert decode_kw(registers(raw, data_type, word_order="little"), config) == pytest.approx(kw)


def test_registers_that_decode_to_nan_are_refused() -> None:
    with pytest.raises(MeterError, match="decode to nan"):
        decode_kw([0x7FC0, 0x0000], ModbusMeterConfig("127.0.0.1", 0))


@contextlib.asynccontextmanager
async def meter_server(values: list[int], unit: int = 3) -> AsyncIterator[int]:
    port = free_tcp_port()
    device = SimDevice(id=unit, simdata=[SimData(address=0, values=values + [0] * 8, datatype=DataType.REGISTERS)])
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    try:
        yield port
    finally:
        await server.shutdown()


@in_loop
async def test_the_meter_is_read_over_modbus_tcp() -> None:
    async with meter_server(registers(42.5, "float32")) as port:
        meter = ModbusMeter(ModbusMeterConfig("127.0.0.1", 0, port=port, unit_id=3))
        try:
            assert await meter.read_kw() == 42.5
            assert await meter.read_kw() == 42.5          # the connection is kept
        finally:
            meter.close()


@in_loop
async def test_a_wrong_register_is_a_clear_error() -> None:
    async with meter_server(registers(42.5, "float32")) as port:
        meter = ModbusMeter(ModbusMeterConfig("127.0.0.1", 900, port=port, unit_id=3))
        try:
            with pytest.raises(MeterError, match="register 900: the meter answered with Modbus exception 2"):
                await meter.read_kw()
        finally:
            meter.close()


@in_loop
async def test_a_meter_that_is_not_there_or_never_answers_is_a_clear_error() -> None:
    meter = ModbusMeter(ModbusMeterConfig("127.0.0.1", 0, port=free_tcp_port(), timeout_s=0.5))
    with pytest.raises(MeterError, match="no connection"):
        await meter.read_kw()
    meter.close()
    with socket.socket() as silent:                      # accepts the connection, says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        meter = ModbusMeter(ModbusMeterConfig("127.0.0.1", 0, port=silent.getsockname()[1], timeout_s=0.5))
        with pytest.raises(MeterError, match="127.0.0.1"):
            await asyncio.wait_for(meter.read_kw(), 5)
        meter.close()


@in_loop
async def test_the_poll_says_a_failure_once_and_its_readings_go_stale(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    async with meter_server(registers(7.5, "float32")) as port:
        meter = ModbusMeter(ModbusMeterConfig("127.0.0.1", 0, port=port, unit_id=3, poll_s=0.05),
                            clock=lambda: now[0])
        task = asyncio.create_task(meter.run())
        for _ in range(100):
            if meter.latest_kw() is not None:
                break
            await asyncio.sleep(0.02)
        assert meter.latest_kw() == 7.5
        now[0] = 1.0                                      # no new reading for 20 periods
        meter.config = ModbusMeterConfig("127.0.0.1", 900, port=port, unit_id=3, poll_s=0.05)
        with caplog.at_level(logging.INFO, logger="demand_response"):
            await asyncio.sleep(0.5)
        task.cancel()
        meter.close()
    assert meter.latest_kw() is None
    assert sum("Modbus exception" in r.getMessage() for r in caplog.records) == 1
