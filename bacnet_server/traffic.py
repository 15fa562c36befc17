"""Bad traffic is counted, not logged datagram by datagram.

bacpypes3 logs each datagram it cannot decode as an ERROR with a traceback (11 lines), and each
message type it does not handle as a WARNING: 10,000 mutated datagrams wrote 13 MB of log in
14 s, which on a Pi's SD card is a wear and disk-fill attack anyone on the OT LAN can make. Here
those records are held back, counted by reason, and said in one line at most once a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

log = logging.getLogger(__name__)

#: The bacpypes3 loggers that speak once per bad datagram.
PER_DATAGRAM_LOGGERS = ("bacpypes3.ipv4.IPv4DatagramServer", "bacpypes3.ipv4.service.UDPMultiplexer",
                        "bacpypes3.app.Application")
SUMMARY_EVERY_S = 60.0


def reason(record: logging.LogRecord) -> str:
    """A short, stable name for why a datagram was refused (the exception and its first words)."""
    error = record.args[0] if isinstance(record.args, tuple) and record.args else None
    if isinstance(error, BaseException):
        words = " ".join(str(error).split()[:3])
        return f"{type(error).__name__}: {words}" if words else type(error).__name__
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        return f"{type(exc).__name__}: {' '.join(str(exc).split()[:3])}"
    return " ".join(record.getMessage().split()[:3])


class BadTrafficSummary(logging.Filter):
    """A filter on bacpypes3's per-datagram loggers: swallows their records and says, at most once
    a minute, how many there were and why."""

    def __init__(self, every_s: float = SUMMARY_EVERY_S) -> None:
        super().__init__()
        self.every_s = every_s
        self.window: Counter[str] = Counter()   # since the last summary
        self.total = 0
        self._since = time.monotonic()
        self._flush_on: asyncio.AbstractEventLoop | None = None   # the loop a tail flush is scheduled on

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        self.note(reason(record))
        return False

    def note(self, why: str) -> None:
        """Count one more datagram (or unanswered notification) for this reason."""
        self.window[why] += 1
        self.total += 1
        if time.monotonic() - self._since >= self.every_s:
            self.flush()
            return
        try:   # the tail of a burst is said too, a minute after it began
            loop = asyncio.get_running_loop()
        except RuntimeError:   # no event loop in this thread: said with the next record
            return
        if self._flush_on is not loop:
            loop.call_later(self.every_s, self._scheduled_flush)
            self._flush_on = loop

    def _scheduled_flush(self) -> None:
        self._flush_on = None
        self.flush()

    def flush(self) -> None:
        """Say what was held back since the last summary, if anything."""
        if self.window:
            seconds = time.monotonic() - self._since
            reasons = ", ".join(f"{n:,} {why}" for why, n in self.window.most_common(5))
            more = f" and {len(self.window) - 5} other reasons" if len(self.window) > 5 else ""
            log.warning("BACnet: %s malformed, unsupported or unanswered datagrams in the last %.0f s (%s%s); "
                        "the device answers on", f"{sum(self.window.values()):,}", seconds, reasons, more)
            self.window.clear()
        self._since = time.monotonic()


_summary: BadTrafficSummary | None = None


def quiet_bad_traffic() -> BadTrafficSummary:
    """Install the summary on bacpypes3's per-datagram loggers (once per process) and return it."""
    global _summary
    if _summary is None:
        _summary = BadTrafficSummary()
        for name in PER_DATAGRAM_LOGGERS:
            logging.getLogger(name).addFilter(_summary)
    return _summary
