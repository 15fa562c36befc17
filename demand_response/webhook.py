"""Where a VTN without an MQTT notifier tells the VEN that its events changed: an OpenADR 3.1 webhook
(a subscription's `callbackUrl`). The VTN must reach the building for it, so it is off unless the
site names the URL the VTN calls (ESUS_OADR_CALLBACK_URL, often a reverse proxy's that holds the
TLS certificate) and esus listens on ESUS_OADR_CALLBACK_ADDRESS behind it.

A notification only hastens the poll: the VEN then reads the program's events from the VTN as it
always does, so a forged or replayed notification can cost one request, never change a shed. Each
VTN request must carry the bearer token the VEN chose for its subscription (a new one at each
start); anything else is refused with the specification's problem body and counted."""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

#: The most a notification may weigh: one event with its intervals is a few kB.
MAX_BODY_BYTES = 256 * 1024


@dataclass
class WebhookCounts:
    heard: int = 0       # notifications accepted
    refused: int = 0     # requests refused (no or a wrong token, not a notification)
    last_refused: str = ""


@dataclass
class Webhook:
    """An HTTP server on `host`:`port` that takes the VTN's POSTs to `path` and hands each valid
    notification (the specification's `notification` object) to `notified`."""

    host: str
    port: int
    path: str
    notified: Callable[[dict[str, Any]], None]
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    counts: WebhookCounts = field(default_factory=WebhookCounts)

    async def start(self) -> None:
        """Listening; raises OSError saying which address could not be taken."""
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.add_routes([web.post(self.path, self._post)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(exc.errno, f"the OpenADR webhook cannot listen on {self.host}:{self.port} "
                                     f"({exc.strerror}): set ESUS_OADR_CALLBACK_ADDRESS") from None

    async def close(self) -> None:
        runner = getattr(self, "_runner", None)
        if runner is not None:
            await runner.cleanup()

    async def _post(self, request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return self._refuse(403, "no or a wrong bearer token (not the one of this VEN's subscription)")
        try:
            body = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(413, f"a notification of more than {MAX_BODY_BYTES} bytes")
        except ValueError:
            return self._refuse(400, "the body is not JSON")
        if not isinstance(body, dict) or not {"objectType", "operation", "object"} <= body.keys() \
                or not isinstance(body["object"], dict):
            return self._refuse(400, "not a notification (objectType, operation and object)")
        self.counts.heard += 1
        self.notified(body)
        return web.Response(status=200)

    def _refuse(self, status: int, why: str) -> web.Response:
        if why != self.counts.last_refused:   # once per kind of refusal, not once per request
            log.warning("demand response: refused a request to the OpenADR webhook: %s", why)
        self.counts.refused += 1
        self.counts.last_refused = why
        return web.json_response({"type": "about:blank", "title": "refused", "status": status, "detail": why},
                                 status=status)
