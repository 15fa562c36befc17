"""The building's power from a Modbus TCP meter (pymodbus), for the VTN's reports when the meter is
not the one the BAS writes into input-power-meter. Read on its own cadence, with timeouts; a
reading older than a few periods is not reported."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

DataType = Literal["int16", "uint16", "int32", "uint32", "float32", "float64"]
STALE_PERIODS = 3


class MeterError(Exception):
    """The meter gave no usable reading."""


@dataclass(frozen=True)
class ModbusMeterConfig:
    host: str
    register: int                      # 0-based register address, as pymodbus and most meters' maps use
    port: int = 502
    unit_id: int = 1
    register_type: Literal["holding", "input"] = "holding"
    data_type: DataType = "float32"
    byte_order: Literal["big", "little"] = "big"   # within each 16-bit register
    word_order: Literal["big", "little"] = "big"   # of the registers of a 32/64-bit value
    scale: float = 1.0                 # raw value x scale = kW (e.g. 0.001 for a meter in W)
    poll_s: float = 10.0
    timeout_s: float = 3.0


def decode_kw(registers: list[int], config: ModbusMeterConfig) -> float:
    """kW from the raw registers, by the meter's data type, byte and word order and scale."""
    from pymodbus.client import ModbusTcpClient

    if config.byte_order == "little":
        registers = [((r & 0xFF) << 8) | (r >> 8) for r in registers]
    kind = ModbusTcpClient.DATATYPE[config.data_type.upper()]
    raw = ModbusTcpClient.convert_from_registers(registers, kind, word_order=config.word_order)
    if isinstance(raw, list | str):
        raise MeterError(f"the meter's registers decode to {raw!r} ({config.data_type}), not a number")
    value = float(raw) * config.scale
    if not math.isfinite(value):
        raise MeterError(f"the meter's registers decode to {value} ({config.data_type}): check data_type and "
                         "byte/word order")
    return value


def register_count(data_type: DataType) -> int:
    return {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4}[data_type]


class ModbusMeter:
    def __init__(self, config: ModbusMeterConfig, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """`clock` and `sleep` pace the polls and judge staleness (the service's clock); the
        Modbus timeouts are the network's, in real seconds."""
        from pymodbus.client import AsyncModbusTcpClient

        self.config, self.clock, self.sleep = config, clock, sleep
        self.client = AsyncModbusTcpClient(config.host, port=config.port, timeout=config.timeout_s, retries=0,
                                           reconnect_delay=0)
        self.reading: tuple[float, float] | None = None  # (kW, clock time)
        self.last_error: str | None = None

    async def read_kw(self) -> float:
        from pymodbus.exceptions import ModbusException

        c = self.config
        where = f"Modbus meter {c.host}:{c.port} unit {c.unit_id} register {c.register}"
        try:
            if not self.client.connected and not await self.client.connect():
                raise MeterError(f"{where}: no connection (check host, port and that the meter allows Modbus TCP)")
            read = (self.client.read_holding_registers if c.register_type == "holding"
                    else self.client.read_input_registers)
            reply = await asyncio.wait_for(
                read(c.register, count=register_count(c.data_type), device_id=c.unit_id), c.timeout_s + 1)
        except (TimeoutError, ModbusException, OSError) as exc:
            self.client.close()
            raise MeterError(f"{where}: {type(exc).__name__}: {exc or 'no answer'}") from None
        if reply.isError():
            raise MeterError(f"{where}: the meter answered with Modbus exception {reply.exception_code} "
                             "(check unit id, register and register type)")
        return decode_kw(list(reply.registers), c)

    async def run(self) -> None:
        """Poll until cancelled; say a failure once and the recovery once."""
        while True:
            try:
                kw = await self.read_kw()
            except MeterError as exc:
                if self.last_error is None:
                    log.warning("demand response: %s; the power report stays empty until it answers", exc)
                self.last_error = str(exc)
            else:
                if self.last_error is not None:
                    log.info("demand response: the Modbus meter answers again (%.2f kW)", kw)
                self.reading, self.last_error = (kw, self.clock()), None
            await self.sleep(self.config.poll_s)

    def latest_kw(self) -> float | None:
        """The newest reading, or None when there is none from the last few periods."""
        if self.reading is None or self.clock() - self.reading[1] > STALE_PERIODS * self.config.poll_s:
            return None
        return self.reading[0]

    def close(self) -> None:
        self.client.close()
