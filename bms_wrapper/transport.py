"""HTTP transport for BMS APIs: one pooled requests.Session, retries with jittered exponential backoff
(honouring Retry-After), pluggable auth, and typed errors for the ways a BMS answers badly (a login
page served with 200, an error object instead of data).

Every request is bounded in time and in size. A socket timeout bounds each read, not the request: a
server that drips a byte every few seconds would hold a poll for ever. So a timer shuts the
request's socket down at its deadline (retries included), and the body is read in chunks and
refused as soon as it outgrows the limit, so a flood never reaches memory whole."""

from __future__ import annotations

import contextlib
import email.utils
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import orjson
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

log = logging.getLogger(__name__)

RETRY_STATUS = {429, 500, 502, 503, 504}


DEADLINE_S = 30.0          # a whole request, retries included: well under the 5-minute poll
MAX_REPLY_BYTES = 4 << 20  # 8 days of one point at 1-minute resolution is about 1 MB of JSON
CHUNK_BYTES = 64 << 10


class BmsError(Exception):
    """A BMS request failed; the message says what to check, `cause` names the kind of failure in a
    few words (the same for every point that fails the same way)."""

    def __init__(self, message: str, cause: str | None = None) -> None:
        super().__init__(message)
        self.cause = cause or type(self).__name__


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


def connection_problem(exc: BaseException) -> str:
    """What went wrong reaching a server, said for a person: a name that does not resolve, a
    refusal, silence, or another break (its type). Read from the whole chain of causes (requests
    and urllib3 wrap the socket's error two or three deep)."""
    chain = _causes(exc)
    if any(isinstance(e, socket.gaierror) or type(e).__name__ == "NameResolutionError" for e in chain):
        return "cannot resolve the host name"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "refused the connection"
    if any(isinstance(e, requests.Timeout | urllib3.exceptions.TimeoutError | TimeoutError | socket.timeout)
           for e in chain):
        return "did not answer in time"
    if any(isinstance(e, OSError) and e.errno is not None for e in chain):
        error = next(e for e in chain if isinstance(e, OSError) and e.errno is not None)
        return f"could not be reached ({error.strerror or type(error).__name__})"
    return f"could not be reached ({type(exc).__name__})"


def _causes(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    todo: list[object] = [exc]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or any(e is f for f in found):
            continue
        found.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
    return found


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


_watched = threading.local()   # the deadline of the request this thread is making


class _Deadline:
    """Shuts down the socket of one request when its time is up, whatever the server is doing."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self.answered = False    # the status line and headers came
        self.received = 0        # body bytes read so far, for the message
        self.connection: _WatchedConnection | None = None
        self._timer = threading.Timer(seconds, self.expire)
        self._timer.daemon = True

    def expire(self) -> None:
        # Set before the socket is looked at; `_WatchedConnection.connect` sets the socket before it
        # looks at this flag: whichever comes second shuts the socket, so a deadline that passes
        # while the socket is being connected is never lost (it was, on a busy CI machine: a
        # dripping server then held the request for hours).
        self.expired = True
        if self.connection is not None:
            self.connection.cut()


class _WatchedConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline: _Deadline | None = getattr(_watched, "deadline", None)
        if deadline is not None:
            deadline.connection = self
            if deadline.expired:
                raise requests.Timeout("the deadline passed while connecting")
        super().request(*args, **kwargs)

    def connect(self) -> None:
        super().connect()
        deadline: _Deadline | None = getattr(_watched, "deadline", None)
        if deadline is not None and deadline.expired:
            self.cut()

    def cut(self) -> None:
        """Shut the socket down: a read blocked on it returns at once."""
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _WatchedTlsConnection(_WatchedConnection, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedTlsConnection


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[_Deadline]:
    deadline = _Deadline(seconds)
    _watched.deadline = deadline
    deadline._timer.start()
    try:
        yield deadline
    finally:
        deadline._timer.cancel()
        _watched.deadline = None


class Auth(Protocol):
    """How a transport signs in: `apply` once to its session, `refresh` when the BMS answers 401
    (True: try the request again)."""

    def apply(self, session: requests.Session) -> None: ...

    def refresh(self) -> bool: ...


class Reply(NamedTuple):
    body: bytes
    content_type: str


class Transport:
    def __init__(self, base_url: str, auth: Auth, *, connect_timeout_s: float = 5.0,
                 read_timeout_s: float = 30.0, deadline_s: float = DEADLINE_S, max_reply_bytes: int = MAX_REPLY_BYTES,
                 max_in_flight: int = 4, retry: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep, accept: str = "application/json") -> None:
        self.base_url = base_url.rstrip("/")
        self.connect_timeout_s, self.read_timeout_s = connect_timeout_s, read_timeout_s
        self.deadline_s, self.max_reply_bytes = deadline_s, max_reply_bytes
        #: what sets the deadline, for the message when it passes (the doctor's is its own)
        self.deadline_set_by = "the limit is [bms] deadline_s in the site file"
        self.retry, self.sleep = retry, sleep
        self.session = requests.Session()
        # A blocking pool of `max_in_flight` keep-alive connections is the one bound on requests to the
        # BMS, whoever asks; a connection goes back as soon as the body is read, so decoding and
        # backoff sleeps never hold a slot.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max_in_flight, pool_block=True, max_retries=0)
        adapter.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["Accept"] = accept
        self.auth = auth
        self._auth_lock = threading.Lock()
        auth.apply(self.session)
        self.requests = 0
        self.failures = 0

    def close(self) -> None:
        self.session.close()

    @property
    def timeouts(self) -> tuple[float, float]:
        """(connect, read) seconds, for a request made beside `get` (a login exchange)."""
        return self.connect_timeout_s, self.read_timeout_s

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET and decode JSON within the deadline, retrying what is worth retrying; raises a BmsError subclass."""
        reply = self.get(path, params)
        try:
            return self._decode(reply, path)
        except BmsError:
            self.failures += 1
            raise

    def get(self, path: str, params: dict[str, Any] | None = None) -> Reply:
        """GET within the deadline, retrying what is worth retrying: a 200's body, checked to be no
        login page and not empty; raises a BmsError subclass."""
        return self.request("GET", path, params)

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, data: bytes | None = None,
                content_type: str = "") -> Reply:
        """`get` with a method and a body: only for requests that read (a retry must change nothing).
        An HTML page in place of data is asked again like a 503 (a single sign-on proxy answers one
        now and then while a session lapses); a wrong URL answers one every time, and is said."""
        deadline_at = time.monotonic() + self.deadline_s
        pages = 0
        try:
            while True:
                reply = self._request(method, path, params, data, content_type, deadline_at)
                try:
                    return self._checked(reply, path)
                except BmsLoginPage:
                    pages += 1
                    if pages >= self.retry.attempts or time.monotonic() >= deadline_at:
                        raise
                    self._pause(self.retry.delay_s(pages - 1), deadline_at)
        except BmsError:
            self.failures += 1
            raise

    def _request(self, method: str, path: str, params: dict[str, Any] | None, data: bytes | None,
                 content_type: str, deadline_at: float) -> Reply:
        url = f"{self.base_url}{path}"
        headers = {"Content-Type": content_type} if content_type else None
        refreshed = False
        attempt = 0
        while True:
            remaining = deadline_at - time.monotonic()
            if remaining <= 0:
                raise BmsUnavailable(f"the BMS gave no usable answer to {path} within {self.deadline_s:g} s "
                                     f"({attempt} attempts)", "no answer in time")
            self.requests += 1
            with _deadline(remaining) as watch:
                try:
                    reply = self.session.request(method, url, params=params, data=data, headers=headers, stream=True,
                                                 timeout=(self.connect_timeout_s, min(self.read_timeout_s, remaining)))
                    watch.answered = True
                    with reply:
                        body = self._body(reply, path, watch) if reply.status_code == 200 else b""
                        excerpt = "" if reply.status_code == 200 else self._excerpt(reply)
                except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                    if watch.expired:
                        sent = f"sent {watch.received} bytes of its answer" if watch.answered else "did not answer"
                        raise BmsUnavailable(f"the BMS {sent} to {path} in {self.deadline_s:g} s: too slow "
                                             f"({self.deadline_set_by})", "too slow") from None
                    timeouts = (requests.Timeout, urllib3.exceptions.TimeoutError)
                    problem = ("did not answer in time" if isinstance(exc, timeouts) else
                               connection_problem(exc) if isinstance(exc, requests.ConnectionError) else
                               f"broke off its answer ({type(exc).__name__})")
                    if attempt + 1 >= self.retry.attempts:
                        raise BmsUnavailable(f"{self.base_url} {problem} ({attempt + 1} attempts): check "
                                             "ESUS_BMS_URL and the network", problem) from None
                    self._pause(self.retry.delay_s(attempt), deadline_at)
                    attempt += 1
                    continue
            if reply.status_code == 401:
                with self._auth_lock:
                    if not refreshed and self.auth.refresh():
                        refreshed = True
                        continue
                raise BmsAuthError("the BMS refused the login (HTTP 401): check ESUS_BMS_USER and ESUS_BMS_PASSWORD",
                                   "HTTP 401")
            if reply.status_code in RETRY_STATUS:
                if attempt + 1 >= self.retry.attempts:
                    times = "once" if attempt == 0 else f"{attempt + 1} times"
                    raise BmsUnavailable(f"the BMS answered HTTP {reply.status_code} {times} for {path}",
                                         f"HTTP {reply.status_code}")
                self._pause(self.retry.delay_s(attempt, retry_after_s(reply.headers.get("Retry-After"))), deadline_at)
                attempt += 1
                continue
            if reply.status_code != 200:
                raise BmsBadResponse(f"the BMS answered HTTP {reply.status_code} for {path}: {excerpt}",
                                     f"HTTP {reply.status_code}")
            return Reply(body, reply.headers.get("Content-Type", ""))

    def _pause(self, seconds: float, deadline_at: float) -> None:
        """Back off, but never past the deadline (the next attempt then says the time is up)."""
        self.sleep(max(0.0, min(seconds, deadline_at - time.monotonic())))

    def _body(self, reply: requests.Response, path: str, watch: _Deadline) -> bytes:
        """The body, refused as soon as it is longer than the limit (a flood is never held whole)."""
        limit = self.max_reply_bytes
        too_large = BmsBadResponse(f"the BMS's answer to {path} is larger than {limit / 2**20:g} MB: refused (if "
                                   "that is a legal answer, raise [bms] max_reply_mb in the site file)", "too large")
        declared = reply.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        body = bytearray()
        # read1: what one read of the socket gave (a dripping server's bytes are counted as they come)
        while chunk := reply.raw.read1(CHUNK_BYTES, decode_content=True):
            body += chunk
            watch.received = len(body)
            if len(body) > limit:
                raise too_large
            if watch.expired:   # the socket is cut too; this ends a drip whatever the socket does
                raise requests.Timeout("the deadline passed while reading")
        return bytes(body)

    @staticmethod
    def _excerpt(reply: requests.Response) -> str:
        """The start of an error answer, on one line, for the message (never the whole of it)."""
        with contextlib.suppress(requests.RequestException):
            return " ".join(next(reply.iter_content(200), b"").decode("utf-8", "replace").split())
        return ""

    @staticmethod
    def _checked(reply: Reply, path: str) -> Reply:
        body = reply.body.lstrip()
        if "html" in reply.content_type or body[:1] == b"<":
            raise BmsLoginPage(f"the BMS answered {path} with an HTML page (a login page?) instead of data: "
                               "check ESUS_BMS_URL points at the API and the account is enabled", "an HTML page")
        if not body:
            raise BmsBadResponse(f"the BMS answered {path} with an empty body", "an empty answer")
        return Reply(body, reply.content_type)

    @staticmethod
    def _decode(reply: Reply, path: str) -> Any:
        body = reply.body
        try:
            return orjson.loads(body)  # a week of one point is 10,000 records: 3x faster than json
        except orjson.JSONDecodeError:
            raise BmsBadResponse(f"the BMS answered {path} with malformed JSON: {body[:120]!r}",
                                 "malformed JSON") from None
