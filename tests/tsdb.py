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
from pathlib import Path

import pytest
import requests

BINARY = shutil.which("victoria-metrics")


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(process: subprocess.Popen, url: str, status: int, timeout_s: float = 30,
                  log: Path | None = None) -> None:
    """Until a server just started answers `url` with `status`; says why it did not (it exited,
    with its log's tail, or never answered)."""
    name = Path(str(process.args[0])).name
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{name} exited with status {process.returncode} at start {tail}")
        try:
            if requests.get(url, timeout=1).status_code == status:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer {url} within {timeout_s:.0f} s")


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
        wait_until_up(self.process, f"{self.url}/health", 200)
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
