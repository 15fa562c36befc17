"""A real time-series server for tests: Debian's victoria-metrics, which accepts InfluxDB's
/api/v2/write. Started on a loopback port with deduplication (so a replayed line is stored once,
as InfluxDB overwrites it), stopped with SIGTERM; the data directory survives a restart."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

BINARY = shutil.which("victoria-metrics")


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str, status: int) -> Callable[[], bool]:
    """A probe: the server answers `url` with `status`."""
    def probe() -> bool:
        try:
            return requests.get(url, timeout=1).status_code == status
        except requests.ConnectionError:
            return False
    probe.__doc__ = f"answer {url} with {status}"
    return probe


def listens(port: int, host: str = "127.0.0.1") -> Callable[[], bool]:
    """A probe: the server accepts a TCP connection on `port`."""
    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            return False
    probe.__doc__ = f"listen on {host}:{port}"
    return probe


def wait_until_up(process: subprocess.Popen, probe: Callable[[], bool], timeout_s: float = 30,
                  log: Path | None = None) -> None:
    """Until a server just started passes `probe`; says why it did not (it exited, with its log's
    tail, or never came up)."""
    name = Path(str(process.args[0])).name
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{name} exited with status {process.returncode} at start {tail}")
        if probe():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not {probe.__doc__} within {timeout_s:.0f} s")


def stop_server(process: subprocess.Popen | None) -> None:
    """SIGTERM, and wait for it to flush and exit."""
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


class VictoriaMetrics:
    def __init__(self, data_dir: Path) -> None:
        if BINARY is None:
            pytest.fail("victoria-metrics is not installed: run scripts/test (it installs it) "
                        "or apt-get install victoria-metrics")
        self.data_dir, self.port = data_dir, free_tcp_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> VictoriaMetrics:
        self.process = subprocess.Popen(
            [BINARY, f"-storageDataPath={self.data_dir}", f"-httpListenAddr=127.0.0.1:{self.port}",
             "-dedup.minScrapeInterval=1ms", "-retentionPeriod=100y", "-search.latencyOffset=0s",
             "-loggerLevel=ERROR"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_up(self.process, answers(f"{self.url}/health", 200))
        return self

    def stop(self) -> None:
        stop_server(self.process)
        self.process = None

    def export(self, match: str = '{__name__=~".+"}') -> dict[tuple, list[tuple[int, float]]]:
        """Every stored sample: {(metric name, sorted labels...): [(ms, value), ...]}."""
        requests.get(f"{self.url}/internal/force_flush", timeout=10)
        reply = requests.post(f"{self.url}/api/v1/export", timeout=30,
                              data={"match[]": match, "start": "0", "end": str(int(time.time()) + 10 * 365 * 86400)})
        reply.raise_for_status()
        out: dict[tuple, list[tuple[int, float]]] = {}
        for row in reply.text.splitlines():
            item = json.loads(row)
            labels = dict(item["metric"])
            key = (labels.pop("__name__"),) + tuple(sorted(labels.items()))
            out.setdefault(key, []).extend(zip(item["timestamps"], item["values"]))
        return out
