"""The OpenADR 3.1 VTN's client (openadr3-client) as the VEN uses it: signed in with one token for
every request until it expires, each request bounded in time and verified against the VTN's CA,
lists read page by page, the MQTT notifier's binding, and the sessions closed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from demand_response.ven3 import Ven3Config

log = logging.getLogger(__name__)

T = TypeVar("T")
TIMEOUT_S = 20.0   # for each request to the VTN and its token endpoint


@dataclass
class Tokens:
    """The OAuth2 token manager a VEN keeps across its clients: a token is used until it expires."""

    manager: Any = None


def reach(config: Ven3Config, timeout_s: float = TIMEOUT_S, tokens: Tokens | None = None) -> tuple[Any, str]:
    """A 3.1 client signed in to the VTN, and the id of the configured program (also what `esus
    doctor` asks). All its interfaces sign with one token manager: the one `tokens` keeps, else the
    new client's (then kept there). Every request of it times out; raises with what failed."""
    from openadr3_client.ven.http_factory import VirtualEndNodeHttpClientFactory
    from openadr3_client.version import OADRVersion

    verify: bool | str = str(config.ca_file) if config.ca_file else True
    token_url = config.token_url or discovered_token_url(config.vtn_url, verify, timeout_s)
    # the 3.1 client (its interfaces are not on the base class the factory is typed to return)
    client: Any = VirtualEndNodeHttpClientFactory.create_http_ven_client(
        vtn_base_url=config.vtn_url, client_id=config.client_id, client_secret=config.client_secret,
        token_url=token_url, scopes=list(config.scopes) or None,
        verify_vtn_tls_certificate=config.ca_file if config.ca_file else True, version=OADRVersion.OADR_310)
    # the VTN's own token endpoint is verified against its CA too; another one against the system's
    token_verify = verify if urlsplit(token_url).hostname == urlsplit(config.vtn_url).hostname else True
    tokens = tokens or Tokens()
    if tokens.manager is None:
        tokens.manager = token_manager(client.events)
        if tokens.manager is not None:
            bounded(tokens.manager.oauth, timeout_s, token_verify)
            # the specification's clientCredentialRequest: the credentials in the form, not as Basic
            tokens.manager.oauth.fetch_token = partial(tokens.manager.oauth.fetch_token, include_client_id=True)
    for interface in interfaces(client):
        bounded(interface.session, timeout_s, verify)
        if tokens.manager is not None:
            use_token_manager(interface, tokens.manager)
    try:
        programs = [p for p in paged(lambda page: client.programs.get_programs(target=None, pagination=page))
                    if p.program_name == config.program]
        if not programs:
            raise LookupError(f"the VTN has no program named {config.program!r} (ESUS_OADR_PROGRAM)")
    except BaseException:
        close_client(client)
        raise
    return client, programs[0].id


#: Objects asked for per page of a list (the specification's default limit), and the most pages read
PAGE_SIZE, MAX_PAGES = 50, 100


def paged(fetch: Callable[[Any], Sequence[T]]) -> list[T]:
    """Every object of a list the VTN answers in pages (`skip`, `limit`): pages are asked for until
    one comes back empty, so a VTN that caps a page below the limit asked for loses no event."""
    from openadr3_client.oadr310._vtn.interfaces.filters import PaginationFilter

    found: list[T] = []
    for _ in range(MAX_PAGES):
        page = list(fetch(PaginationFilter(skip=len(found), limit=PAGE_SIZE)))
        if not page:
            return found
        found += page
    log.warning("demand response: the VTN lists more than %d objects; the first %d are used",
                MAX_PAGES * PAGE_SIZE, len(found))
    return found


def interfaces(client: Any) -> tuple[Any, ...]:
    """The 3.1 client's interfaces, each with a session of its own."""
    return client.events, client.programs, client.reports, client.vens, client.notifiers, client.subscriptions


def token_manager(interface: Any) -> Any:
    """An interface's OAuth2 token manager (None: it signs in without one). The client keeps it
    private (`_token_manager` of the session's auth), and esus needs it for its timeouts and its
    CA, to close its session, and for the MQTT notifier's sign-in: reached here only, so a release
    that moves it breaks one function (the ven3 tests say so)."""
    return getattr(interface.session.auth, "_token_manager", None)


def use_token_manager(interface: Any, manager: Any) -> None:
    """The interface signs its requests with `manager`'s token (the same private place as above)."""
    interface.session.auth._token_manager = manager


def close_client(client: Any) -> None:
    """Its connections closed: the VTN's and the token endpoint's, once for the manager its
    interfaces share (a kept token stays valid)."""
    managers = {id(m): m for m in map(token_manager, interfaces(client)) if m is not None}
    for manager in managers.values():
        manager.oauth.close()
    for interface in interfaces(client):
        interface.session.close()


def mqtt_binding(client: Any) -> Any:
    """The VTN's MQTT notifier (None: it offers none), its authentication kept as the VTN describes
    it (the client's own model keeps only the base class, which would connect without any)."""
    from openadr3_client.oadr310.models.notifiers.mqtt import mqtt

    answer = client.notifiers.session.get(f"{client.notifiers.base_url}/notifiers")
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    binding = answer.json().get("MQTT")
    if not binding:
        return None
    kinds: dict[str, Any] = {"ANONYMOUS": mqtt.MqttNotifierAuthenticationAnonymous,
                             "OAUTH2_BEARER_TOKEN": mqtt.MqttNotifierAuthenticationOAuth2BearerToken,
                             "CERTIFICATE": mqtt.MqttNotifierAuthenticationCertificate}
    auth = binding.get("authentication") or {"method": "ANONYMOUS"}
    kind = kinds.get(str(auth.get("method")))
    if kind is None:
        raise ValueError(f"the VTN's MQTT notifier asks for {auth.get('method')} authentication, which esus "
                         "does not know")
    return mqtt.MqttNotifierBindingObject.model_validate({**binding, "authentication": kind.model_validate(auth)})


def discovered_token_url(vtn_url: str, verify: bool | str, timeout_s: float) -> str:
    """Where the VTN says tokens come from (OpenADR 3.1 discovery, GET /auth/server)."""
    import requests

    answer = requests.get(f"{vtn_url.rstrip('/')}/auth/server", verify=verify, timeout=timeout_s)
    answer.raise_for_status()
    token_url = answer.json().get("tokenURL")
    if not isinstance(token_url, str) or not token_url:
        raise ValueError("the VTN's /auth/server names no tokenURL: set ESUS_OADR_TOKEN_URL")
    return token_url


def bounded(session: Any, timeout_s: float, verify: bool | str) -> None:
    """Every request of a requests session with a timeout (the client sets none: a VTN that accepts
    and never answers would hold the VEN forever), and verified against `verify` (a session's own
    `verify` loses to REQUESTS_CA_BUNDLE in the environment)."""
    request = session.request

    def limited(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = timeout_s
        if kwargs.get("verify") in (None, True):
            kwargs["verify"] = verify
        return request(*args, **kwargs)
    session.request = limited


