"""The BMS APIs esus reads, one line each in SOURCES: the site file's `[bms] api` picks one. An
adapter (bms_wrapper) lists the points and reads a point's history by an opaque id; how it signs in
is its own business. A new API is one adapter module and one line here, and passes the adapter
contract tests (tests/test_bms_contract.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bacpypes3.app import Application

from bacnet_server.client import BacnetClient, BacnetClientError
from bms_wrapper.adapters import AauBmsV1, BmsAdapter
from bms_wrapper.bacnet import BacnetSource
from bms_wrapper.haystack import Haystack, HaystackAuth, Selection
from bms_wrapper.transport import Auth, BasicAuth, BmsBadResponse, BmsError, BmsUnavailable, Transport
from esus.parts.bacnet import client_beside
from esus.settings.config import BmsAccess, Settings
from esus.settings.site import BMS_APIS

#: A device instance of its own while a command (`esus bms …`, the doctor) reads BACnet points.
CLI_INSTANCE = 4194300


@dataclass(frozen=True)
class Context:
    """What an adapter may need beyond settings: the BACnet client and the event loop it runs on."""

    bacnet: BacnetClient | None = None
    loop: asyncio.AbstractEventLoop | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


def transport_for(settings: Settings, url: str, auth: Auth, max_in_flight: int | None = None) -> Transport:
    """HTTP to the BMS with the site file's timeouts, reply bound and concurrency."""
    bms = settings.site.bms
    return Transport(url, auth, connect_timeout_s=bms.timeout_s, read_timeout_s=bms.timeout_s,
                     deadline_s=bms.deadline_s, max_reply_bytes=int(bms.max_reply_mb * 2**20),
                     max_in_flight=max_in_flight or bms.max_in_flight)


def _access(settings: Settings) -> BmsAccess:
    if settings.bms is None:
        raise BmsError("no BMS configured: set ESUS_BMS_URL, ESUS_BMS_USER and ESUS_BMS_PASSWORD")
    return settings.bms


def aau_v1(settings: Settings, max_in_flight: int | None, context: Context) -> AauBmsV1:
    """The AAU BMS API v1: HTTP Basic."""
    access = _access(settings)
    auth = BasicAuth(access.user, access.password.get_secret_value())
    return AauBmsV1(transport_for(settings, access.url, auth, max_in_flight))


def haystack(settings: Settings, max_in_flight: int | None, context: Context) -> Haystack:
    """A Project Haystack server: SCRAM (or Basic, as the server asks) with the user and password, or
    the bearer token given; Zinc or JSON as `[bms.haystack] format` says."""
    access = _access(settings)
    timeout_s = settings.site.bms.timeout_s
    auth = HaystackAuth(access.url, access.user, access.password.get_secret_value(),
                        access.token.get_secret_value(), timeouts=(timeout_s, timeout_s))
    options = settings.site.bms.haystack
    selections = [Selection(s.filter, s.kind, s.room_tag, s.unit) for s in options.select]
    return Haystack(transport_for(settings, access.url, auth, max_in_flight), fmt=options.format,
                    points_filter=options.points_filter, selections=selections)


def bacnet(settings: Settings, max_in_flight: int | None, context: Context) -> BacnetSource:
    """Objects on the building's controllers, read through esus's own BACnet device."""
    if context.bacnet is None or context.loop is None:
        raise BmsError("the BACnet source reads through esus's BACnet device, which is not running here")
    timeout_s = settings.site.bms.deadline_s
    return BacnetSource([p.point_id for p in settings.site.bms.points], ClientReads(context.bacnet),
                        on_loop(context.loop, timeout_s), local_tz=settings.site.site.tz, now=context.now)


SOURCES: dict[str, Callable[[Settings, int | None, Context], BmsAdapter]] = {
    "aau-v1": aau_v1,
    "haystack": haystack,
    "bacnet": bacnet,
}
assert set(SOURCES) == set(BMS_APIS), "the site file's choices of [bms] api are the adapters here"


def bms_configured(settings: Settings) -> bool:
    """A BMS to poll: an HTTP API with its URL, or BACnet points (which need no URL)."""
    return settings.bms is not None or (settings.site.bms.api == "bacnet" and bool(settings.site.bms.points))


def make_adapter(settings: Settings, max_in_flight: int | None = None, context: Context = Context()) -> BmsAdapter:
    """The site's BMS from settings and its site file's `[bms] api`; raises BmsError when none is
    configured."""
    return SOURCES[settings.site.bms.api](settings, max_in_flight, context)


# ── BACnet: the client's errors as the poller's, its coroutines on the device's loop ──────────


def _bms_error(exc: BacnetClientError) -> BmsError:
    text = str(exc)
    if "no answer" in text:
        return BmsUnavailable(f"BACnet {text}: check the controller's address and that it is on", "no answer")
    return BmsBadResponse(f"BACnet {text}", "refused")


class ClientReads:
    """esus's BACnet client as the BACnet source's requests, its errors as BmsErrors."""

    def __init__(self, client: BacnetClient) -> None:
        self.client = client

    async def device_at(self, address: str) -> str:
        try:
            return await self.client.device_at(address)
        except BacnetClientError as exc:
            raise _bms_error(exc) from None

    async def read(self, address: str, object_id: str, property: str = "present-value") -> Any:
        try:
            return await self.client.read(address, object_id, property)
        except BacnetClientError as exc:
            raise _bms_error(exc) from None

    async def read_log(self, address: str, trend_log: str, after: datetime | int, count: int
                       ) -> tuple[int, list[tuple[datetime, float | None]]]:
        try:
            return await self.client.read_log(address, trend_log, after, count)
        except BacnetClientError as exc:
            raise _bms_error(exc) from None


def on_loop(loop: asyncio.AbstractEventLoop, timeout_s: float) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """Runs a coroutine on `loop` from another thread (the poller's), waiting at most `timeout_s`."""
    def call(coroutine: Coroutine[Any, Any, Any]) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise BmsUnavailable(f"BACnet: no answer within {timeout_s:g} s", "no answer") from None
    return call


def service_context(settings: Settings, device: Callable[[], Application | None],
                    now: Callable[[], datetime]) -> Context:
    """In the service (which runs in the event loop): a BACnet source reads through esus's device."""
    if settings.site.bms.api != "bacnet":
        return Context(now=now)
    return Context(BacnetClient(device, settings.site.bms.timeout_s), asyncio.get_running_loop(), now)


@contextmanager
def command_context(settings: Settings) -> Iterator[Context]:
    """For a command outside the service (`esus bms …`, the doctor): an event loop in a thread of its
    own and, for a BACnet source, a BACnet device of its own on a free port beside esus's."""
    if settings.site.bms.api != "bacnet":
        yield Context()
        return
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="bms-bacnet", daemon=True)
    thread.start()
    client = client_beside(settings, CLI_INSTANCE, "esus-bms", settings.site.bms.timeout_s)
    try:
        yield Context(client, loop)
    finally:
        async def close() -> None:
            client.close()
        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
