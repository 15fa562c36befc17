"""A real OpenADR 2.0b VTN on loopback (openleadr's server) that records what the VEN says."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from openleadr import OpenADRServer

from tests.tls_certs import Certs
from tests.tsdb import free_tcp_port

VEN_ID = "ven-esus-1"


@dataclass
class Vtn:
    port: int = field(default_factory=free_tcp_port)
    certs: Certs | None = None   # with these: HTTPS, client certificates required, messages signed
    registrations: list[str] = field(default_factory=list)
    opts: dict[str, str] = field(default_factory=dict)
    power: list[tuple[datetime, float]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{'https' if self.certs else 'http'}://127.0.0.1:{self.port}/OpenADR2/Simple/2.0b"

    async def start(self) -> Vtn:
        tls = {}
        if self.certs is not None:
            c = self.certs
            tls = dict(http_cert=str(c.server_cert), http_key=str(c.server_key), http_ca_file=str(c.ca),
                       cert=str(c.server_cert), key=str(c.server_key), show_fingerprint=False)
        self.server = OpenADRServer(vtn_id="TEST-VTN", http_host="127.0.0.1", http_port=self.port,
                                    requested_poll_freq=timedelta(seconds=1), verify_message_signatures=False,
                                    show_server_cert_domain=False, **tls)
        self.server.add_handler("on_create_party_registration", self._register)
        self.server.add_handler("on_register_report", self._register_report)
        await self.server.run_async()
        return self

    def _register(self, info: dict[str, Any]) -> tuple[str, str]:
        self.registrations.append(info["ven_name"])
        return VEN_ID, f"reg-{len(self.registrations)}"

    async def _register_report(self, ven_id: str, resource_id: str, measurement: str, unit: str, scale: str,
                               min_sampling_interval: timedelta, max_sampling_interval: timedelta) -> Any:
        return self.power.extend, timedelta(seconds=1)

    def add_event(self, level: float, starts_in_s: float, duration_s: float, signal: str = "simple",
                  test_event: bool = False) -> str:
        def opted(ven_id: str, event_id: str, opt_type: str) -> None:
            self.opts[event_id] = opt_type
        start = datetime.now(UTC) + timedelta(seconds=starts_in_s)
        event_id = self.server.add_event(ven_id=VEN_ID, signal_name=signal, signal_type="level",
                                         intervals=[{"dtstart": start, "duration": timedelta(seconds=duration_s),
                                                     "signal_payload": level}], callback=opted)
        return event_id

    async def stop(self) -> None:
        await self.server.stop()

    async def __aenter__(self) -> Vtn:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
