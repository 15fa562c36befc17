"""A real MQTT broker for tests: Debian's mosquitto on a loopback port, anonymous, in its own
directory, stopped with SIGTERM (the OpenADR 3.1 VTN's notifier)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.tsdb import free_tcp_port, listens, stop_server, wait_until_up

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
        wait_until_up(self.process, listens(self.port), timeout_s=20, log=self.root / "mosquitto.log")
        return self

    def stop(self) -> None:
        stop_server(self.process)
        self.process = None
