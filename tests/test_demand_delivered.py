"""Did the shed work? A scene: a bacpypes3 controller whose shed setpoint takes 8 kW off a simulated
building, whose BAS writes its power every minute. esus freezes the event's baselines at its start,
shows the shed delivered on BACnet and in InfluxDB while it runs, and sums the event up after it."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from demand_response.ledger import Event
from esus.parts.bacnet import BacnetBridge
from esus.parts.demand import DemandService
from esus.parts.power import POWER_SERIES, PowerInput
from esus.runtime.clock import ManualClock
from esus.settings.config import example_site_path, load_settings
from esus.state.outbox import Outbox
from esus.state.store import HistoryStore
from esus.state.telemetry import Telemetry
from tests.bacnet_harness import free_udp_port
from tests.dr_targets import start_target
from tests.test_demand_response_shed import in_loop

TZ = ZoneInfo("Europe/Copenhagen")
START = datetime(2026, 7, 15, 13, 0, tzinfo=TZ)        # a Wednesday
EVENT = (datetime(2026, 7, 15, 14, 0, tzinfo=TZ), datetime(2026, 7, 15, 15, 0, tzinfo=TZ))
SHED_KW = 8.0


def building_kw(t: datetime, rng: np.random.Generator) -> float:
    """An office: 20 kW, 25 kW more in working hours on weekdays, a little noise."""
    local = t.astimezone(TZ)
    working = local.weekday() < 5 and 7 <= local.hour < 18
    return 20.0 + 25.0 * working + float(rng.normal(0, 0.6))


def site_with_ahu(tmp: Path, address: str) -> Path:
    site = tmp / "site.toml"
    shutil.copy(example_site_path(), site)
    with site.open("a") as f:
        f.write(f'''
[[demand_response.actions]]
name = "AHU-1 supply air setpoint"
address = "{address}"
object = "analog-value,1"
values = {{ 1 = 21.0, 2 = 22.0 }}
''')
    return site


@pytest.mark.slow
@in_loop
async def test_the_shed_delivered_is_measured_against_baselines_frozen_at_the_start(tmp_path: Path) -> None:
    target = start_target(731)
    settings = load_settings({"ESUS_SITE": str(site_with_ahu(tmp_path, target.address)),
                              "ESUS_BACNET_ADDRESS": f"127.0.0.1/8:{free_udp_port()}",
                              "ESUS_STATE_DIR": str(tmp_path / "state")}, demo=False)
    rng = np.random.default_rng(11)
    store = HistoryStore(tmp_path / "history.db")
    past = [START - timedelta(minutes=m) for m in range(21 * 1440, 0, -1)]
    store.append_many({POWER_SERIES: [(t, building_kw(t, rng)) for t in past]})
    clock = ManualClock(START)
    outbox = Outbox(store)
    telemetry = Telemetry(outbox, "tmv23")
    power = PowerInput(telemetry, clock, min_kw=0, max_kw=500, stale_after=timedelta(minutes=5))
    bridge = BacnetBridge(settings, power)
    await bridge.start()
    demand = DemandService(settings, bridge, power, clock, telemetry,
                           history=lambda a, b: store.range(POWER_SERIES, a, b), forecast_kw=lambda: 45.0)
    demand.shedder.put_event(Event("e1", 2, EVENT[0].timestamp(), EVENT[1].timestamp()))
    device = bridge.device
    seen: list[tuple[float, float]] = []
    try:
        while clock.now() < EVENT[1] + timedelta(minutes=5):
            shed = target.slot("analog-value,1", 10) == 22.0          # the controller holds the shed setpoint
            if not EVENT[0] + timedelta(minutes=30) <= clock.now() < EVENT[0] + timedelta(minutes=45):
                power.write(building_kw(clock.now(), rng) - (SHED_KW if shed else 0.0))   # the BAS's minute
            await demand.tick()
            if EVENT[0] + timedelta(minutes=30) <= clock.now() < EVENT[0] + timedelta(minutes=45):
                # the BAS stopped writing: no power measured in this interval, so no number for it
                if clock.now() >= EVENT[0] + timedelta(minutes=31):
                    assert device.reliability("dr-shed-delivered") in ("noSensor", "communicationFailure")
            elif EVENT[0] + timedelta(minutes=2) <= clock.now() < EVENT[1]:
                assert device.reliability("dr-shed-delivered") == "noFaultDetected"
                seen.append((float(device.present_value("dr-baseline")),
                             float(device.present_value("dr-shed-delivered"))))
            clock.jump(60)
        baselines = [b for b, _ in seen]
        delivered = [d for _, d in seen]
        assert min(baselines) == pytest.approx(45.0, abs=1.5) and max(baselines) == pytest.approx(45.0, abs=1.5)
        assert np.median(delivered) == pytest.approx(SHED_KW, abs=1.5)
        assert target.slot("analog-value,1", 10) is None                # released after the event
        assert float(device.present_value("dr-shed-delivered")) == 0.0

        summary = demand.ledger.summaries()[0]
        assert summary.event_id == "e1" and summary.level == 2 and summary.intervals == 3   # one interval unmeasured
        assert summary.mean_shed_kw == pytest.approx(SHED_KW, abs=1.0)
        assert summary.kwh_shed == pytest.approx(SHED_KW * 0.75, abs=0.8)
        assert summary.standard_mean_shed_kw == pytest.approx(SHED_KW, abs=1.5)
        assert summary.overrides == {"AHU-1 supply air setpoint": "active"}
        assert demand.ledger.baselines() == {}
        lines = outbox.oldest(100_000).lines   # type: ignore[union-attr]
        assert any(line.startswith("demand_response,") and "shed_kw=" in line and "baseline_kw=" in line
                   for line in lines)
        # each interval once, at its end: the event in it, and the shed it delivered (none where unmeasured)
        intervals = {int(text.rsplit(" ", 1)[1]) // 1000: text for text in lines if text.startswith("interval_15min,")}
        quarter_hours = [(START + timedelta(minutes=15 * q)).timestamp() for q in range(1, 9)]
        assert sorted(intervals) == quarter_hours
        for end_s, text in intervals.items():
            in_event = EVENT[0].timestamp() < end_s <= EVENT[1].timestamp()
            assert f"event_active={int(in_event)}" in text, text
            unmeasured = end_s == (EVENT[0] + timedelta(minutes=45)).timestamp()
            shed = re.search(r"shed_kw=([-0-9.e]+)", text)
            assert (shed is not None) == (in_event and not unmeasured), text
            if shed is not None:
                assert float(shed.group(1)) == pytest.approx(SHED_KW, abs=1.5), text
    finally:
        bridge.close()
        demand.close()
        target.close()
        store.close()
