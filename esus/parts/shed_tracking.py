"""Did the shed work? Each event's baselines are frozen at its start (from the forecast made before
it and the building's history), what it delivers is followed every reconcile, and the event is
summed up in the ledger when it ends (`demand_response.baseline`, `demand_response.delivered`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import date, datetime
from zoneinfo import ZoneInfo

from demand_response.baseline import (
    INTERVAL_S,
    LOOK_BACK_DAYS,
    Baseline,
    History,
    as_tuple,
    forecast_baseline,
    high_5_of_10,
    interval_starts,
)
from demand_response.delivered import Delivered, EventSummary, delivered, summarize
from demand_response.ledger import Event, Ledger, Override
from forecast.calendar import WorkCalendar
from forecast.features import HORIZON_S, TARGET_WINDOW_S

log = logging.getLogger(__name__)


class ShedTracker:
    def __init__(self, ledger: Ledger, history: History, forecast_kw: Callable[[], float | None],
                 calendar: WorkCalendar, tz: ZoneInfo, clock: Callable[[], float]) -> None:
        """`history(start_s, end_s)`: the building's power samples (epoch s, kW); `forecast_kw()`: the
        hour-ahead forecast published last (None: none)."""
        self.ledger, self.history, self.forecast_kw = ledger, history, forecast_kw
        self.calendar, self.tz, self.clock = calendar, tz, clock
        self.now: Delivered | None = None     # the current interval of the event running now
        #: each running event's overrides as last seen while it ran (what the summary reports)
        self.seen: dict[str, dict[str, str]] = {}

    @staticmethod
    def spans(events: list[Event]) -> dict[str, tuple[float, float, int, bool]]:
        """Each event's first start, last end, highest level, and whether it was cancelled."""
        out: dict[str, tuple[float, float, int, bool]] = {}
        for e in events:
            start, end, level, cancelled = out.get(e.event_id, (e.start_s, e.end_s, e.level, e.cancelled))
            out[e.event_id] = (min(start, e.start_s), max(end, e.end_s), max(level, e.level), cancelled or e.cancelled)
        return out

    async def update(self) -> list[EventSummary]:
        """Freeze the baselines of events that have begun, follow the one running, and sum up those
        that ended; returns the summaries made now."""
        now = self.clock()
        spans, frozen = self.spans(self.ledger.events()), self.ledger.baselines()
        for event_id, (start, end, _, cancelled) in spans.items():
            if event_id not in frozen and not cancelled and start <= now < end:
                frozen[event_id] = await asyncio.to_thread(self.freeze, event_id, start, end)
                self.ledger.put_baseline(frozen[event_id], now)
                log.info("demand response: baseline of event %s frozen (%s)", event_id, frozen[event_id].method)
        running = [b for event_id, b in frozen.items() if event_id in spans and not spans[event_id][3]
                   and spans[event_id][0] <= now < spans[event_id][1]]
        self.now = None
        if running:
            states = override_states(self.ledger.overrides())
            for baseline in running:
                self.seen[baseline.event_id] = states
            current = min(running, key=lambda b: b.start_s)
            index = current.index(now)
            if index is not None:   # only this interval's samples: the earlier ones are not shown live
                times, kw = await asyncio.to_thread(self.history, current.interval_start_s(index), now + 1)
                self.now = delivered(current, times, kw, now + 1)[index]
        summaries = []
        for event_id, baseline in frozen.items():
            start, end, level, cancelled = spans.get(event_id, (baseline.start_s, now, 0, True))
            if now >= end or cancelled:
                summaries.append(await self.sum_up(baseline, level, min(now, end), start))
        return summaries

    async def interval(self, start_s: float) -> Delivered | None:
        """What the shed delivered in the 15 minutes from `start_s`, against the frozen baseline of
        the event that covered them (None: no event did)."""
        for baseline in self.ledger.baselines().values():
            index = baseline.index(start_s)
            if index is not None and baseline.interval_start_s(index) == start_s:
                end_s = start_s + INTERVAL_S
                times, kw = await asyncio.to_thread(self.history, start_s, end_s)
                return delivered(baseline, times, kw, end_s)[index]
        return None

    def freeze(self, event_id: str, start_s: float, end_s: float) -> Baseline:
        """Both baselines for every 15-minute interval of the event (in a worker thread: it reads weeks)."""
        starts = interval_starts(start_s, end_s)
        times, kw = self.history(start_s - (LOOK_BACK_DAYS + 1) * 86400, start_s)
        same_kind = self._same_kind(starts[0])
        standard = high_5_of_10(times, kw, starts, self.tz, self.calendar.working_on)
        # the forecast published last targets the 15 minutes ending an hour after it was made
        forecast_start = self.clock() + HORIZON_S - TARGET_WINDOW_S
        shape, method = forecast_baseline(self.forecast_kw(), forecast_start, starts, times, kw, self.tz, same_kind)
        if self.clock() > start_s + 60:
            method += ", frozen after the event began"
        return Baseline(event_id, float(starts[0]), as_tuple(shape), as_tuple(standard), method)

    def _same_kind(self, start_s: float) -> Callable[[date], bool]:
        working = self.calendar.working_on(datetime.fromtimestamp(start_s, self.tz).date())
        return lambda day: self.calendar.working_on(day) == working

    async def sum_up(self, baseline: Baseline, level: int, end_s: float, start_s: float | None = None
                     ) -> EventSummary:
        """The event's summary, from `start_s` (when it began; its baseline starts with the quarter
        hour it began in) to `end_s`."""
        times, kw = await asyncio.to_thread(self.history, baseline.start_s, end_s)
        rows = delivered(baseline, times, kw, end_s)
        states = self.seen.pop(baseline.event_id, None) or override_states(self.ledger.overrides())
        summary = summarize(baseline, level, end_s, rows, states, start_s)
        self.ledger.put_summary(summary)
        log.info("demand response: %s", summary.line())
        return summary


def override_states(overrides: dict[str, Override]) -> dict[str, str]:
    """Each override as the event's summary keeps it: its state, why it failed, whether another writer
    outranked it, how often the controller lost it."""
    return {name: o.state + (f" ({o.error})" if o.error else "")
            + (f", outranked by priority {o.outranked_by}" if o.outranked_by else "")
            + ("" if not o.lost else ", lost once" if o.lost == 1 else f", lost {o.lost} times")
            for name, o in overrides.items()}
