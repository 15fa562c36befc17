"""The BMS APIs esus reads, one line each in SOURCES: the site file's `[bms] api` picks one. An
adapter (bms_wrapper) lists the points and reads a point's history by an opaque id; how it signs in
is its own business. A new API is one adapter module and one line here, and passes the adapter
contract tests (tests/test_bms_contract.py)."""

from __future__ import annotations

from collections.abc import Callable

from bms_wrapper.adapters import AauBmsV1, HttpAdapter
from bms_wrapper.haystack import Haystack, HaystackAuth, Selection
from bms_wrapper.transport import Auth, BasicAuth, BmsError, Transport
from esus.settings.config import BmsAccess, Settings
from esus.settings.site import BMS_APIS


def transport_for(settings: Settings, url: str, auth: Auth, max_in_flight: int | None = None) -> Transport:
    """HTTP to the BMS with the site file's timeouts, reply bound and concurrency."""
    bms = settings.site.bms
    return Transport(url, auth, connect_timeout_s=bms.timeout_s, read_timeout_s=bms.timeout_s,
                     deadline_s=bms.deadline_s, max_reply_bytes=int(bms.max_reply_mb * 2**20),
                     max_in_flight=max_in_flight or bms.max_in_flight)


def aau_v1(settings: Settings, access: BmsAccess, max_in_flight: int | None = None) -> AauBmsV1:
    """The AAU BMS API v1: HTTP Basic."""
    auth = BasicAuth(access.user, access.password.get_secret_value())
    return AauBmsV1(transport_for(settings, access.url, auth, max_in_flight))


def haystack(settings: Settings, access: BmsAccess, max_in_flight: int | None = None) -> Haystack:
    """A Project Haystack server: SCRAM (or Basic, as the server asks) with the user and password, or
    the bearer token given; Zinc or JSON as `[bms.haystack] format` says."""
    timeout_s = settings.site.bms.timeout_s
    auth = HaystackAuth(access.url, access.user, access.password.get_secret_value(),
                        access.token.get_secret_value(), timeouts=(timeout_s, timeout_s))
    options = settings.site.bms.haystack
    selections = [Selection(s.filter, s.kind, s.room_tag, s.unit) for s in options.select]
    return Haystack(transport_for(settings, access.url, auth, max_in_flight), fmt=options.format,
                    points_filter=options.points_filter, selections=selections)


SOURCES: dict[str, Callable[[Settings, BmsAccess, int | None], HttpAdapter]] = {
    "aau-v1": aau_v1,
    "haystack": haystack,
}
assert set(SOURCES) == set(BMS_APIS), "the site file's choices of [bms] api are the adapters here"


def make_adapter(settings: Settings, max_in_flight: int | None = None) -> HttpAdapter:
    """The site's BMS from settings and its site file's `[bms] api`; raises BmsError when none is
    configured."""
    if settings.bms is None:
        raise BmsError("no BMS configured: set ESUS_BMS_URL, ESUS_BMS_USER and ESUS_BMS_PASSWORD")
    return SOURCES[settings.site.bms.api](settings, settings.bms, max_in_flight)
