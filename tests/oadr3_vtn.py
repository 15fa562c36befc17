"""A small OpenADR 3.1.0 VTN on loopback, over HTTPS, for the 3.1 VEN's tests (no VTN is in the
package registries). Every body it sends is built, and every body it takes is checked, with
openadr3-client's own 3.1.0 schema models, so a field the specification does not allow fails here.

What of the specification it serves: discovery (`GET /auth/server`), OAuth2 client credentials
(`POST /auth/token`, Basic or form credentials, bearer tokens that expire), `GET /programs`,
`GET /vens?venName=` and `POST /vens` (a VEN registers itself), `GET /events?programID=`,
`GET /reports?eventID=&clientName=` and `POST /reports`; with a broker, the MQTT notifier
(`GET /notifiers`, `GET /notifiers/mqtt/topics/programs/{programID}/events`, anonymous) and a
notification published on each event created, updated or deleted; lists paged by `skip` and
`limit` (and capped by `page_size` where a test asks); webhook subscriptions (`GET`, `POST`,
`DELETE /subscriptions`), each called with the specification's notification (checked against it
too) and its bearer token on each event created, updated or deleted. Not served: resources, writes
by a business logic client."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import secrets
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from openadr3_client.oadr310.models.event.event import ExistingEvent
from openadr3_client.oadr310.models.program.program import ExistingProgram
from openadr3_client.oadr310.models.report.report import ExistingReport, NewReport
from openadr3_client.oadr310.models.ven.ven import ExistingVen, NewVenVenRequest

from tests.oadr3_spec import notification_violation, request_violation, response_violation
from tests.tls_certs import Certs
from tests.tsdb import free_tcp_port

CLIENT_ID, CLIENT_SECRET = "esus-ven", "s3cret-for-tests"
PROGRAM_NAME = "grid-peak"


def simple_event(event_id: str, program_id: str, start: datetime, levels: list[int], minutes: int = 15,
                 report: str | None = "DEMAND", frequency: int = 1) -> ExistingEvent:
    """An event of consecutive `minutes`-long intervals, one SIMPLE level each (and a PRICE payload,
    which a VEN that sheds by level ignores); `report` asks for that report of each interval."""
    now = datetime.now(UTC)
    return ExistingEvent.model_validate({
        "id": event_id, "programID": program_id, "eventName": f"peak {event_id}",
        "createdDateTime": now, "modificationDateTime": now,
        "payloadDescriptors": [{"payloadType": "SIMPLE"}, {"payloadType": "PRICE", "currency": "EUR"}],
        "reportDescriptors": ([{"payloadType": report, "frequency": frequency, "repeat": -1}] if report else None),
        "intervalPeriod": {"start": start, "duration": timedelta(minutes=minutes)},
        "intervals": [{"id": i, "payloads": [{"type": "SIMPLE", "values": [level]},
                                             {"type": "PRICE", "values": [0.4 + level / 10]}]}
                      for i, level in enumerate(levels)]})


@dataclass
class Vtn3:
    certs: Certs
    port: int = field(default_factory=free_tcp_port)
    token_lifetime_s: int = 3600
    programs: dict[str, ExistingProgram] = field(default_factory=dict)
    events: dict[str, ExistingEvent] = field(default_factory=dict)
    vens: dict[str, ExistingVen] = field(default_factory=dict)
    reports: list[NewReport] = field(default_factory=list)
    tokens: dict[str, datetime] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)    # "METHOD /path" as they came
    violations: list[str] = field(default_factory=list)  # what the specification does not allow, either way
    failing: int = 0                                       # answer this many requests with 503
    unavailable: str = ""                                  # and every request of this path, while set
    page_size: int | None = None                           # lists answered at most this many at a time
    broker: str | None = None                              # mqtt://host:port: notify events there
    subscriptions: dict[str, dict] = field(default_factory=dict)   # by id, as the specification has them
    callbacks: list[tuple[str, int]] = field(default_factory=list)  # (callback URL, HTTP status) as called

    def __post_init__(self) -> None:
        now = datetime.now(UTC)
        program = ExistingProgram.model_validate({"id": "p1", "programName": PROGRAM_NAME, "createdDateTime": now,
                                                  "modificationDateTime": now})
        self.programs[program.id] = program
        self._ids = itertools.count(1)
        self._publisher: Any = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def start(self) -> Vtn3:
        app = web.Application(middlewares=[self._spec, self._gate])
        app.add_routes([web.get("/auth/server", self._discovery), web.post("/auth/token", self._token),
                        web.get("/programs", self._programs), web.get("/vens", self._get_vens),
                        web.post("/vens", self._post_ven), web.get("/events", self._events),
                        web.get("/reports", self._get_reports), web.post("/reports", self._post_report),
                        web.get("/notifiers", self._notifiers),
                        web.get("/subscriptions", self._get_subscriptions),
                        web.post("/subscriptions", self._post_subscription),
                        web.delete("/subscriptions/{id}", self._delete_subscription),
                        web.get("/notifiers/mqtt/topics/programs/{program}/events", self._event_topics)])
        if self.broker is not None:
            from paho.mqtt.client import Client
            from paho.mqtt.enums import CallbackAPIVersion

            url = urlsplit(self.broker)
            self._publisher = Client(CallbackAPIVersion.VERSION2)
            self._publisher.connect(url.hostname or "127.0.0.1", url.port or 1883)
            self._publisher.loop_start()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certs.server_cert, self.certs.server_key)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context).start()
        return self

    async def stop(self) -> None:
        if self._publisher is not None:
            self._publisher.loop_stop()
            self._publisher.disconnect()
        await self._runner.cleanup()
        assert not self.violations, "not as the OpenADR 3.1.0 specification allows:\n" + "\n".join(self.violations)

    def put_event(self, event: ExistingEvent) -> None:
        operation = "PUT" if event.id in self.events else "POST"
        self.events[event.id] = event
        self._notify(event, operation)

    def delete_event(self, event_id: str) -> None:
        self._notify(self.events.pop(event_id), "DELETE")

    def _notify(self, event: ExistingEvent, operation: str) -> None:
        """Publish to the broker, and call each webhook subscribed to the event's program (from a
        test that runs on the loop: the calls are made there, in the background)."""
        kind = {"POST": "CREATE", "PUT": "UPDATE", "DELETE": "DELETE"}[operation]
        body = {"objectType": "EVENT", "operation": kind, "object": as_specified(event)}
        if self._publisher is not None:
            topic = self.topics(event.program_id)["topics"][kind]
            self._publisher.publish(topic, json.dumps(body), qos=1).wait_for_publish(5)
        wrong = notification_violation(body)
        if wrong is not None:
            self.violations.append(f"notification: {wrong[:400]}")
        for subscription in self.subscriptions.values():
            if subscription.get("programID") not in (None, event.program_id):
                continue
            for way in subscription["objectOperations"]:
                if "EVENT" in way["objects"] and kind in way["operations"]:
                    asyncio.get_running_loop().create_task(self._call(way, body))

    async def _call(self, way: dict, body: dict) -> None:
        headers = {"Authorization": f"Bearer {way['bearerToken']}"} if way.get("bearerToken") else {}
        async with aiohttp.ClientSession() as session:
            try:
                async with session.post(way["callbackUrl"], json=body, headers=headers) as answer:
                    self.callbacks.append((way["callbackUrl"], answer.status))
            except aiohttp.ClientError:
                self.callbacks.append((way["callbackUrl"], 0))

    @staticmethod
    def topics(program_id: str) -> dict:
        base = f"OpenADR/3.1.0/programs/{program_id}/events"
        return {"topics": {"CREATE": f"{base}/create", "UPDATE": f"{base}/update", "DELETE": f"{base}/delete",
                           "ALL": f"{base}/+"}}

    async def _notifiers(self, request: web.Request) -> web.Response:
        if self.broker is None:
            return web.json_response({"WEBHOOK": False})
        return web.json_response({"WEBHOOK": False, "MQTT": {"URIS": [self.broker], "serialization": "JSON",
                                                             "authentication": {"method": "ANONYMOUS"}}})

    async def _event_topics(self, request: web.Request) -> web.Response:
        if self.broker is None or request.match_info["program"] not in self.programs:
            return problem(404, "no such notifier or program")
        return web.json_response(self.topics(request.match_info["program"]))

    @web.middleware
    async def _spec(self, request: web.Request, handler) -> web.StreamResponse:  # type: ignore[no-untyped-def]
        body = await request.read()
        wrong = request_violation(request, body)
        if wrong is not None:
            self.violations.append(f"request {request.method} {request.path}: {wrong[:400]}")
            return problem(400, wrong)
        response = await handler(request)
        if response.status == 503:
            return response   # a fault the test injects (a VTN behind a proxy, restarting): no answer of its
        wrong = response_violation(request, body, response)
        if wrong is not None:
            self.violations.append(f"answer to {request.method} {request.path} ({response.status}): {wrong[:400]}")
        return response

    @web.middleware
    async def _gate(self, request: web.Request, handler) -> web.StreamResponse:  # type: ignore[no-untyped-def]
        self.requests.append(f"{request.method} {request.path}")
        if self.failing > 0 or (self.unavailable and request.path == self.unavailable):
            self.failing = max(0, self.failing - 1)
            return problem(503, "the VTN is being restarted")
        if not request.path.startswith("/auth/"):
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if self.tokens.get(token, datetime.min.replace(tzinfo=UTC)) < datetime.now(UTC):
                return problem(401, "no valid bearer token")
        return await handler(request)

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response({"tokenURL": f"{self.url}/auth/token"})

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        if form.get("grant_type") != "client_credentials" or (client_id, secret) != (CLIENT_ID, CLIENT_SECRET):
            return web.json_response({"error": "invalid_client"}, status=401)
        token = secrets.token_urlsafe(16)
        self.tokens[token] = datetime.now(UTC) + timedelta(seconds=self.token_lifetime_s)
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime_s})

    def _page(self, request: web.Request, found: list[Any]) -> list[Any]:
        """A list as the specification pages it: `skip`, then at most `limit` (and this VTN's cap)."""
        skip, limit = int(request.query.get("skip", 0)), int(request.query.get("limit", 50))
        return found[skip:skip + min(limit, self.page_size or limit)]

    async def _programs(self, request: web.Request) -> web.Response:
        return dumped(self._page(request, list(self.programs.values())))

    async def _get_vens(self, request: web.Request) -> web.Response:
        name = request.query.get("venName")
        return dumped([v for v in self.vens.values() if name in (None, v.ven_name)])

    async def _post_ven(self, request: web.Request) -> web.Response:
        new = NewVenVenRequest.model_validate(await request.json())
        if any(v.ven_name == new.ven_name for v in self.vens.values()):
            return problem(409, f"a VEN named {new.ven_name} exists")
        now = datetime.now(UTC)
        ven = ExistingVen.model_validate({**new.model_dump(by_alias=True, mode="json"), "id": f"v{next(self._ids)}",
                                          "clientID": CLIENT_ID, "createdDateTime": now, "modificationDateTime": now})
        self.vens[ven.id] = ven
        return dumped(ven, status=201)

    async def _get_subscriptions(self, request: web.Request) -> web.Response:
        program, client = request.query.get("programID"), request.query.get("clientName")
        return web.json_response([s for s in self.subscriptions.values()
                                  if program in (None, s.get("programID")) and client in (None, s["clientName"])])

    async def _post_subscription(self, request: web.Request) -> web.Response:
        now = datetime.now(UTC).isoformat()
        subscription = {**await request.json(), "id": f"s{next(self._ids)}", "objectType": "SUBSCRIPTION",
                        "clientID": CLIENT_ID, "createdDateTime": now, "modificationDateTime": now}
        self.subscriptions[subscription["id"]] = subscription
        return web.json_response(subscription, status=201)

    async def _delete_subscription(self, request: web.Request) -> web.Response:
        subscription = self.subscriptions.pop(request.match_info["id"], None)
        if subscription is None:
            return problem(404, "no such subscription")
        return web.json_response(subscription)

    async def _events(self, request: web.Request) -> web.Response:
        program = request.query.get("programID")
        return dumped(self._page(request, [e for e in self.events.values() if program in (None, e.program_id)]))

    async def _get_reports(self, request: web.Request) -> web.Response:
        event, client = request.query.get("eventID"), request.query.get("clientName")
        now = datetime.now(UTC)
        return dumped([ExistingReport.model_validate({**r.model_dump(by_alias=True, mode="json"), "id": f"r{n}",
                                                      "clientID": CLIENT_ID, "createdDateTime": now,
                                                      "modificationDateTime": now})
                       for n, r in enumerate(self.reports) if event in (None, r.event_id)
                       and client in (None, r.client_name)])

    async def _post_report(self, request: web.Request) -> web.Response:
        report = NewReport.model_validate(await request.json())
        self.reports.append(report)
        now = datetime.now(UTC)
        return dumped(ExistingReport.model_validate({**report.model_dump(by_alias=True, mode="json"),
                                                     "id": f"r{len(self.reports)}", "clientID": CLIENT_ID,
                                                     "createdDateTime": now, "modificationDateTime": now}), status=201)


#: The `objectType` the specification requires of each object (the client's models leave it out).
OBJECT_TYPES = {ExistingProgram: "PROGRAM", ExistingEvent: "EVENT", ExistingReport: "REPORT",
                ExistingVen: "VEN"}


def as_specified(body: Any) -> dict[str, Any]:
    """An object as the specification has it: absent fields absent (not null), its objectType."""
    return {**body.model_dump(by_alias=True, mode="json", exclude_none=True), "objectType": OBJECT_TYPES[type(body)]}


def dumped(body: Any, status: int = 200) -> web.Response:
    if isinstance(body, list):
        return web.json_response([as_specified(b) for b in body], status=status)
    return web.json_response(as_specified(body), status=status)


def problem(status: int, detail: str) -> web.Response:
    """The specification's error body (RFC 7807 problem)."""
    return web.json_response({"type": "about:blank", "title": web.HTTPException.__name__, "status": status,
                              "detail": detail}, status=status)
