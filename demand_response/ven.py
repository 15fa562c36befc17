"""The OpenADR 2.0b VEN (openleadr's client): registers with the utility's or aggregator's VTN,
hands SIMPLE events to the shedder, opts in, and reports the building's power at the cadence the
VTN asks for. A VTN that cannot be reached is retried with backoff; events already received keep
their times, so overrides still end when their event does."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from demand_response.ledger import Event
from demand_response.shedder import Shedder

log = logging.getLogger(__name__)

RETRY_S = (5.0, 15.0, 60.0, 300.0)  # between registration attempts, then every 5 minutes
#: The cadences offered for the power report; the VTN picks one. The reading changes each minute.
REPORT_PERIODS = (timedelta(seconds=1), timedelta(hours=1))
RESOURCE_ID = "building"


@dataclass(frozen=True)
class VenConfig:
    vtn_url: str
    ven_name: str
    ven_id: str | None = None
    cert: Path | None = None          # TLS client certificate and key (PEM), also used to sign messages
    key: Path | None = None
    ca_file: Path | None = None       # the CA that signed the VTN's certificate
    vtn_fingerprint: str | None = None


def event_intervals(event: dict[str, Any]) -> list[Event]:
    """The intervals of an event's SIMPLE signal as shedder events; [] without a SIMPLE signal.
    Interval times come from the event's active period and the intervals' durations."""
    descriptor = event["event_descriptor"]
    signals = event.get("event_signals") or []
    if isinstance(signals, dict):
        signals = signals.get("event_signals", [])
    simple = next((s for s in signals if str(s.get("signal_name", "")).lower() == "simple"), None)
    if simple is None:
        return []
    cancelled = descriptor.get("event_status") == "cancelled"
    start = event["active_period"]["dtstart"]
    out = []
    for number, interval in enumerate(simple.get("intervals") or []):
        begins = interval.get("dtstart") or start
        ends = begins + interval["duration"]
        level = int(round(float(interval.get("signal_payload") or 0)))
        out.append(Event(descriptor["event_id"], max(0, min(level, 3)), begins.timestamp(), ends.timestamp(),
                         cancelled, number))
        start = ends
    return out


class _ConnectionNoise(logging.Filter):
    """openleadr logs every failed poll; the VEN says an outage once and its end once instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(("Could not connect to server", "ClientConnectorError", "Request error",
                                       "No RegistrationID received"))


class Ven:
    def __init__(self, config: VenConfig, shedder: Shedder, power_kw: Callable[[], float | None],
                 changed: Callable[[], None], sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """`sleep` paces the registration retries (the service's clock). The contact watch stays in
        real seconds: it measures openleadr's own polling, which runs on real time."""
        self.config, self.shedder, self.power_kw, self.changed = config, shedder, power_kw, changed
        self.sleep = sleep
        self.client: Any = None
        self.registered = False
        self.last_error: str | None = None
        self.last_contact: float | None = None  # loop time of the VTN's last answer
        noisy = logging.getLogger("openleadr")
        if not any(isinstance(f, _ConnectionNoise) for f in noisy.filters):
            noisy.addFilter(_ConnectionNoise())

    async def run(self) -> None:
        """Register, then leave openleadr's scheduler to poll; retry registration while it fails."""
        attempt = 0
        while True:
            self.client = self._client()
            await self.client.run()
            if self.client.registration_id:
                if attempt:
                    log.info("demand response: registered with the VTN %s after %d attempts",
                             self.config.vtn_url, attempt + 1)
                else:
                    log.info("demand response: registered with the VTN %s as %s", self.config.vtn_url,
                             self.client.ven_id)
                self.registered, self.last_error = True, None
                await self._watch_contact()  # openleadr polls from here on, until cancelled
            delay = RETRY_S[min(attempt, len(RETRY_S) - 1)]
            self.last_error = f"the VTN {self.config.vtn_url} did not register this VEN"
            if attempt == 0:
                log.warning("demand response: %s (check ESUS_OADR_VTN_URL and that the VTN knows VEN %r); "
                            "retrying every few minutes", self.last_error, self.config.ven_name)
            attempt += 1
            await self._stop_client()
            await self.sleep(delay)

    async def _watch_contact(self) -> None:
        """Say once when the VTN stops answering polls, and once when it answers again."""
        loop = asyncio.get_running_loop()
        while True:
            period = max(1.0, self.client.poll_frequency.total_seconds()) if self.client.poll_frequency else 10.0
            await asyncio.sleep(period)
            silent_s = loop.time() - (self.last_contact or loop.time())
            if silent_s > 3 * period and self.last_error is None:
                self.last_error = f"the VTN {self.config.vtn_url} has not answered for {silent_s:.0f} s"
                log.warning("demand response: %s; events already received keep their times", self.last_error)
            elif silent_s <= 3 * period and self.last_error is not None:
                log.info("demand response: the VTN answers again")
                self.last_error = None

    def _heard(self, *_: Any) -> None:
        self.last_contact = asyncio.get_running_loop().time()

    async def close(self) -> None:
        await self._stop_client()

    async def _stop_client(self) -> None:
        client, self.client = self.client, None
        if client is not None and client.client_session is not None and not client.client_session.closed:
            await client.stop()

    def _client(self) -> Any:
        with warnings.catch_warnings():
            # signxml, openleadr's XML signer, names DSA in its signatures: cryptography warns at each
            # import, about a key type OpenADR 2.0b does not use (its certificates are RSA or ECC)
            warnings.filterwarnings("ignore", message="DSA is deprecated", module="signxml")
            from openleadr import OpenADRClient  # here: 31 MB a building without demand response does not need
            from openleadr.objects import SamplingRate

        c = self.config
        client = OpenADRClient(ven_name=c.ven_name, vtn_url=c.vtn_url, ven_id=c.ven_id,
                               cert=str(c.cert) if c.cert else None, key=str(c.key) if c.key else None,
                               ca_file=str(c.ca_file) if c.ca_file else None, vtn_fingerprint=c.vtn_fingerprint,
                               disable_signature=not (c.cert and c.key), show_fingerprint=False)
        client.add_hook("after_receive_xml", self._heard)
        client.add_handler("on_event", self._on_event)
        client.add_handler("on_update_event", self._on_event)
        client.add_report(callback=self._power_reading, resource_id=RESOURCE_ID, measurement="RealPower",
                          unit="W", scale="k", report_duration=REPORT_PERIODS[1],
                          sampling_rate=SamplingRate(min_period=REPORT_PERIODS[0], max_period=REPORT_PERIODS[1]))
        return client

    async def _on_event(self, event: dict[str, Any]) -> str:
        descriptor = event["event_descriptor"]
        event_id, status = descriptor["event_id"], descriptor.get("event_status")
        if descriptor.get("test_event") not in (None, False, "false"):
            log.info("demand response: test event %s received; opted in, nothing shed", event_id)
            return "optIn"
        if status == "cancelled":
            self.shedder.cancel_event(event_id)
            log.info("demand response: event %s cancelled by the VTN", event_id)
            self.changed()
            return "optIn"
        intervals = event_intervals(event)
        if not intervals:
            log.warning("demand response: event %s has no SIMPLE signal, which is all esus acts on; opted out",
                        event_id)
            return "optOut"
        self.shedder.put_event(*intervals)
        log.info("demand response: event %s (modification %s), level %s from %s for %s", event_id,
                 descriptor.get("modification_number"), "/".join(str(i.level) for i in intervals),
                 event["active_period"]["dtstart"].isoformat(),
                 timedelta(seconds=round(intervals[-1].end_s - intervals[0].start_s)))
        self.changed()
        return "optIn"

    def _power_reading(self) -> list:
        """The current power for a telemetry report; nothing when it is unknown or stale."""
        kw = self.power_kw()
        return [] if kw is None else [(datetime.now(UTC), float(kw))]
