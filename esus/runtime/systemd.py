"""systemd integration with the standard library: sd_notify readiness, status and watchdog."""

from __future__ import annotations

import os
import socket


def notify(state: str, environ: dict[str, str] | None = None) -> bool:
    """Send a state string (READY=1, WATCHDOG=1, STATUS=..., STOPPING=1) to systemd, if it listens."""
    address = (environ or os.environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True


def watchdog_period_s(environ: dict[str, str] | None = None) -> float | None:
    """Half the watchdog timeout systemd asked for (WATCHDOG_USEC), or None without a watchdog."""
    env = environ or os.environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6 / 2
    except ValueError:
        return None
