"""Outbox and writer against a real time-series server: exactly once, backoff, dead letter."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from pydantic import SecretStr

from esus.settings.config import InfluxAccess
from esus.state.influx import InfluxSender, InfluxWriter, SendError
from esus.state.outbox import Outbox
from esus.state.store import HistoryStore
from esus.state.telemetry import SCHEMA, SchemaError, line, quantized
from tests.tsdb import VictoriaMetrics, free_tcp_port

T0 = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture
def tsdb(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(tmp_path / "vm").start()
    yield server
    server.stop()


def sender_for(url: str) -> InfluxSender:
    return InfluxSender(InfluxAccess(url, SecretStr("token"), "esus", "esus"), timeout_s=3)


def power_lines(n: int, start: datetime = T0, site: str = "TMV23") -> list[str]:
    return [line("power", {"input_kw": 10.0 + i % 7}, start + timedelta(seconds=60 * i), site=site) for i in range(n)]


def test_line_protocol_keeps_numbers_float_and_time_in_ms() -> None:
    text = line("power", {"input_kw": 3, "high_load": True, "forecast_kw": None}, T0, site="TMV 23")
    assert text == f"power,site=TMV\\ 23 high_load=1,input_kw=3 {int(T0.timestamp() * 1000)}"
    assert "i " not in text  # never an integer field
    assert line("power", {"input_kw": float("nan")}, T0) is None
    with pytest.raises(SchemaError):
        line("power", {"inptu_kw": 1.0}, T0)
    with pytest.raises(SchemaError):
        line("bms", {"value": 1.0}, T0, tags={"floor": "1"})
    assert "reason=\"sun on facade\"" in line("shades", {"reason": "sun on facade"}, T0, tags={"group": "east"})


def test_outbox_is_bounded_and_counts_what_it_drops(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outbox = Outbox(HistoryStore(tmp_path / "o.db"), max_lines=100)
    outbox.put(power_lines(60))
    outbox.put(power_lines(60, T0 + timedelta(days=1)))
    assert outbox.depth == 100 and outbox.counter("dropped") == 20
    assert outbox.oldest(1).lines[0] == power_lines(60)[20]  # the oldest went first
    assert "dropped the 20 oldest" in caplog.text
    outbox.store.close()
    reopened = Outbox(HistoryStore(tmp_path / "o.db"), max_lines=100)
    assert reopened.depth == 100 and reopened.counter("dropped") == 20


def test_every_line_arrives_exactly_once(tmp_path: Path, tsdb: VictoriaMetrics) -> None:
    outbox = Outbox(HistoryStore(tmp_path / "o.db"))
    lines = power_lines(12_000)
    outbox.put(lines)
    writer = InfluxWriter(outbox, sender_for(tsdb.url).send, clock=None)
    while writer.step():
        pass
    outbox.put(lines[:5000])  # a replay (as after a crash between send and delete) is harmless
    while writer.step():
        pass
    assert outbox.depth == 0 and outbox.counter("sent") == 17_000
    stored = tsdb.export()[("power_input_kw", ("site", "TMV23"))]
    assert len(stored) == 12_000 == len({t for t, _ in stored})
    assert sorted(stored)[0] == (int(T0.timestamp() * 1000), 10.0)


def test_the_writer_keeps_a_path_in_the_url(tmp_path: Path, tsdb: VictoriaMetrics,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """A clustered store behind a path (VictoriaMetrics cluster's vminsert: /insert/<tenant>/influx,
    a proxy) needs no change to the writer: ESUS_INFLUX_URL carries the path."""
    outbox = Outbox(HistoryStore(tmp_path / "o.db"))
    outbox.put(power_lines(10))
    writer = InfluxWriter(outbox, sender_for(f"{tsdb.url}/influx").send, clock=None)
    while writer.step():
        pass
    assert len(tsdb.export()[("power_input_kw", ("site", "TMV23"))]) == 10
    outbox.put(power_lines(1))   # and the path is really used: the server names it when it refuses it
    InfluxWriter(outbox, sender_for(f"{tsdb.url}/no-such-path").send, clock=None).step()
    assert "/no-such-path/api/v2/write" in caplog.text


def test_server_away_keeps_lines_and_backs_off(tmp_path: Path) -> None:
    outbox = Outbox(HistoryStore(tmp_path / "o.db"))
    outbox.put(power_lines(10))
    writer = InfluxWriter(outbox, sender_for(f"http://127.0.0.1:{free_tcp_port()}").send, clock=None)
    with pytest.raises(SendError) as caught:
        writer.step()
    assert caught.value.status is None and caught.value.message.endswith(" refused the connection")
    assert outbox.depth == 10
    writer.failures = 10
    assert 30 <= writer.backoff_s() <= 60


class PoisonFront(http.server.BaseHTTPRequestHandler):
    """In front of the server: refuses (400, InfluxDB's error body) any batch with a poisoned line."""

    upstream = ""

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if b"poison" in body:
            reply = json.dumps({"code": "invalid", "message": "unable to parse 'poison': invalid field format"})
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(reply.encode())
            return
        upstream = requests.post(self.upstream + self.path, data=body, headers={"Content-Type": "text/plain"})
        self.send_response(upstream.status_code)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_refused_batch_goes_to_the_dead_letter_and_the_rest_flows(tmp_path: Path, tsdb: VictoriaMetrics) -> None:
    PoisonFront.upstream = tsdb.url
    front = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PoisonFront)
    threading.Thread(target=front.serve_forever, daemon=True).start()
    try:
        outbox = Outbox(HistoryStore(tmp_path / "o.db"))
        lines = power_lines(40)
        lines[17] = line("bms", {"value": 1.0}, T0, tags={"point": "poison"}, site="TMV23")
        outbox.put(lines)
        writer = InfluxWriter(outbox, sender_for(f"http://127.0.0.1:{front.server_port}").send, clock=None)
        while writer.step():
            pass
        assert outbox.depth == 0
        dead = outbox.dead_letters()
        assert len(dead) == 1 and "poison" in dead[0][0]
        assert dead[0][1] == 400 and "invalid field format" in dead[0][2]
        assert len(tsdb.export()[("power_input_kw", ("site", "TMV23"))]) == 39
    finally:
        front.shutdown()
        front.server_close()


@pytest.mark.slow
def test_outage_then_kill_9_then_restart_loses_and_duplicates_nothing(tmp_path: Path, tsdb: VictoriaMetrics) -> None:
    """The service keeps running while the server is away, is killed with -9, restarts, and once the
    server is back every power reading the BAS wrote is stored exactly once."""
    state = tmp_path / "state"
    env = dict(os.environ, ESUS_STATE_DIR=str(state), ESUS_INFLUX_URL=tsdb.url, ESUS_INFLUX_TOKEN="t",
               ESUS_INFLUX_ORG="esus", ESUS_INFLUX_BUCKET="esus", GPIOZERO_PIN_FACTORY="mock",
               ESUS_BACNET_ADDRESS=f"127.0.0.1/8:{free_tcp_port()}", HOME=str(tmp_path))
    command = [sys.executable, "-m", "esus", "run", "--demo", "--speed", "120"]

    def depth() -> int:
        with HistoryStore(state / "history.db", readonly=True) as store, store.reading() as conn:
            return conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    started_s = int(time.time())
    service = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(12)                       # running, delivering
        tsdb.stop()                          # the server goes away
        time.sleep(8)                        # the service keeps running; lines pile up on disk
        assert service.poll() is None
        assert depth() > 0
        service.send_signal(signal.SIGKILL)  # and the service dies hard
        service.wait()
        service = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(6)
        tsdb.start()                         # the server returns
        deadline = time.monotonic() + 60     # the backlog drains (new lines keep coming)
        while depth() > 100 and time.monotonic() < deadline:
            time.sleep(0.5)
        service.send_signal(signal.SIGTERM)  # a clean stop sends what is left
        assert service.wait(timeout=30) == 0
        assert depth() == 0
    finally:
        if service.poll() is None:
            service.kill()

    from esus.parts.power import POWER_SERIES
    with HistoryStore(state / "history.db", readonly=True) as store:
        written_s, values = store.range(POWER_SERIES, int(time.time()) - 3 * 86400, int(time.time()) + 86400)
    stored = tsdb.export('{__name__="power_input_kw"}')[("power_input_kw", ("site", "TMV23"))]
    by_second: dict[int, list[float]] = {}
    for ms, value in stored:
        by_second.setdefault(ms // 1000, []).append(value)
    # BAS writes land at :02 (plus latency); seeded history sits on whole minutes and is not logged
    live = [(t, v) for t, v in zip(written_s.tolist(), values.tolist()) if t >= started_s and t % 60]
    assert len(live) > 20
    for t, v in live:
        assert by_second.get(t) == [quantized(v)], f"BAS write at {t} stored as {by_second.get(t)}"
    assert set(SCHEMA) >= {"power", "health"}
