"""A real MQTT broker for tests: Debian's mosquitto on a loopback port, anonymous, in its own
directory, stopped with SIGTERM (the OpenADR 3.1 VTN's notifier)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.tsdb import free_tcp_port, stop_server

BINARY = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
MISSING = "mosquitto is not installed: run scripts/test (it installs it) or apt-get install mosquitto"


class Mosquitto:
    def __init__(self, root: Path) -> None:
        if BINARY is None:
            raise RuntimeError(MISSING)
        self.root, self.port = root, free_tcp_port()
        self.config = root / "mosquitto.conf"
        root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                               f"log_dest file {root / 'mosquitto.log'}\n")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        self.process = subprocess.Popen([str(BINARY), "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with status {self.process.returncode} at start")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{self.port} within 20 s")

    def stop(self) -> None:
        stop_server(self.process)
        self.process = None
