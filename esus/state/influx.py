"""Drains the outbox into InfluxDB 2 with influxdb-client's synchronous write API.

Oldest lines first; a batch is deleted only after a 2xx. A 400/422 batch is split in halves until
the refused lines are found: those go to the dead letter, the rest of the batch flows. While the
server is away the writer backs off (exponential, jittered, at most a minute) and the lines wait
on disk. An idle writer does not poll: the outbox wakes it when lines are put, and it gathers for a
second before it sends, so a burst of lines goes in one request. Its waits are on the injected
clock, but for one: requests are at least a real second apart, because that pace is the server's
and the network's, not the building's (on a 600x clock a one-second gather would otherwise be
hundreds of requests a second, each a commit in the history file the BACnet writes wait for).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import Callable

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from bms_wrapper.transport import connection_problem
from esus.runtime.clock import Clock, sleep_or_wake
from esus.settings.config import InfluxAccess
from esus.state.outbox import Outbox

log = logging.getLogger(__name__)

BATCH_LINES = 5000
GATHER_S = 1.0            # after a wake, so the lines of one tick go in one request
MIN_SEND_INTERVAL_S = 1.0  # real seconds between two requests (see above)
IDLE_CHECK_S = 60.0       # an idle writer looks anyway this often (lines put by another process)
FINAL_FLUSH_S = 5.0
MAX_BACKOFF_S = 60.0
PRECISION = WritePrecision.MS


def retry_delay_s(failures: int, draw: Callable[[float, float], float] = random.uniform) -> float:
    """2^failures seconds, at most a minute, jittered to 50-100 %: the sites that lost one central
    server together come back spread over half a minute, not in one second (bench/portfolio.py)."""
    return min(MAX_BACKOFF_S, 2.0 ** min(failures, 6)) * draw(0.5, 1.0)


class SendError(Exception):
    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message

    @property
    def refused_as_invalid(self) -> bool:
        return self.status in (400, 422)


def _server_message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body).get("message", exc.body)
    except (TypeError, ValueError, AttributeError):
        return str(exc.body or exc.reason)


class InfluxSender:
    def __init__(self, access: InfluxAccess, timeout_s: float = 10.0) -> None:
        self.access = access
        self.client = InfluxDBClient(url=access.url, token=access.token.get_secret_value(), org=access.org,
                                     timeout=int(timeout_s * 1000), retries=0)
        self.write_api = self.client.write_api(write_options=SYNCHRONOUS)

    def send(self, lines: list[str]) -> None:
        try:
            self.write_api.write(bucket=self.access.bucket, org=self.access.org, record="\n".join(lines),
                                 write_precision=PRECISION)  # type: ignore[arg-type] # a str constant there
        except ApiException as exc:
            raise SendError(exc.status, _server_message(exc)) from None
        except Exception as exc:  # noqa: BLE001 - urllib3 raises many kinds for a server that is away
            raise SendError(None, f"{self.access.url} {connection_problem(exc)}") from None

    def close(self) -> None:
        self.client.close()


class InfluxWriter:
    def __init__(self, outbox: Outbox, send: Callable[[list[str]], None], clock: Clock,
                 batch_lines: int = BATCH_LINES) -> None:
        self.outbox, self.send, self.clock, self.batch_lines = outbox, send, clock, batch_lines
        self.failures = 0          # consecutive failed attempts (0 = healthy)
        self.last_error: str | None = None
        self._waiting = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sent_at = -math.inf   # time.monotonic() of the last request

    def deliver(self, ids: list[int], lines: list[str]) -> None:
        """Send one batch; on a 400/422 isolate the refused lines. Raises SendError to retry later."""
        try:
            self.send(lines)
        except SendError as exc:
            if not exc.refused_as_invalid:
                raise
            if len(lines) == 1:
                log.error("InfluxDB refused a line (HTTP %s: %s); moved to the dead letter: %s",
                          exc.status, exc.message, lines[0][:200])
                self.outbox.bury(ids, lines, exc.status or 0, exc.message)
                return
            half = len(lines) // 2
            self.deliver(ids[:half], lines[:half])
            self.deliver(ids[half:], lines[half:])
            return
        self.outbox.delete(ids)

    def step(self) -> bool:
        """Deliver the oldest batch; True when something was sent (blocking: run it in a thread)."""
        batch = self.outbox.oldest(self.batch_lines)
        if batch is None:
            return False
        self.deliver(batch.ids, batch.lines)
        return True

    def flush(self, budget_s: float = FINAL_FLUSH_S) -> None:
        """At shutdown: send what waits, for at most `budget_s`; the rest stays on disk for next time."""
        deadline = time.monotonic() + budget_s
        try:
            while time.monotonic() < deadline and self.step():
                pass
        except SendError as exc:
            log.info("InfluxDB not reachable at shutdown (%s); %d lines stay in the outbox", exc.message,
                     self.outbox.depth)

    def backoff_s(self) -> float:
        return retry_delay_s(self.failures)

    def _lines_put(self) -> None:
        """From the outbox, in any thread: wake the writer."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._waiting.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.outbox.on_put = self._lines_put
        try:
            await self._send_forever()
        finally:
            self.outbox.on_put = None

    async def _send_forever(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, self._sent_at + MIN_SEND_INTERVAL_S - time.monotonic()))
            self._sent_at = time.monotonic()
            try:
                sent = await asyncio.to_thread(self.step)
            except SendError as exc:
                self.failures += 1
                if self.failures == 1 or exc.message != self.last_error:
                    log.warning("InfluxDB write failed (%s); %d lines wait in the outbox, retrying with backoff",
                                exc.message if exc.status is None else f"HTTP {exc.status}: {exc.message}",
                                self.outbox.depth)
                self.last_error = exc.message
                await self.clock.sleep(self.backoff_s())
                continue
            if self.failures:
                log.info("InfluxDB is back after %d failed attempts; sending the %d waiting lines",
                         self.failures, self.outbox.depth)
                self.failures, self.last_error = 0, None
            if not sent:
                await sleep_or_wake(self.clock, IDLE_CHECK_S, self._waiting)
                await self.clock.sleep(GATHER_S)
