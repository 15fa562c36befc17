"""The operator page in headless Chromium (Debian's): log in, see the event and the meter, release
one override and find its priority slot NULL on the controller; CSRF, bad credentials, a phone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import threading
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import numpy as np
import pytest

from bacnet_server.client import BacnetClient
from demand_response.actions import ShedAction
from demand_response.baseline import Baseline
from demand_response.delivered import Delivered, summarize
from demand_response.ledger import Event, Ledger
from demand_response.page import COOKIE, HEADERS, MAX_FAILURES, OperatorPage, load_secret
from demand_response.passwords import hash_password
from demand_response.shedder import Shedder
from esus.parts.demand import ShedPointWriter
from tests.bacnet_harness import free_udp_port
from tests.dr_targets import Target, start_client, start_target
from tests.tsdb import free_tcp_port
from tests.test_demand_response_shed import in_loop
from tests.test_demand_response_ven import wait_until

PASSWORD = "correct horse battery"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
#: where the browser test leaves its screenshots of the page, to look at (not compared)
SCREENSHOTS = Path(tempfile.gettempdir())


@dataclass
class Scene:
    target: Target
    shedder: Shedder
    url: str


#: what demand limiting decided last, as the service hands it to the page
LIMITING = {"level": 2, "reason": "level 2: this interval's bound 48.1 kW would pass the target 45.0 kW, and a "
                                  "later shed could not hold it", "acting": True, "peak_kw": 44.6,
            "peak_at": "2026-06-03T14:15:00+02:00", "target_kw": 45.0, "headroom_kw": -2.5, "used_min": 12}


@contextlib.asynccontextmanager
async def operator_page(tmp: Path) -> AsyncIterator[Scene]:
    """Two overrides held for an hour-long level-2 event, a third that cannot be written, and the page."""
    target, client = start_target(731), start_client()
    ledger = Ledger(tmp / "dr.sqlite")
    shedder = Shedder([ShedAction("AHU-1 supply air <setpoint>", target.address, "analog-value,1", {1: 22.0}),
                       ShedAction("Chiller limit", target.address, "analog-output,2", {1: 50.0}),
                       ShedAction("Fan of an offline controller", f"127.0.0.1:{free_udp_port()}", "binary-output,3",
                                  {1: "inactive"})],
                      ledger, ShedPointWriter(BacnetClient(client, timeout_s=1.0)), stage_delay_s=0.0)
    shedder.put_event(Event("e1", 2, time.time() - 60, time.time() + 3600))
    await shedder.reconcile()
    wake = asyncio.Event()

    async def reconcile_loop() -> None:
        while True:
            await wake.wait()
            wake.clear()
            await shedder.reconcile()
    port = free_tcp_port()
    past = Baseline("e0", time.time() - 86400, (40.0, 40.0), (39.0, 39.0), "forecast carried by the typical profile")
    ledger.put_summary(summarize(past, 1, past.start_s + 1800, [Delivered(past.start_s, 31.0, 40.0, 39.0),
                                                                Delivered(past.start_s + 900, 33.0, 40.0, 39.0)],
                                 {"Chiller limit": "active", "Fan": "failed (no answer within 1 s)"}))
    now = Delivered(time.time() // 900 * 900, 34.6, 42.5, 41.0)
    ledger.put_baseline(Baseline("e1", now.start_s - 900, (42.0, 42.5, 43.0), (41.0, 41.0, 41.0), "forecast"),
                        time.time())
    minutes = time.time() - 60 * np.arange(8 * 60)[::-1]

    def history(start_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray]:
        keep = (minutes >= start_s) & (minutes < end_s)
        return minutes[keep], 30 + 10 * np.sin(minutes[keep] / 3000)
    page = OperatorPage(shedder, lambda: 42.5, wake.set, user="operator", password_hash=hash_password(PASSWORD),
                        secret=load_secret(tmp / "page-secret"), tz=ZoneInfo("Europe/Copenhagen"), site_name="TMV23",
                        delivered=lambda: now, history=history, limiting=lambda: LIMITING)
    await page.start("127.0.0.1", port)
    loop_task = asyncio.create_task(reconcile_loop())
    try:
        yield Scene(target, shedder, f"http://127.0.0.1:{port}")
    finally:
        loop_task.cancel()
        await page.close()
        ledger.close()
        target.close()
        client.close()


def chromium(width: int, height: int):  # noqa: ANN201 - a selenium WebDriver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions", f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def operator_session(url: str, width: int, height: int) -> dict:
    """What an operator does on the page (runs in a thread: selenium blocks)."""
    from selenium.webdriver.common.by import By

    seen: dict = {}
    driver = chromium(width, height)
    driver.implicitly_wait(10)  # each find waits for the page a click leads to
    try:
        driver.get(url + "/")
        seen["redirected_to_login"] = driver.current_url.endswith("/login")
        driver.find_element(By.NAME, "user").send_keys("operator")
        driver.find_element(By.NAME, "password").send_keys("wrong password!")
        driver.find_element(By.TAG_NAME, "button").click()
        seen["wrong_password"] = driver.find_element(By.CLASS_NAME, "error").text
        driver.find_element(By.NAME, "user").send_keys("operator")
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.TAG_NAME, "button").click()
        seen["event"] = driver.find_element(By.ID, "event").text
        seen["meter"] = driver.find_element(By.ID, "meter").text
        seen["past"] = driver.find_element(By.ID, "past").text
        chart = driver.find_element(By.ID, "chart")
        seen["chart"] = (chart.is_displayed(), chart.size["width"] / driver.execute_script("return window.innerWidth"),
                         chart.get_attribute("aria-label"))
        # what a person sees, in CSS pixels: the smallest label's height, the event strip's width
        seen["label_px"] = driver.execute_script(
            "return Math.min(...[...document.querySelectorAll('#chart text')].map(t => t.getBoundingClientRect().height))")
        seen["event_px"] = driver.execute_script("return document.querySelector('#chart rect').getBoundingClientRect().width")
        seen["legend"] = driver.find_element(By.ID, "legend").text
        driver.save_screenshot(str(SCREENSHOTS / f"operator-page-{width}.png"))
        seen["console"] = [entry["message"] for entry in driver.get_log("browser")]
        seen["fits_the_screen"] = driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth")
        row = driver.find_element(By.CSS_SELECTOR, 'tr[data-action="Chiller limit"]')
        button = row.find_element(By.TAG_NAME, "button")
        seen["button_visible"] = button.is_displayed()
        button.click()
        seen["note"] = driver.find_element(By.CSS_SELECTOR, "[role=status]").text
        seen["states"] = {r.get_attribute("data-action"): r.find_element(By.CLASS_NAME, "state").text
                          for r in driver.find_elements(By.CSS_SELECTOR, "tr[data-action]")}
    finally:
        driver.quit()
    return seen


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),  # in CI a missing browser fails
                    reason="needs Debian's chromium and chromium-driver: scripts/test installs them")
@pytest.mark.parametrize(("width", "height"), [(1280, 900), (390, 844)], ids=["desktop", "phone"])
@in_loop
async def test_an_operator_logs_in_sees_the_event_and_releases_one_override(tmp_path: Path, width: int,
                                                                            height: int) -> None:
    async with operator_page(tmp_path) as scene:
        seen = await asyncio.to_thread(operator_session, scene.url, width, height)
        await wait_until(lambda: scene.target.slot("analog-output,2", 10) is None)
        assert scene.target.slot("analog-value,1", 10) == 22.0             # the other one still holds
    assert seen["redirected_to_login"]
    assert seen["wrong_password"] == "Wrong user or password."
    assert seen["event"].startswith("Event active: level 2 (high) until")
    assert "Shed now 7.9 kW: baseline 42.5 kW, measured 34.6 kW" in seen["event"]
    past = " ".join(seen["past"].split())
    assert "8.0 kW least 7.0 kW 4.0 kWh 7.0 kW" in past and "Fan: failed (no answer within 1 s)" in past, past
    assert seen["meter"] == "Building power: 42.5 kW"
    assert seen["fits_the_screen"] and seen["button_visible"]
    shown, share_of_width, label = seen["chart"]
    assert shown and label == "Building power over the last 6 hours"
    assert share_of_width > 0.75 if width < 500 else share_of_width > 0.3   # a phone's width; a desktop's 30rem
    assert seen["label_px"] >= 10, seen["label_px"]                          # readable on a 390 px phone
    assert seen["event_px"] >= 40, seen["event_px"]                          # the event under way, not a sliver
    assert "high 5 of 10" in seen["legend"]
    assert not [m for m in seen["console"] if "Content Security Policy" in m], seen["console"]
    assert seen["note"] == "Released Chiller limit"
    assert seen["states"]["Chiller limit"] == "released by an operator for this event"
    assert seen["states"]["AHU-1 supply air <setpoint>"] == "overridden"    # and its name shown as text
    offline = seen["states"]["Fan of an offline controller"]
    assert offline.startswith("not reached, retrying") and "no answer within 1 s" in offline


async def logged_in(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(url + "/login", data={"user": "operator", "password": PASSWORD},
                            allow_redirects=False) as reply:
        assert reply.status == 303


@in_loop
async def test_the_page_shows_what_demand_limiting_does_and_the_periods_peak_interval(tmp_path: Path) -> None:
    async with operator_page(tmp_path) as scene, \
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await logged_in(session, scene.url)
        async with session.get(scene.url + "/") as reply:
            text = await reply.text()
    card = text[text.index('id="limit"'):text.index("</div>", text.index('id="limit"'))]
    assert "level 2, sheds with the overrides below" in card
    assert "would pass the target 45.0 kW" in card
    assert "peak 44.6 kW (2026-06-03 14:15); target 45.0 kW; headroom next interval -2.5 kW; 12 min shed" in card


@in_loop
async def test_a_release_without_the_pages_csrf_token_is_refused(tmp_path: Path) -> None:
    async with operator_page(tmp_path) as scene, \
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:  # keeps 127.0.0.1's cookies
        async with session.post(scene.url + "/release", data={"action": "Chiller limit"},
                                allow_redirects=False) as reply:
            assert reply.status == 303 and reply.headers["Location"] == "/login"   # no session: log in
        await logged_in(session, scene.url)
        async with session.post(scene.url + "/release", data={"action": "Chiller limit", "csrf": "forged"}) as reply:
            assert reply.status == 403
        assert scene.shedder.ledger.operator_released(0) == set()
        assert scene.target.slot("analog-output,2", 10) == 50.0


@in_loop
async def test_a_forged_cookie_and_repeated_bad_passwords_get_nowhere(tmp_path: Path) -> None:
    async with operator_page(tmp_path) as scene:
        async with aiohttp.ClientSession(cookies={COOKIE: "operator:9999999999:abc:deadbeef"}) as session:
            async with session.get(scene.url + "/", allow_redirects=False) as reply:
                assert reply.status == 303
        async with aiohttp.ClientSession() as session:
            for _ in range(MAX_FAILURES):
                async with session.post(scene.url + "/login", data={"user": "operator", "password": "guess"}) as r:
                    assert r.status == 401
            async with session.post(scene.url + "/login", data={"user": "operator", "password": PASSWORD}) as r:
                assert r.status == 429                                   # even the right one, for a while
            async with session.get(scene.url + "/login") as r:
                assert r.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in \
                    r.headers["Content-Security-Policy"]


@in_loop
async def test_every_answer_carries_the_security_headers(tmp_path: Path) -> None:
    async with operator_page(tmp_path) as scene, aiohttp.ClientSession() as session:
        for method, path, status in [("GET", "/", 303), ("GET", "/no-such-page", 404), ("GET", "/release", 405),
                                     ("POST", "/login", 401), ("GET", "/login", 200)]:
            data = {"user": "operator", "password": "wrong"} if method == "POST" else None
            async with session.request(method, scene.url + path, data=data, allow_redirects=False) as reply:
                assert reply.status == status, path
                assert {k: reply.headers.get(k) for k in HEADERS} == HEADERS, (method, path, status)


@in_loop
async def test_a_login_flood_is_hashed_off_the_event_loop_a_few_at_a_time(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """scrypt on the loop that answers BACnet delayed its reads (40 logins: 1.5 ms -> 249 ms); here every
    check runs in a worker thread, at most HASHES_AT_ONCE at once, and the failures of the queued ones
    count before a queued one is hashed."""
    from demand_response import page as page_module

    loop_thread = threading.current_thread()
    running, peak, threads, hashed = 0, 0, set(), 0
    verify = page_module.verify_password

    def watched(password: str, stored: str) -> bool:
        nonlocal running, peak, hashed
        running += 1
        peak, hashed = max(peak, running), hashed + 1
        threads.add(threading.current_thread())
        try:
            return verify(password, stored)
        finally:
            running -= 1

    monkeypatch.setattr(page_module, "verify_password", watched)
    async with operator_page(tmp_path) as scene, aiohttp.ClientSession() as session:
        async def login() -> int:
            async with session.post(scene.url + "/login", data={"user": "operator", "password": "guess"}) as r:
                return r.status
        statuses = await asyncio.gather(*(login() for _ in range(40)))
    assert loop_thread not in threads and peak <= page_module.HASHES_AT_ONCE
    assert statuses.count(401) == hashed == MAX_FAILURES   # the checks in flight count: not one more
    assert statuses.count(429) == 40 - hashed


@in_loop
async def test_a_guesser_with_many_addresses_gets_no_more_than_the_page_wide_bound(tmp_path: Path) -> None:
    """40 addresses (127.0.0.2-41), two wrong logins each: after MAX_FAILURES_PER_MINUTE failures every
    login is refused for a minute, the right password too, and each refusal costs no password check."""
    from demand_response import page as page_module

    async with operator_page(tmp_path) as scene:
        async def guesses(n: int) -> list[int]:
            connector = aiohttp.TCPConnector(local_addr=(f"127.0.0.{n}", 0))
            async with aiohttp.ClientSession(connector=connector) as session:
                statuses = []
                for _ in range(2):
                    async with session.post(scene.url + "/login", data={"user": "operator", "password": "x"}) as r:
                        statuses.append(r.status)
                return statuses
        statuses = [s for each in await asyncio.gather(*(guesses(n) for n in range(2, 42))) for s in each]
        assert statuses.count(401) == page_module.MAX_FAILURES_PER_MINUTE and statuses.count(429) == 80 - 20
        async with aiohttp.ClientSession() as session:
            async with session.post(scene.url + "/login", data={"user": "operator", "password": PASSWORD}) as r:
                assert r.status == 429 and "wait a minute" in await r.text()
