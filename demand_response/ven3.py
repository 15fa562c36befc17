"""The OpenADR 3.1 VEN (openadr3-client, Python 3.12 and later): REST and JSON with OAuth2 client
credentials. It finds its program by name, registers itself, polls the program's events at the
configured interval (at once when the VTN's MQTT notifier, or its webhook where it has no MQTT and
the site gives a callback URL, says an event of the program changed),
hands their SIMPLE levels to the same shedder as the 2.0b VEN (a PRICE payload is ignored, as 2.0b
does), cancels what the VTN no longer lists, and reports the building's power for each event
interval the event asks a report of. A VTN that cannot be reached is said once,
retried with backoff, and said once when it answers again; events already received keep their times.

Reports follow an event's report descriptors: DEMAND and READING are the interval's mean power (kW),
USAGE its energy (kWh); a descriptor's `frequency` of n > 0 sends one report per n ended intervals,
-1 (the specification's default) one report of every interval when the event ends. What a VEN
reported before a restart is read back from the VTN, so nothing is sent twice.

What is sent is what the OpenADR 3.1.0 specification allows (tests/oadr3_spec.py checks every
request against it): the client credentials in the token request's form, not as HTTP Basic; a
report's absent fields absent, not null; one token for every request until it expires."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from demand_response.ledger import Event
from demand_response.shedder import Shedder
from demand_response.vtn3_client import Tokens, close_client, mqtt_binding, paged, reach, token_manager

if TYPE_CHECKING:
    from openadr3_client.oadr310.models.event.event import ExistingEvent

    from demand_response.webhook import Webhook

log = logging.getLogger(__name__)

RETRY_S = (5.0, 15.0, 60.0, 300.0)
RESOURCE_NAME = "building"
UNSUBSCRIBE_S = 5.0   # at stop, for the VTN to forget the webhook's subscription
#: report payload types esus can give, and how an interval's mean kW becomes the reported value
REPORTED = {"DEMAND": lambda kw, hours: kw, "READING": lambda kw, hours: kw, "USAGE": lambda kw, hours: kw * hours}
NEEDS = "OpenADR 3.1 needs openadr3-client, which needs Python 3.12 or later"


@dataclass(frozen=True)
class Ven3Config:
    vtn_url: str                      # the VTN's base URL, e.g. https://vtn.example.com/openadr3/3.1.0
    ven_name: str
    program: str                      # the program's name at the VTN
    client_id: str
    client_secret: str = field(repr=False)
    token_url: str | None = None      # None: discovered from the VTN (GET /auth/server)
    scopes: tuple[str, ...] = ()
    ca_file: Path | None = None       # the CA that signed the VTN's certificate
    poll_s: float = 30.0
    callback_url: str | None = None   # where the VTN posts notifications (None: no webhook)
    callback_listen: tuple[str, int] = ("127.0.0.1", 8090)   # where esus takes them: the settings give the OT LAN's


def event_intervals(event: ExistingEvent) -> list[Event]:
    """An event's intervals that carry a SIMPLE level, as shedder events numbered by the event's
    interval ids ([] without any). An interval's own period wins over the event's; without one it
    follows the interval before. Raises ValueError for an interval that has no time at all."""
    period = event.interval_period
    start = period.start if period is not None else None
    out = []
    for interval in sorted(event.intervals or (), key=lambda i: i.id):
        own = interval.interval_period or period
        if own is None or (interval.interval_period is None and start is None):
            raise ValueError(f"event {event.id}: interval {interval.id} has no time (no interval period)")
        begins = interval.interval_period.start if interval.interval_period is not None else start
        assert begins is not None
        ends = begins + own.duration
        start = ends
        level = next((p.values[0] for p in interval.payloads if str(p.type) == "SIMPLE"), None)
        if level is None or own.duration <= timedelta(0):
            continue
        out.append(Event(event.id, max(0, min(round(float(level)), 3)), begins.timestamp(), ends.timestamp(),
                         False, interval.id))
    return out


def report_groups(intervals: list[Event], frequency: int) -> list[list[Event]]:
    """The event's intervals in the groups that are reported together (see the module's docstring)."""
    if frequency > 0:
        return [intervals[i:i + frequency] for i in range(0, len(intervals), frequency)]
    return [intervals] if intervals else []


class Ven3:
    def __init__(self, config: Ven3Config, shedder: Shedder, interval_kw: Callable[[float, float], float | None],
                 changed: Callable[[], None], clock: Callable[[], float],
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """`interval_kw(start_s, end_s)`: the building's mean power then (None: not measured)."""
        self.config, self.shedder, self.interval_kw, self.changed = config, shedder, interval_kw, changed
        self.clock, self.sleep = clock, sleep
        self.client: Any = None
        self.tokens = Tokens()
        self.program_id: str | None = None
        self.registered = False
        self.last_error: str | None = None
        self._put: dict[str, list[Event]] = {}            # what the shedder was last given, per event
        self._reported: set[tuple[str, str, int]] = set()  # (event, payload type, first interval) sent
        self._checked: set[str] = set()                     # events whose earlier reports were read back
        self._said: set[str] = set()                        # events said to be ignored
        self.notifier: Any = None                           # the MQTT client, while the VTN has a notifier
        self.notified: bool | None = None                   # whether its broker is connected (None: not yet)
        self.webhook: Webhook | None = None                 # the webhook, while it listens
        self.subscription_id: str | None = None             # the VTN's id of the webhook's subscription
        self._wake: asyncio.Event | None = None

    async def run(self) -> None:
        self._wake = asyncio.Event()
        try:
            await self._open_webhook()
            await self._poll_until_cancelled()
        finally:
            if self.subscription_id is not None:   # the VTN stops calling a VEN that is gone
                try:
                    await asyncio.wait_for(asyncio.to_thread(self._unsubscribe), UNSUBSCRIBE_S)
                except Exception as exc:  # noqa: BLE001 - a VTN away at stop: the next start replaces it
                    log.info("demand response: the webhook's subscription was not removed at the VTN (%s); the "
                             "next start replaces it", type(exc).__name__)
            self._drop_client()
            if self.webhook is not None:
                await self.webhook.close()

    async def _open_webhook(self) -> None:
        """The webhook listening, where the site gives a callback URL; a port it cannot take is
        said once, and the VEN polls."""
        url = self.config.callback_url
        if url is None:
            return
        from demand_response.webhook import Webhook  # here: aiohttp only where the webhook is on

        host, port = self.config.callback_listen
        webhook = Webhook(host, port, urlsplit(url).path or "/", self._notification)
        try:
            await webhook.start()
        except OSError as exc:
            log.warning("demand response: %s; polling every %g s instead", exc.strerror or exc, self.config.poll_s)
            return
        self.webhook = webhook

    def _notification(self, body: dict[str, Any]) -> None:
        """The VTN's webhook says an object changed: an event of the program wakes the poll."""
        thing = body["object"]
        if body["objectType"] == "EVENT" and thing.get("programID") in (None, self.program_id) \
                and self._wake is not None:
            log.debug("demand response: the VTN notified %s of event %s", body["operation"], thing.get("id"))
            self._wake.set()

    async def _poll_until_cancelled(self) -> None:
        failures = 0
        while True:
            try:
                if self.client is None:
                    await asyncio.to_thread(self._connect)
                    await asyncio.to_thread(self._listen, asyncio.get_running_loop())
                events = await asyncio.to_thread(self._events)
                self._apply(events)
                await asyncio.to_thread(self._report, events)
            except Exception as exc:  # noqa: BLE001 - any VTN failure is this part's: said once, retried
                self._failed(exc)
                failures += 1
                await self.sleep(RETRY_S[min(failures - 1, len(RETRY_S) - 1)])
                continue
            if self.last_error is not None:
                log.info("demand response: the VTN %s answers again", self.config.vtn_url)
            self.registered, self.last_error, failures = True, None, 0
            await self._pause(self.config.poll_s)

    async def _pause(self, seconds: float) -> None:
        """Until the next poll, or a notification that the program's events changed."""
        assert self._wake is not None
        waits = [asyncio.ensure_future(self.sleep(seconds)), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        self._wake.clear()

    async def close(self) -> None:
        self._drop_client()

    def _drop_client(self) -> None:
        client, self.client = self.client, None
        notifier, self.notifier = self.notifier, None
        if notifier is not None:
            notifier.loop_stop()
            notifier.disconnect()
        if client is not None:
            close_client(client)

    def _failed(self, exc: Exception) -> None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            self._drop_client()     # a new token, and the program and registration looked up again
            self.tokens = Tokens()
        # on one line: an answer the client's models refuse is a pydantic error of many lines
        message = f"the VTN {self.config.vtn_url} failed: {type(exc).__name__}: {' '.join(str(exc).split())[:400]}"
        if message != self.last_error:
            log.warning("demand response: %s; retrying (events already received keep their times)", message)
        self.registered, self.last_error = False, message

    # -- in a worker thread: the client's HTTP calls block -------------------------------------

    def _connect(self) -> None:
        """A client with a token, the program's id, and this VEN registered."""
        client, self.program_id = reach(self.config, tokens=self.tokens)
        c = self.config
        try:
            if not client.vens.get_vens(ven_name=c.ven_name, target=None, pagination=None):
                from openadr3_client.oadr310.models.ven.ven import NewVenVenRequest

                client.vens.create_ven(NewVenVenRequest(ven_name=c.ven_name))
                log.info("demand response: registered with the VTN %s as VEN %r", c.vtn_url, c.ven_name)
            else:
                log.info("demand response: the VTN %s knows VEN %r; polling program %r every %.0f s", c.vtn_url,
                         c.ven_name, c.program, c.poll_s)
        except BaseException:
            close_client(client)
            raise
        self.client = client

    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """Subscribe to the VTN's MQTT notifications of the program's events, where it has a notifier,
        else to its webhook notifications where the site gives a callback URL: each one wakes the
        poll. Without either, or when it fails, the VEN polls, and says so once."""
        way = "MQTT notifier"
        try:
            binding = mqtt_binding(self.client)
            if binding is None and self.webhook is not None:
                way = "webhook subscription"
                self._subscribe_webhook(self.webhook)
                return
            if binding is None:
                self._say("notifier", "demand response: the VTN offers no MQTT notifier; polling every %g s "
                          "(ESUS_OADR_CALLBACK_URL lets it notify a webhook)", self.config.poll_s)
                return
            topics = self.client.notifiers.get_event_topics_for_program(self.program_id)
            self.notifier = self._subscribe(binding, topics.topics.all, loop)
        except Exception as exc:  # noqa: BLE001 - notifications only hasten the poll, which goes on
            self._say("notifier", "demand response: the VTN's %s cannot be used (%s: %s); polling every %g s",
                      way, type(exc).__name__, exc, self.config.poll_s)

    def _subscribe(self, binding: Any, topic: str, loop: asyncio.AbstractEventLoop) -> Any:
        from openadr3_client.oadr310._vtn.mqtt.client import MQTTClient

        uri = binding.uris[0]
        client = MQTTClient(binding, token_manager(self.client.events))
        if uri.scheme in ("mqtts", "ssl"):
            client.tls_set(ca_certs=str(self.config.ca_file) if self.config.ca_file else None)

        def connected(c: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
            if getattr(reason, "is_failure", False):
                failed(c, userdata, f"refused: {reason}")
                return
            c.subscribe(topic, qos=1)
            self.notified = True
            log.info("demand response: notified by the VTN's MQTT broker %s:%s of the program's events",
                     uri.host, uri.port)

        def failed(c: Any, userdata: Any, why: str = "cannot be reached") -> None:
            if self.notified is not False:   # once per outage; paho retries on its own
                log.warning("demand response: the VTN's MQTT broker %s:%s %s; polling every %g s meanwhile",
                            uri.host, uri.port, why, self.config.poll_s)
            self.notified = False

        client.on_connect, client.on_connect_fail = connected, failed
        def notified(*_: Any) -> None:
            if self._wake is not None:
                loop.call_soon_threadsafe(self._wake.set)

        client.on_message = notified
        client.connect_async(uri.host, uri.port or (8883 if uri.scheme in ("mqtts", "ssl") else 1883))
        client.loop_start()
        return client

    def _subscribe_webhook(self, webhook: Webhook) -> None:
        """A subscription to the program's events, for the webhook, with its bearer token. This
        VEN's earlier subscriptions to the same URL (a restart, a new token) are removed first, so
        the VTN calls once, with the token that is valid now. Sent as the specification's
        subscriptionRequest (operations CREATE/UPDATE/DELETE, absent fields absent): the client's own
        model has 3.0's GET/POST/PUT."""
        url, interface = self.config.callback_url, self.client.subscriptions
        base = f"{interface.base_url}/subscriptions"
        answer = interface.session.get(base, params={"programID": self.program_id,
                                                     "clientName": self.config.ven_name})
        answer.raise_for_status()
        for old in answer.json():
            if any(o.get("callbackUrl") == url for o in old.get("objectOperations") or ()):
                interface.session.delete(f"{base}/{old['id']}").raise_for_status()
        answer = interface.session.post(base, json={
            "clientName": self.config.ven_name, "programID": self.program_id,
            "objectOperations": [{"objects": ["EVENT"], "operations": ["CREATE", "UPDATE", "DELETE"],
                                  "callbackUrl": url, "bearerToken": webhook.token}]})
        answer.raise_for_status()
        self.subscription_id = answer.json()["id"]
        log.info("demand response: the VTN notifies the program's events to %s; polling every %g s besides",
                 url, self.config.poll_s)

    def _unsubscribe(self) -> None:
        client, subscription = self.client, self.subscription_id
        if client is None or subscription is None:
            return
        interface = client.subscriptions
        interface.session.delete(f"{interface.base_url}/subscriptions/{subscription}").raise_for_status()
        self.subscription_id = None

    def _events(self) -> list[ExistingEvent]:
        return paged(lambda page: self.client.events.get_events(target=None, pagination=page,
                                                                program_id=self.program_id))

    def _report(self, events: Iterable[ExistingEvent]) -> None:
        now = self.clock()
        for event in events:
            intervals = self._put.get(event.id) or []
            for descriptor in event.report_descriptors or ():
                kind = str(descriptor.payload_type)
                if kind not in REPORTED:
                    self._say(f"{event.id}:{kind}", "demand response: event %s asks for %s reports, which esus "
                              "cannot give (it reports DEMAND, READING and USAGE)", event.id, kind)
                    continue
                due = [g for g in report_groups(intervals, descriptor.frequency)
                       if g[-1].end_s <= now and (event.id, kind, g[0].interval) not in self._reported]
                if due and event.id not in self._checked:
                    self._read_back(event.id)
                    due = [g for g in due if (event.id, kind, g[0].interval) not in self._reported]
                for group in due:
                    self._send(event.id, kind, group)
                    self._reported.add((event.id, kind, group[0].interval))

    def _read_back(self, event_id: str) -> None:
        """What this VEN reported on the event before (a restart), so it is not sent again."""
        for report in self.client.reports.get_reports(pagination=None, program_id=None, event_id=event_id,
                                                      client_name=self.config.ven_name):
            for resource in report.resources:
                for interval in resource.intervals:
                    for payload in interval.payloads:
                        self._reported.add((event_id, str(payload.type), interval.id))
        self._checked.add(event_id)

    def _send(self, event_id: str, kind: str, group: list[Event]) -> None:
        from openadr3_client.oadr310.models.report.report import NewReport

        intervals = []
        for e in group:
            kw = self.interval_kw(e.start_s, e.end_s)
            if kw is None:
                continue
            hours = (e.end_s - e.start_s) / 3600
            intervals.append({"id": e.interval, "intervalPeriod": {
                "start": datetime.fromtimestamp(e.start_s, UTC), "duration": timedelta(seconds=e.end_s - e.start_s)},
                "payloads": [{"type": kind, "values": [round(REPORTED[kind](kw, hours), 3)]}]})
        if not intervals:
            log.warning("demand response: no power was measured in event %s's intervals %d to %d, so no %s report",
                        event_id, group[0].interval, group[-1].interval, kind)
            return
        report = NewReport.model_validate({"eventID": event_id, "clientName": self.config.ven_name,
                                           "reportName": f"{kind.lower()} of {RESOURCE_NAME}",
                                           "resources": [{"resourceName": RESOURCE_NAME, "intervals": intervals}]})
        # not the client's create_report: it sends each absent field as null (`intervalPeriod: null`,
        # `randomizeStart: null`), which the specification refuses; absent is what it allows
        reports = self.client.reports
        answer = reports.session.post(f"{reports.base_url}/reports",
                                      json=report.model_dump(by_alias=True, mode="json", exclude_none=True))
        answer.raise_for_status()
        log.info("demand response: reported %s of event %s, intervals %d to %d", kind, event_id, group[0].interval,
                 group[-1].interval)

    # -- on the loop: the shedder's ledger ------------------------------------------------------

    def _apply(self, events: list[ExistingEvent]) -> None:
        """Events new or changed go to the shedder; those the VTN stopped listing are cancelled."""
        listed = set()
        for event in events:
            try:
                intervals = event_intervals(event)
            except ValueError as exc:   # one event the VEN cannot place in time stops no other
                self._say(event.id, "demand response: %s; ignored", exc)
                continue
            if not intervals:
                self._say(event.id, "demand response: event %s has no SIMPLE payload, which is all esus acts on; "
                          "ignored", event.id)
                continue
            listed.add(event.id)
            if self._put.get(event.id) != intervals:
                self.shedder.put_event(*intervals)
                self._put[event.id] = intervals
                log.info("demand response: event %s, level %s from %s for %s", event.id,
                         "/".join(str(i.level) for i in intervals),
                         datetime.fromtimestamp(intervals[0].start_s, UTC).isoformat(),
                         timedelta(seconds=round(intervals[-1].end_s - intervals[0].start_s)))
                self.changed()
        now = self.clock()
        for event_id in {e.event_id for e in self.shedder.ledger.events() if not e.cancelled and e.end_s > now}:
            if event_id not in listed:
                self.shedder.cancel_event(event_id)
                self._put.pop(event_id, None)
                log.info("demand response: event %s is no longer listed by the VTN: cancelled", event_id)
                self.changed()

    def _say(self, key: str, message: str, *args: object) -> None:
        if key not in self._said:
            self._said.add(key)
            log.warning(message, *args)
