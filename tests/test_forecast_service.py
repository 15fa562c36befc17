"""The forecast in the service: trains in another process, swaps when sane, survives crashes and
restarts, and publishes to BACnet."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from esus.parts.bacnet import BacnetBridge
from esus.runtime.clock import ManualClock
from esus.settings.config import load_settings
from esus.parts.forecasting import ForecastService
from esus.state.outbox import Outbox
from esus.parts.power import POWER_SERIES, PowerInput
from esus.state.store import HistoryStore
from esus.state.telemetry import Telemetry
from tests.bacnet_harness import free_udp_port
from tests.synthetic import office_power

NOW = datetime(2026, 6, 22, 0, 0, tzinfo=UTC)


def build(tmp_path: Path, days: int = 16, now: datetime = NOW) -> tuple[ForecastService, BacnetBridge, ManualClock]:
    settings = load_settings({"ESUS_BACNET_ADDRESS": f"127.0.0.1/8:{free_udp_port()}",
                              "ESUS_STATE_DIR": str(tmp_path / "state")}, demo=True)
    store = HistoryStore(settings.state_dir / "history.db")
    if store.latest(POWER_SERIES) is None:
        grid = office_power(days, step_s=60, start_s=int(NOW.timestamp()) - days * 86400)
        store.append_many({POWER_SERIES: list(zip(grid.times_s().tolist(), grid.values.tolist()))})
    clock = ManualClock(now)
    power = PowerInput(Telemetry(Outbox(store), "t"), clock, min_kw=-50, max_kw=500,
                       stale_after=timedelta(minutes=5))
    bridge = BacnetBridge(settings, power)
    return ForecastService(settings, store, power, bridge, clock), bridge, clock


async def started(service: ForecastService, bridge: BacnetBridge) -> None:
    await bridge.start()
    await service.minute_tick(service.clock.now())


def test_training_swaps_in_a_sane_model_and_a_restart_reloads_it(tmp_path: Path) -> None:
    async def first_run() -> tuple[float, float]:
        service, bridge, clock = build(tmp_path)
        try:
            await started(service, bridge)
            assert service.model is None
            assert service.live.forecast.method == "seasonal naive (last week)"
            await service.nightly_training(NOW)
            assert service.model is not None and service.model_path.exists()
            assert not service.model_path.with_name("power-model.npz.candidate").exists()
            assert service.store.get_state("forecast.bound_level") == service.last_training["bound_level"] == 0.9
            await service.minute_tick(NOW)
            assert service.live.forecast.method == "model"
            assert service.store.latest("forecast.upper_kw")[1] == pytest.approx(service.live.forecast.upper_kw)
            assert float(bridge.device.present_value("model-rmse")) == pytest.approx(service.model.info.rmse_kw)
            assert bridge.device.reliability("one-hour-future-power") == "noFaultDetected"
            assert "method: model" in str(bridge.device.objects["one-hour-future-power"].description)
            assert float(bridge.device.present_value("high-load-threshold")) > float(
                bridge.device.present_value("low-load-threshold"))
            return service.live.forecast.kw, service.model.info.rmse_kw
        finally:
            bridge.close()
            service.store.close()

    async def restart() -> tuple[float, float]:
        service, bridge, _ = build(tmp_path)
        try:
            assert service.model is not None  # loaded from disk, before any training
            await started(service, bridge)
            return service.live.forecast.kw, service.model.info.rmse_kw
        finally:
            bridge.close()
            service.store.close()

    before = asyncio.run(first_run())
    assert asyncio.run(restart()) == before


@pytest.mark.parametrize("job", ["crash", "raise_error", "hang"])
def test_a_failed_training_keeps_the_old_model(tmp_path: Path, job: str, caplog: pytest.LogCaptureFixture) -> None:
    import tests.forecast_jobs as jobs

    async def scenario() -> None:
        service, bridge, _ = build(tmp_path)
        try:
            await started(service, bridge)
            await service.nightly_training(NOW)
            good = service.model
            mtime = service.model_path.stat().st_mtime_ns
            service.job, service.training_timeout_s = getattr(jobs, job), 5.0
            with caplog.at_level(logging.ERROR):
                await asyncio.wait_for(service.nightly_training(NOW + timedelta(days=1)), 30)  # a hang is ended
            assert service.model is good and service.training_failures == 1
            assert service.model_path.stat().st_mtime_ns == mtime
            assert "forecast training failed" in caplog.text and "retrying next night" in caplog.text
            await service.minute_tick(NOW)
            assert service.live.forecast.method == "model"
        finally:
            bridge.close()
            service.store.close()

    asyncio.run(scenario())


def test_an_earlier_release_s_pickled_model_is_never_loaded_and_said_once(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    old = tmp_path / "state" / "model" / "power-model.pkl"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"\x80\x04anything")
    service, _, _ = build(tmp_path)
    assert service.model is None and old.exists()
    assert caplog.text.count("power-model.pkl is an earlier release's model file (a pickle), which esus no longer "
                             "loads") == 1
    service.store.close()


def test_a_damaged_model_file_falls_back_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = tmp_path / "state" / "model" / "power-model.npz"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"\x80\x04garbage")
    service, bridge, _ = build(tmp_path)
    assert service.model is None
    assert "power-model.npz is damaged" in caplog.text and "the fallback forecasts until the next training" in caplog.text
    assert not model.exists() and list(model.parent.glob("power-model.npz.corrupt-*"))
    service.store.close()


def test_stale_power_is_not_forecast_as_live(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, bridge, clock = build(tmp_path)
        try:
            await bridge.start()
            clock.jump(3600)  # the BAS has not written for an hour
            await service.minute_tick(clock.now())
            bridge.refresh_power_health()
            assert bridge.device.reliability("one-hour-future-power") in ("noSensor", "communicationFailure")
        finally:
            bridge.close()
            service.store.close()
    asyncio.run(scenario())


def test_recent_power_window_matches_a_fresh_read_as_minutes_pass(tmp_path: Path) -> None:
    """The live window topped up each minute equals reading it whole, through a late correction,
    a gap in the writes and a jump of the clock."""
    import numpy as np

    from esus.parts.training_job import RecentPower, power_grid

    store = HistoryStore(tmp_path / "h.db")
    t0 = 1_780_000_000 // 60 * 60
    store.append_many({POWER_SERIES: [(float(t0 + 60 * i), 10.0 + i % 7) for i in range(3 * 1440)]})
    recent = RecentPower(store, days=2)
    now = t0 + 60 * (3 * 1440 - 1)
    for step in range(40):
        now += 60
        if step != 10:  # a minute the BAS missed
            store.append_many({POWER_SERIES: [(float(now), 20.0 + step)]})
        if step == 20:  # the BAS corrects the value of five minutes ago
            store.append_many({POWER_SERIES: [(float(now - 300), -1.0)]})
        if step == 30:
            now += 5 * 86400  # the clock jumps ahead further than the window
            store.append_many({POWER_SERIES: [(float(now - 60 * i), 5.0) for i in range(200)]})
        live, whole = recent.grid(now), power_grid(store, now - 2 * 86400, now + 1)
        assert live.t0_s == whole.t0_s and np.array_equal(live.values, whole.values, equal_nan=True), step
        last_t, last_v = recent.last(900, now)   # the 15 minutes the mean and the slope are taken from
        read_t, read_v = store.range(POWER_SERIES, now - 900, now + 1)
        assert np.array_equal(last_t, read_t) and np.array_equal(last_v, read_v), step
    store.close()


def test_a_stop_during_training_ends_the_training_process_at_once(tmp_path: Path) -> None:
    """systemd stops esus within its timeout even in the middle of a night's training."""
    import multiprocessing
    import time

    import tests.forecast_jobs as jobs

    async def scenario() -> float:
        service, bridge, _ = build(tmp_path)
        try:
            await started(service, bridge)
            service.job = jobs.hang
            training = asyncio.create_task(service.nightly_training(NOW))
            await asyncio.sleep(3)                      # the training process is running
            started_stop = time.monotonic()
            training.cancel()
            with pytest.raises(asyncio.CancelledError):
                await training
            return time.monotonic() - started_stop
        finally:
            bridge.close()
            service.store.close()

    assert asyncio.run(scenario()) < 5
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in multiprocessing.active_children() if p.is_alive()]


PARENT = """
import multiprocessing, sys, time
from concurrent.futures import ProcessPoolExecutor
from esus.parts.training_job import training_process_setup
import tests.forecast_jobs as jobs

pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                           initializer=training_process_setup, initargs=(10,))
pool.submit(jobs.hang)
time.sleep(2)
print(*[p.pid for p in multiprocessing.active_children()], flush=True)
time.sleep(600)
"""


def test_a_kill_9_of_esus_ends_its_training_process_too(tmp_path: Path) -> None:
    """Outside systemd nothing else would end it: a training whose parent is gone runs on for
    nothing (found as a 190 MB process left after a test's service was killed)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parent.parent
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, cwd=root,
                              env=dict(os.environ, PYTHONPATH=str(root)))
    children: list[int] = []
    try:
        children = [int(pid) for pid in parent.stdout.readline().split()]   # type: ignore[union-attr]
        assert children, "the training process did not start"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in children):
            time.sleep(0.1)
        alive = [pid for pid in children if Path(f"/proc/{pid}").exists()
                 and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]]
        assert not alive, f"training process(es) {alive} outlived their parent"
    finally:
        parent.kill()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_each_quarter_hour_is_logged_once_with_its_mean_and_the_forecast_made_for_it(tmp_path: Path) -> None:
    """The portfolio's day-long charts read one line per interval: the measured mean at its end, and
    the forecast made on the quarter hour at the end of the interval it forecasts."""
    async def scenario() -> None:
        service, bridge, clock = build(tmp_path)
        service.telemetry = telemetry = service.power.telemetry
        try:
            await bridge.start()
            for minute in range(31):
                if minute < 15:   # then the BAS stops writing
                    service.power.write(100.0 + minute)
                await service.minute_tick(clock.now())
                clock.jump(60)
            batch = telemetry.outbox.oldest(10_000)
            assert batch is not None
            intervals = [text for text in batch.lines if text.startswith("interval_15min,")]
            quarter = int((NOW + timedelta(minutes=15)).timestamp() * 1000)
            # 00:15: minutes 0..14 measured (107 kW), and the forecast for 01:15; 00:30: no power,
            # so neither a mean nor (stale) a forecast
            assert len(intervals) == 2
            assert intervals[0] == f"interval_15min,site=t mean_kw=107 {quarter}"
            assert re.fullmatch(rf"interval_15min,site=t forecast_kw=[0-9.]+,forecast_upper_kw=[0-9.]+ "
                                rf"{quarter + 3_600_000}", intervals[1])
        finally:
            bridge.close()
            service.store.close()
    asyncio.run(scenario())


def test_a_restart_takes_up_the_load_flags_where_they_were(tmp_path: Path) -> None:
    """A low-load flag held before a restart is held after it, not dropped for a dwell and raised
    again (the BAS would act twice); a flag kept long ago is not trusted."""
    async def run(minutes_later: float) -> tuple[bool, bool]:
        service, bridge, clock = build(tmp_path, now=NOW + timedelta(minutes=minutes_later))
        try:
            return service.high.state, service.low.state
        finally:
            bridge.close()
            service.store.close()

    async def set_low() -> None:
        service, bridge, clock = build(tmp_path)
        try:
            await started(service, bridge)
            service.low.state = True               # as a quiet night leaves it
            await service.minute_tick(clock.now())
            assert service.low.state and str(bridge.device.present_value("low-load-conditions")) == "active"
        finally:
            bridge.close()
            service.store.close()

    asyncio.run(set_low())
    assert asyncio.run(run(minutes_later=2)) == (False, True)
    assert asyncio.run(run(minutes_later=90)) == (False, False)
