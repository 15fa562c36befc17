"""A real InfluxDB 1.x for the dashboard tests and the portfolio bench: Debian's `influxdb` (1.6,
InfluxQL; it has /write and /query but no /api/v2/write). Started on loopback ports in its own
directory, stopped with SIGTERM."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import requests

from tests.tsdb import answers, free_tcp_port, stop_server, wait_until_up

BINARY = shutil.which("influxd")
MISSING = "influxd is not installed: run scripts/test (it installs it) or apt-get install influxdb"

CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{root}/meta"
  logging-enabled = false
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  index-version = "{index}"
  query-log-enabled = false
  max-series-per-database = 0
  max-values-per-tag = 0
  cache-snapshot-write-cold-duration = "{cold}"
  compact-full-write-cold-duration = "{cold_full}"
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  max-body-size = 0
[continuous_queries]
  enabled = false
"""


class InfluxV1:
    def __init__(self, root: Path, index: str = "inmem", cold: str = "10m", cold_full: str = "4h") -> None:
        """`cold`, `cold_full`: how long a shard waits without writes before its cache is written
        to TSM files and fully compacted (the bench shortens them to measure the disk at rest)."""
        if BINARY is None:
            raise RuntimeError(MISSING)
        self.root, self.index, self.cold, self.cold_full = root, index, cold, cold_full
        self.port = 0
        self.url = ""
        self.config = root / "influxdb.conf"
        root.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None
        self.session = requests.Session()

    def start(self, attempts: int = 3) -> InfluxV1:
        """On two free loopback ports; again on others when one was taken meanwhile (a free port
        is only free until another process, or an outgoing connection, takes it)."""
        for attempt in range(attempts):
            if not self.port or attempt:
                self.port = free_tcp_port()
                rpc_port = next(p for p in iter(free_tcp_port, None) if p != self.port)
                self.url = f"http://127.0.0.1:{self.port}"
                self.config.write_text(CONFIG.format(root=self.root, rpc_port=rpc_port, http_port=self.port,
                                                     index=self.index, cold=self.cold, cold_full=self.cold_full))
            self.process = subprocess.Popen([BINARY, "-config", str(self.config)], stdout=subprocess.DEVNULL,
                                            stderr=open(self.root / "influxd.log", "ab"))
            try:
                wait_until_up(self.process, answers(f"{self.url}/ping", 204), log=self.root / "influxd.log")
                return self
            except RuntimeError as exc:
                if "address already in use" not in str(exc) or attempt + 1 == attempts:
                    raise
        return self

    def stop(self) -> None:
        stop_server(self.process)
        self.process = None

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"', method="POST")

    def write(self, database: str, lines: list[str], precision: str = "ms") -> None:
        reply = self.session.post(f"{self.url}/write", params={"db": database, "precision": precision},
                                  data="\n".join(lines).encode(), timeout=120)
        if reply.status_code != 204:
            raise RuntimeError(f"/write answered {reply.status_code}: {reply.text[:500]}")

    def query(self, text: str, database: str = "", method: str = "GET") -> list[dict]:
        """The statement results of one /query call (epoch ms); an error in any statement raises."""
        params = {"q": text, "epoch": "ms"}
        if database:
            params["db"] = database
        reply = self.session.request(method, f"{self.url}/query", params=params, timeout=120)
        body = reply.json()
        if reply.status_code != 200 or "error" in body:
            raise RuntimeError(f"/query answered {reply.status_code}: {body.get('error')} ({text})")
        results = body.get("results", [])
        for result in results:
            if "error" in result:
                raise RuntimeError(f"{result['error']} ({text})")
        return results

    def disk_bytes(self, pattern: str = "*") -> int:
        """Bytes allocated on disk (sparse files count what they use) under data/ and wal/."""
        return sum(p.stat().st_blocks * 512 for folder in ("data", "wal")
                   for p in (self.root / folder).rglob(pattern) if p.is_file())
