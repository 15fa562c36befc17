"""HTTP transport for BMS APIs: one pooled requests.Session, explicit timeouts, retries with
jittered exponential backoff (honouring Retry-After), pluggable auth, and typed errors for the
ways a BMS answers badly (a login page served with 200, an error object instead of data)."""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import requests
from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)

RETRY_STATUS = {429, 500, 502, 503, 504}


class BmsError(Exception):
    """A BMS request failed; the message says what to check."""


class BmsUnavailable(BmsError):
    """Timeouts, refused connections, 429/5xx after all retries: try again later."""


class BmsAuthError(BmsError):
    """The BMS refused the credentials."""


class BmsLoginPage(BmsError):
    """The BMS answered with an HTML page (usually a login form) where JSON was expected."""


class BmsBadResponse(BmsError):
    """The BMS answered 200 with something that is not the data asked for."""


class BasicAuth:
    def __init__(self, user: str, password: str) -> None:
        self._auth = requests.auth.HTTPBasicAuth(user, password)

    def apply(self, session: requests.Session) -> None:
        session.auth = self._auth

    def refresh(self) -> bool:
        return False  # nothing to refresh: a 401 is final


class BearerAuth:
    """A bearer token from `fetch_token()`, fetched again once when the BMS answers 401."""

    def __init__(self, fetch_token: Callable[[], str]) -> None:
        self.fetch_token = fetch_token
        self.token: str | None = None
        self._session: requests.Session | None = None

    def apply(self, session: requests.Session) -> None:
        self._session = session
        self.token = self.fetch_token()
        session.headers["Authorization"] = f"Bearer {self.token}"

    def refresh(self) -> bool:
        if self._session is not None:
            self.apply(self._session)
        return True


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_s: float = 0.5
    max_s: float = 30.0

    def delay_s(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(self.max_s, max(0.0, retry_after))
        return min(self.max_s, self.base_s * 2 ** attempt) * random.uniform(0.5, 1.0)


def retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds (a number or an HTTP date)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Transport:
    def __init__(self, base_url: str, auth: BasicAuth | BearerAuth, *, connect_timeout_s: float = 5.0,
                 read_timeout_s: float = 30.0, max_in_flight: int = 4, retry: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.retry, self.sleep = retry, sleep
        self.session = requests.Session()
        # A blocking pool of `max_in_flight` keep-alive connections is the one bound on requests to the
        # BMS, whoever asks; a connection goes back as soon as the body is read, so decoding and
        # backoff sleeps never hold a slot.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max_in_flight, pool_block=True, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["Accept"] = "application/json"
        self.auth = auth
        self._auth_lock = threading.Lock()
        auth.apply(self.session)
        self.requests = 0
        self.failures = 0

    def close(self) -> None:
        self.session.close()

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET and decode JSON, retrying what is worth retrying; raises a BmsError subclass."""
        url = f"{self.base_url}{path}"
        refreshed = False
        attempt = 0
        while True:
            self.requests += 1
            try:
                reply = self.session.get(url, params=params, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = "did not answer in time" if isinstance(exc, requests.Timeout) else "refused the connection"
                if attempt + 1 >= self.retry.attempts:
                    self.failures += 1
                    raise BmsUnavailable(f"{self.base_url} {problem} ({attempt + 1} attempts): check ESUS_BMS_URL "
                                         "and the network") from None
                self.sleep(self.retry.delay_s(attempt))
                attempt += 1
                continue
            if reply.status_code == 401:
                with self._auth_lock:
                    if not refreshed and self.auth.refresh():
                        refreshed = True
                        continue
                self.failures += 1
                raise BmsAuthError("the BMS refused the login (HTTP 401): check ESUS_BMS_USER and ESUS_BMS_PASSWORD")
            if reply.status_code in RETRY_STATUS:
                if attempt + 1 >= self.retry.attempts:
                    self.failures += 1
                    raise BmsUnavailable(f"the BMS answered HTTP {reply.status_code} {attempt + 1} times for {path}")
                self.sleep(self.retry.delay_s(attempt, retry_after_s(reply.headers.get("Retry-After"))))
                attempt += 1
                continue
            if reply.status_code != 200:
                self.failures += 1
                raise BmsBadResponse(f"the BMS answered HTTP {reply.status_code} for {path}: {reply.text[:200]}")
            return self._decode(reply, path)

    def _decode(self, reply: requests.Response, path: str) -> Any:
        content_type = reply.headers.get("Content-Type", "")
        body = reply.content.lstrip()
        if "html" in content_type or body[:1] == b"<":
            self.failures += 1
            raise BmsLoginPage(f"the BMS answered {path} with an HTML page (a login page?) instead of JSON: "
                               "check ESUS_BMS_URL points at the API and the account is enabled")
        try:
            return orjson.loads(body)  # a week of one point is 10,000 records: 3x faster than json
        except orjson.JSONDecodeError:
            self.failures += 1
            raise BmsBadResponse(f"the BMS answered {path} with malformed JSON: {body[:120]!r}") from None
