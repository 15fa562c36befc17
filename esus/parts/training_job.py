"""The nightly training job. It runs in its own process (never on the event loop, never in a
thread: a CPU-bound thread would hold the GIL and slow every BACnet reply) and on one core."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from esus.parts.power import POWER_SERIES
from esus.state.store import HistoryStore
from forecast.training import TRAINING_DAYS

if TYPE_CHECKING:
    from forecast.calendar import WorkCalendar

T = TypeVar("T")
#: Live forecasting and training work on a 1-minute grid of the BAS writes.
GRID_STEP_S = 60


def power_grid(store: HistoryStore, start_s: int, end_s: int):
    """The BAS power history between two instants as a clean 1-minute grid (None if too little)."""
    return _grid(*store.range(POWER_SERIES, start_s, end_s))


def _grid(times: np.ndarray, values: np.ndarray):
    from forecast.series import to_grid

    if times.size < 2:
        return None
    try:
        return to_grid(times, values, step_s=GRID_STEP_S)
    except ValueError:
        return None


class RecentPower:
    """The last `days` of power, kept in memory and topped up from the store each minute: the
    live forecast reads a few new rows, not four weeks of history, every minute. The one source
    of recent power: the forecast's grid, the 15-minute mean and the slope all come from it."""

    #: Re-read this much before the newest cached sample: a late or corrected write is picked up.
    REREAD_S = 600

    def __init__(self, store: HistoryStore, days: float) -> None:
        self.store, self.span_s = store, int(days * 86400)
        self.times = np.empty(0, dtype=np.int64)
        self.values = np.empty(0, dtype=np.float64)
        self._covered: tuple[int, int] | None = None  # the cache holds every stored sample in [a, b)

    def grid(self, now_s: int):
        start, end = now_s - self.span_s, now_s + 1
        covered = self._covered
        if covered is not None and covered[0] <= start and covered[1] <= end:
            since = max(covered[1] - self.REREAD_S, start)
            new_t, new_v = self.store.range(POWER_SERIES, since, end)
            keep = (self.times >= start) & (self.times < since)
            self.times = np.concatenate([self.times[keep], new_t])
            self.values = np.concatenate([self.values[keep], new_v])
        else:  # first call, or the clock went back: read the whole window
            self.times, self.values = self.store.range(POWER_SERIES, start, end)
        self._covered = (start, end)
        return _grid(self.times, self.values)

    def last(self, seconds: int, now_s: int) -> tuple[np.ndarray, np.ndarray]:
        """The cached samples of the `seconds` up to `now_s` (after `grid(now_s)` has topped up)."""
        keep = (self.times >= now_s - seconds) & (self.times <= now_s)
        return self.times[keep], self.values[keep]


#: the upper bound the forecast published each minute, at the minute it was published (kW)
UPPER_SERIES = "forecast.upper_kw"


def adapted_level(store: HistoryStore, grid, until_s: int, level: float) -> float:
    """`level` moved by how the bounds published over the day before `until_s` did."""
    from forecast.training import next_level

    times, upper = store.range(UPPER_SERIES, until_s - 86400, until_s)
    slots = np.round((times - grid.t0_s) / grid.step_s).astype(np.int64)
    inside = (slots >= 0) & (slots < len(grid))
    return next_level(level, grid, slots[inside], upper[inside])


#: added to the training process's niceness (lower priority): on a small board BACnet and the
#: shades answer first, training waits
TRAINING_NICENESS = 10


def training_process_setup(niceness: int) -> None:
    """In the training process, first: a lower CPU priority, and (Linux) death with its parent, so a
    `kill -9` of esus does not leave a training running on without anyone to take its model."""
    import ctypes
    import os
    import signal

    os.nice(niceness)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):   # not Linux: the process ends when its queue breaks
        pass
    if os.getppid() == 1:   # the parent died before prctl took effect
        os._exit(1)


def train_from_store(db_path: str, candidate_path: str, until_s: int, days: int = TRAINING_DAYS,
                     calendar: WorkCalendar | None = None, temperature: bool = False,
                     temperature_point: str | None = None, level: float = 0.9) -> dict:
    """Train on the `days` before `until_s` with the site's work `calendar` and, if `temperature`,
    the outdoor temperature the forecast knew (`esus.parts.outdoor`); save to `candidate_path` only
    if sane; report. The bound is calibrated at `level`, first moved by how the bounds published over
    the last day did (adaptive conformal: `forecast.calibration.adapt_level`)."""
    from esus.parts.outdoor import known_temperature
    from forecast.estimators import one_core
    from forecast.training import is_sane, train_validated

    started = time.monotonic()
    with one_core(), HistoryStore(Path(db_path), readonly=True) as store:
        grid = power_grid(store, until_s - days * 86400, until_s)
        if grid is None:
            raise ValueError("no power history to train on")
        if temperature:
            grid = grid.with_temperature(known_temperature(store, grid, temperature_point))
        level = adapted_level(store, grid, until_s, level)
        result = train_validated(grid, calendar=calendar, level=level)
        sane, why = is_sane(result)
        if sane:
            result.model.save(Path(candidate_path))
    info = result.model.info
    return {"sane": sane, "why": why, "rmse_kw": result.rmse_kw,
            "persistence_rmse_kw": result.persistence_rmse_kw, "rows": info.rows,
            "temperature_rows": info.temperature_rows, "temperature_gain_pct": info.temperature_gain_pct,
            "bound_level": level,
            "wall_s": time.monotonic() - started, "cpu_s": info.train_seconds}


async def in_own_process(job: Callable[..., T], *args: Any, timeout_s: float, **kwargs: Any) -> T:
    """`job(*args, **kwargs)` in a spawned process of its own at a low CPU priority, ended when it
    is done, fails, outlives `timeout_s` or is no longer wanted. For the night's CPU-bound work:
    never a thread of the service, whose GIL BACnet needs."""
    import multiprocessing

    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=training_process_setup, initargs=(TRAINING_NICENESS,))
    try:
        return await result_within(pool.submit(job, *args, **kwargs), timeout_s)
    finally:
        end_training_process(pool)


async def result_within(future: Future[T], timeout_s: float) -> T:
    """The result of a `future` of another process or thread, waited for at most `timeout_s`
    (TimeoutError after). Not `asyncio.wait_for`: on Python 3.11 (Debian 12's), a stop that
    cancels it in the same turn of the event loop as the result arrives gets the result instead of
    its cancellation, so the job goes on as if no stop had come, and the stop waits on it for ever."""
    import asyncio

    async with asyncio.timeout(timeout_s):
        return await asyncio.wrap_future(future)


def end_training_process(pool: ProcessPoolExecutor) -> None:
    """Shut the pool down without waiting: a training that hangs, or that a stop of esus no longer
    wants, is ended instead of blocking the event loop until it finishes."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
