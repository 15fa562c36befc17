"""The operator page (aiohttp): the active event, the meter, every override with a Release button,
and release-all. Login with a password checked against a scrypt hash, a signed session cookie,
a CSRF token in every form, failed logins slowed down. Plain HTML that works on a phone; no script."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import logging
import os
import secrets
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

from aiohttp import web

from demand_response.baseline import History
from demand_response.chart import LEGEND, power_chart
from demand_response.delivered import Delivered
from demand_response.passwords import verify_password
from demand_response.shedder import Shedder

log = logging.getLogger(__name__)

CHART_HOURS = 6

COOKIE = "esus_dr_session"
SESSION_S = 8 * 3600
MAX_FAILURES, FAILURE_WINDOW_S = 5, 300   # per address
#: failed logins a minute from all addresses together: a guesser with many addresses gets no more
MAX_FAILURES_PER_MINUTE = 20
HASHES_AT_ONCE = 2       # password checks running at once (each is scrypt: 16 MB and tens of ms)
LEVELS = {0: "normal", 1: "moderate", 2: "high", 3: "special"}
STATE_TEXT = {"writing": "writing…", "active": "overridden", "lost": "lost by the controller, writing again…",
              "failed": "not reached, retrying", "releasing": "releasing…", "released": "released"}
HEADERS = {"Content-Security-Policy": "default-src 'self'; form-action 'self'; frame-ancestors 'none'",
           "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}
CSS = """body{font-family:system-ui,sans-serif;margin:0 auto;max-width:44rem;padding:1rem;color:#222}
h1{font-size:1.3rem}.card{border:1px solid #ccc;border-radius:.5rem;padding:.8rem;margin:.8rem 0}
.active{border-color:#c60;background:#fff6ec}.note{background:#eef6ee;padding:.5rem;border-radius:.4rem}
.error{color:#a00}table{width:100%;border-collapse:collapse}td,th{text-align:left;padding:.4rem;
border-bottom:1px solid #ddd;vertical-align:top}button{font-size:1rem;padding:.5rem .9rem;min-height:2.6rem}
input{font-size:1rem;padding:.4rem;width:100%;box-sizing:border-box;margin:.2rem 0 .6rem}
#chart{display:block;max-width:30rem;margin:0 auto}
@media (max-width:30rem){td,th{display:block;border:0;padding:.15rem}tr{display:block;
border-bottom:1px solid #ddd;padding:.4rem 0}thead{display:none}}"""


SECRET_BYTES = 32


def load_secret(path: Path, on_damage: Callable[[Path, str, str], object] | None = None) -> bytes:
    """The key that signs session cookies, made once and kept (0600) so a restart keeps sessions.
    A file that does not hold a whole key (empty, truncated, scribbled) is never used as one: it is
    handed to `on_damage` (which sets it aside) or replaced, and a new key made."""
    try:
        secret = bytes.fromhex(path.read_text().strip())
        if len(secret) == SECRET_BYTES:
            return secret
        why = f"{len(secret)} bytes, not {SECRET_BYTES}"
    except FileNotFoundError:
        why = None
    except (ValueError, UnicodeDecodeError) as exc:
        why = f"not a key: {exc}"
    if why is not None and on_damage is not None:
        on_damage(path, why, "the operators' sessions (they log in again)")
    secret = secrets.token_bytes(SECRET_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret.hex())
    return secret


def _amount(value: float | None, unit: str = "kW") -> str:
    return "unknown" if value is None else f"{value:.1f} {unit}"


class OperatorPage:
    def __init__(self, shedder: Shedder, power_kw: Callable[[], float | None], changed: Callable[[], None], *,
                 user: str, password_hash: str, secret: bytes, tz: ZoneInfo, site_name: str = "",
                 clock: Callable[[], float] = time.time,
                 delivered: Callable[[], Delivered | None] = lambda: None, history: History | None = None,
                 limiting: Callable[[], Mapping[str, object]] = dict) -> None:
        """`delivered()`: the running event's current interval (baseline and measured), if any;
        `history(start_s, end_s)`: the building's power samples, for the chart; `limiting()`: what
        demand limiting decided last (empty: it is off)."""
        self.shedder, self.power_kw, self.changed, self.delivered = shedder, power_kw, changed, delivered
        self.limiting = limiting
        self.history = history
        self.user, self.password_hash, self.secret, self.tz = user, password_hash, secret, tz
        self.site_name, self.clock = site_name, clock
        self.failures: dict[str, deque[float]] = defaultdict(deque)
        self.all_failures: deque[float] = deque()          # every address's, for the page-wide bound
        self.checking: Counter[str] = Counter()            # logins being checked now, per address
        self.runner: web.AppRunner | None = None
        self._hashing = asyncio.Semaphore(HASHES_AT_ONCE)

    # -- the server ----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers])
        app.add_routes([web.get("/", self.index), web.get("/login", self.login_form), web.post("/login", self.login),
                        web.post("/logout", self.logout), web.post("/release", self.release),
                        web.post("/release-all", self.release_all), web.get("/style.css", self.style)])
        return app

    async def start(self, host: str, port: int) -> None:
        self.runner = web.AppRunner(self.app(), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, host, port).start()
        log.info("demand response: operator page on http://%s:%d/", host, port)

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @web.middleware
    async def _headers(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        """Every answer carries the security headers: redirects, 404 and 405 too (they are raised)."""
        try:
            response = await handler(request)
        except web.HTTPException as answer:
            answer.headers.update(HEADERS)
            raise
        response.headers.update(HEADERS)
        return response

    # -- sessions ------------------------------------------------------------------------------

    def _sign(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()

    def _session(self, request: web.Request) -> str | None:
        """The session nonce of a valid, unexpired cookie."""
        parts = request.cookies.get(COOKIE, "").split(":")
        if len(parts) != 4:
            return None
        user, expiry, nonce, signature = parts
        if not hmac.compare_digest(signature, self._sign(f"{user}:{expiry}:{nonce}")):
            return None
        if user != self.user or not expiry.isdigit() or int(expiry) < self.clock():
            return None
        return nonce

    def _csrf(self, nonce: str) -> str:
        return self._sign(f"csrf:{nonce}")[:32]

    async def _authorised_form(self, request: web.Request) -> tuple[str, dict] | web.Response:
        nonce = self._session(request)
        if nonce is None:
            raise web.HTTPSeeOther("/login")
        form = await request.post()
        if not hmac.compare_digest(str(form.get("csrf", "")), self._csrf(nonce)):
            return web.Response(status=403, text="This form is out of date or came from another site: "
                                                 "reload the page and try again.")
        return nonce, dict(form)

    # -- pages ---------------------------------------------------------------------------------

    async def style(self, request: web.Request) -> web.Response:
        return web.Response(text=CSS, content_type="text/css")

    async def login_form(self, request: web.Request, message: str = "", status: int = 200) -> web.Response:
        note = f'<p class="error">{html.escape(message)}</p>' if message else ""
        body = (f"<h1>Demand response{self._site()}</h1>{note}<form method=post action=/login class=card>"
                "<label>User<input name=user autocomplete=username required></label>"
                "<label>Password<input name=password type=password autocomplete=current-password required>"
                "</label><button>Log in</button></form>")
        return self._page("Log in", body, status)

    def _too_many(self, address: str, now: float) -> str | None:
        """Why a login is refused before its password is checked: this address's failures (and the
        checks of it still running, which may fail too), or every address's in the last minute."""
        recent = self.failures[address]
        while recent and now - recent[0] > FAILURE_WINDOW_S:
            recent.popleft()
        while self.all_failures and now - self.all_failures[0] > 60:
            self.all_failures.popleft()
        if len(recent) + self.checking[address] >= MAX_FAILURES:
            return "Too many failed logins: wait 5 minutes."
        if len(self.all_failures) + sum(self.checking.values()) >= MAX_FAILURES_PER_MINUTE:
            return "Too many failed logins on this page: wait a minute."
        return None

    async def login(self, request: web.Request) -> web.Response:
        address = request.remote or "?"
        now = self.clock()
        refused = self._too_many(address, now)
        if refused:
            return await self.login_form(request, refused, 429)
        form = await request.post()
        user, password = str(form.get("user", "")), str(form.get("password", ""))
        right_user = hmac.compare_digest(user.encode(), self.user.encode())
        refused = self._too_many(address, self.clock())   # others may have failed while the form came
        if refused:
            return await self.login_form(request, refused, 429)
        # scrypt takes tens of ms and this loop answers BACnet too: off the loop, a few at a time, so
        # a login flood queues here instead of delaying the building's reads; a check counts against
        # the limits from here on, so no more are run than the limits allow
        self.checking[address] += 1
        try:
            async with self._hashing:
                good = await asyncio.to_thread(verify_password, password, self.password_hash)
        finally:
            self.checking[address] -= 1
        if not (good and right_user):  # the hash runs either way
            self.failures[address].append(now)
            self.all_failures.append(now)
            log.warning("demand response page: failed login for %r from %s", user[:40], address)
            return await self.login_form(request, "Wrong user or password.", 401)
        self.failures[address].clear()
        expiry, nonce = int(now + SESSION_S), secrets.token_hex(16)
        value = f"{self.user}:{expiry}:{nonce}"
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, f"{value}:{self._sign(value)}", max_age=SESSION_S, httponly=True,
                            samesite="Strict", secure=request.secure)
        log.info("demand response page: %s logged in from %s", self.user, address)
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        checked = await self._authorised_form(request)
        if isinstance(checked, web.Response):
            return checked
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE)
        raise response

    async def release(self, request: web.Request) -> web.Response:
        checked = await self._authorised_form(request)
        if isinstance(checked, web.Response):
            return checked
        action = str(checked[1].get("action", ""))
        try:
            self.shedder.release(action)
        except KeyError:
            return web.Response(status=404, text=f"No override named {action!r}: reload the page.")
        log.info("demand response: %s released %r from the operator page", self.user, action)
        self.changed()
        raise web.HTTPSeeOther("/?done=" + quote(f"Released {action}"))

    async def release_all(self, request: web.Request) -> web.Response:
        checked = await self._authorised_form(request)
        if isinstance(checked, web.Response):
            return checked
        self.shedder.release_all()
        log.info("demand response: %s released every override from the operator page", self.user)
        self.changed()
        raise web.HTTPSeeOther("/?done=" + quote("Released every override"))

    async def index(self, request: web.Request) -> web.Response:
        nonce = self._session(request)
        if nonce is None:
            raise web.HTTPSeeOther("/login")
        csrf = html.escape(self._csrf(nonce))
        state = self.shedder.state()
        released = self.shedder.ledger.operator_released(self.shedder.clock())
        done = request.query.get("done")
        parts = [f"<h1>Demand response{self._site()}</h1>",
                 f'<p class="note" role="status">{html.escape(done)}</p>' if done else ""]
        if state.events:
            until = self._time(state.until_s)
            parts.append(f'<div class="card active" id="event"><strong>Event active</strong>: level {state.level} '
                         f"({LEVELS.get(state.level, '?')}) until {until}{self._shed_now()}</div>")
        else:
            parts.append('<div class="card" id="event">No event active.</div>')
        parts.append(self._limiting())
        kw = self.power_kw()
        parts.append(f'<div class="card" id="meter">Building power: '
                     f"{'unknown' if kw is None else f'{kw:.1f} kW'}</div>{self._chart()}")
        rows = []
        for action in self.shedder.actions:
            override = state.overrides.get(action.name)
            shown = STATE_TEXT.get(override.state, override.state) if override else "not overridden"
            retrying = override.error if override is not None and override.state in (
                "writing", "failed", "releasing") else None
            if override is not None and retrying:
                shown = "not reached, retrying" if override.state != "releasing" else "release not confirmed, retrying"
            if override is not None and override.lost and override.lost_s is not None and override.state == "active":
                again = "" if override.lost == 1 else f" ({override.lost} times)"
                shown = f"overridden; lost{again}, re-written at {self._time(override.updated_s)}"
            if override is not None and override.outranked_by and override.state == "active":
                shown = (f"outranked by priority {override.outranked_by}: the point follows that writer, not "
                         "this shed")
            if action.name in released:
                shown = "released by an operator for this event"
            error = f'<div class="error">{html.escape(retrying)}</div>' if retrying else ""
            value = "" if not override or override.value is None else html.escape(str(override.value))
            button = ""
            if override and override.state != "released" and action.name not in released:
                button = (f'<form method=post action=/release><input type=hidden name=csrf value="{csrf}">'
                          f'<input type=hidden name=action value="{html.escape(action.name)}">'
                          f'<button aria-label="Release {html.escape(action.name)}">Release</button></form>')
            rows.append(f'<tr data-action="{html.escape(action.name)}"><td>{html.escape(action.name)}<br><small>'
                        f"{html.escape(action.address)} {html.escape(action.object_id)} priority {action.priority}"
                        f'</small></td><td>{value}</td><td class="state">{shown}{error}</td><td>{button}</td></tr>')
        parts.append("<table><thead><tr><th>Override</th><th>Value</th><th>State</th><th></th></tr></thead>"
                     f"<tbody>{''.join(rows)}</tbody></table>")
        parts.append(self._past_events())
        parts.append(f'<form method=post action=/release-all class=card><input type=hidden name=csrf value="{csrf}">'
                     "<button>Release all overrides</button></form>"
                     f'<form method=post action=/logout><input type=hidden name=csrf value="{csrf}">'
                     "<button>Log out</button></form>")
        return self._page("Demand response", "".join(parts), refresh=True)

    def _chart(self) -> str:
        if self.history is None:
            return ""
        now = self.clock()
        ledger = self.shedder.ledger
        svg = power_chart(*self.history(now - CHART_HOURS * 3600, now + 1), now, CHART_HOURS, self.tz,
                          list(ledger.baselines().values()),
                          [(e.start_s, e.end_s) for e in ledger.events() if not e.cancelled])
        return f'<div class="card">{svg}<small id="legend">{html.escape(LEGEND)}</small></div>' if svg else ""

    def _limiting(self) -> str:
        """Demand limiting's card: the level and why, the billing period's peak interval, the target."""
        last = self.limiting()
        if not last:
            return ""

        def kw(key: str) -> str:
            value = last.get(key)
            return f"{value:.1f} kW" if isinstance(value, int | float) else "none yet"

        level = last.get("level", 0)
        acting = "sheds with the overrides below" if last.get("acting") else "publishes the level only (act = false)"
        peak_at = last.get("peak_at")
        when = f" ({html.escape(str(peak_at)[:16].replace('T', ' '))})" if peak_at else ""
        return (f'<div class="card{" active" if level else ""}" id="limit"><strong>Demand limiting</strong>: level '
                f"{level}, {html.escape(acting)}<br><small>{html.escape(str(last.get('reason', '')))}</small><br>"
                f"Billing period's peak {kw('peak_kw')}{when}; target {kw('target_kw')}; headroom next interval "
                f"{kw('headroom_kw')}; {last.get('used_min', 0)} min shed today</div>")

    def _shed_now(self) -> str:
        now = self.delivered()
        if now is None or now.forecast_baseline_kw is None:
            return ""
        if now.shed_kw is None or now.measured_kw is None:
            return f"<br>Baseline {now.forecast_baseline_kw:.1f} kW; no power measured in this interval yet"
        return (f'<br><span id="shed">Shed now <strong>{now.shed_kw:.1f} kW</strong>: baseline '
                f"{now.forecast_baseline_kw:.1f} kW, measured {now.measured_kw:.1f} kW</span>")

    def _past_events(self) -> str:
        """What the last events delivered, against the forecast and the high-5-of-10 baselines."""
        rows = []
        for s in self.shedder.ledger.summaries(5):
            overrides = "; ".join(f"{html.escape(name)}: {html.escape(state)}" for name, state in s.overrides.items())
            rows.append(f"<tr><td>{self._time(s.start_s)}–{self._time(s.end_s)}<br><small>level {s.level}</small></td>"
                        f"<td>{_amount(s.mean_shed_kw)}<br><small>least {_amount(s.min_shed_kw)}</small></td>"
                        f"<td>{_amount(s.kwh_shed, 'kWh')}</td><td>{_amount(s.standard_mean_shed_kw)}</td>"
                        f"<td><small>{overrides or '–'}</small></td></tr>")
        if not rows:
            return ""
        return ('<h2>Past events</h2><table id="past"><thead><tr><th>Event</th><th>Shed (mean)</th><th>Energy</th>'
                "<th>Shed vs high 5 of 10</th><th>Overrides</th></tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>")

    # -- helpers -------------------------------------------------------------------------------

    def _site(self) -> str:
        return f" – {html.escape(self.site_name)}" if self.site_name else ""

    def _time(self, epoch_s: float | None) -> str:
        if epoch_s is None:
            return "?"
        return datetime.fromtimestamp(epoch_s, self.tz).strftime("%H:%M %Z")

    def _page(self, title: str, body: str, status: int = 200, refresh: bool = False) -> web.Response:
        meta = '<meta http-equiv="refresh" content="15">' if refresh else ""
        text = ("<!doctype html><html lang=en><head><meta charset=utf-8>"
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                f'{meta}<title>{html.escape(title)} – esus</title><link rel=stylesheet href="/style.css"></head>'
                f"<body>{body}</body></html>")
        return web.Response(text=text, content_type="text/html", status=status)
