"""A stop of esus ends, and a part that keeps it from ending is named.

Seen on Debian 12's Python 3.11 under emulation: a night job's result came in the same turn of the
event loop as the stop's cancellation, `asyncio.wait_for` handed the job the result instead of the
cancellation, the job's loop went on, and the stop waited on it for ever."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time

import pytest

from esus.parts.training_job import result_within
from esus.runtime.supervisor import end_tasks


def test_a_result_that_arrives_with_the_stop_does_not_hide_the_stop() -> None:
    async def scenario() -> None:
        future: concurrent.futures.Future[str] = concurrent.futures.Future()
        waiter = asyncio.create_task(result_within(future, 60.0))
        await asyncio.sleep(0)            # the job waits on the training process
        future.set_result("a model")      # whose result comes in...
        waiter.cancel()                   # ...in the same turn of the loop as the stop
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(scenario())


def test_a_result_that_outlives_its_time_is_a_timeout() -> None:
    async def scenario() -> None:
        with pytest.raises(TimeoutError):
            await result_within(concurrent.futures.Future(), 0.05)

    asyncio.run(scenario())


async def _deaf_once(ready: asyncio.Event, freed: asyncio.Event) -> None:
    """A loop that takes the first cancellation for a result, as the job did (then the second)."""
    ready.set()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        pass
    await asyncio.sleep(3600)


async def _deaf(ready: asyncio.Event, freed: asyncio.Event) -> None:
    """Takes no cancellation at all until the test frees it."""
    ready.set()
    while not freed.is_set():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue


@pytest.mark.parametrize("loop, left", [(_deaf_once, False), (_deaf, True)])
def test_a_task_that_takes_no_cancellation_is_named_and_the_stop_goes_on(
        loop, left: bool, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[float, asyncio.Task[None]]:
        ready, freed = asyncio.Event(), asyncio.Event()
        stuck = asyncio.create_task(loop(ready, freed), name="job:forecast-training")
        well = asyncio.create_task(asyncio.sleep(3600), name="job:minute")
        await ready.wait()
        started = time.monotonic()
        await end_tasks([stuck, well], limit_s=0.2)
        waited = time.monotonic() - started
        assert well.cancelled()
        assert stuck.done() is not left
        freed.set()
        stuck.cancel()   # as asyncio.run does with a task left behind; freed, this one ends
        return waited, stuck

    with caplog.at_level(logging.ERROR, logger="esus.runtime.supervisor"):
        waited, _ = asyncio.run(scenario())
    said = caplog.text
    assert "job:forecast-training still runs 0.2 s after its cancellation, at _deaf" in said
    assert "test_stop.py" in said                           # where it waits, to the line
    assert "job:minute" not in said.split("the other tasks:")[0]   # the one that ended is not blamed
    assert ("stopping without waiting longer for job:forecast-training" in said) is left
    assert waited >= 0.2 and waited < 0.2 + 1.0 + 10.0      # bounded, with room for a busy machine


def test_a_stop_with_nothing_stuck_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        tasks = [asyncio.create_task(asyncio.sleep(3600), name=f"job:{n}") for n in range(3)]
        await asyncio.sleep(0)
        await end_tasks(tasks, limit_s=5.0)
        assert all(t.cancelled() for t in tasks)

    with caplog.at_level(logging.ERROR, logger="esus.runtime.supervisor"):
        asyncio.run(scenario())
    assert caplog.text == ""
