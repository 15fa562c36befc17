"""Demand response sheds: real BACnet writes to bacpypes3 controllers on loopback, the ledger
across restarts, overlapping and cancelled events, operator releases, a controller that does not answer."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from bacpypes3.basetypes import PriorityValue

from bacnet_server.client import BacnetClient
from demand_response.actions import ShedAction
from demand_response.ledger import Event, Ledger
from demand_response.shedder import Shedder
from esus.parts.demand import ShedPointWriter
from tests.bacnet_harness import free_udp_port
from tests.dr_targets import Target, start_client, start_target

T0 = 1_780_000_000.0  # epoch seconds; the tests move this clock by hand


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))
    return run


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def actions(target: Target, *, dead_address: str | None = None) -> list[ShedAction]:
    return [
        ShedAction("supply air +3 K", target.address, "analog-value,1", {1: 21.0, 2: 22.0}),
        ShedAction("chiller limit", target.address, "analog-output,2", {1: 70.0, 2: 50.0}, priority=9),
        ShedAction("fan off", dead_address or target.address, "binary-output,3", {2: "inactive"}),
    ]


class RecordingWriter(ShedPointWriter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[str, object]] = []

    async def write(self, action: ShedAction, value: Any) -> None:
        self.sent.append((action.name, value))
        await super().write(action, value)


class Scene:
    def __init__(self, tmp: Path, *, dead_address: str | None = None, writer_timeout_s: float = 2.0) -> None:
        self.tmp, self.dead_address, self.writer_timeout_s = tmp, dead_address, writer_timeout_s
        self.clock = Clock()
        self.pauses: list[float] = []

    async def __aenter__(self) -> Scene:
        self.target = start_target(701)
        self.client = start_client()
        self.start_shedder()
        return self

    def start_shedder(self) -> None:
        """A fresh shedder on the same ledger file: what a restart of esus does."""
        async def pause(seconds: float) -> None:
            self.pauses.append(seconds)
            await asyncio.sleep(0)
        self.ledger = Ledger(self.tmp / "dr.sqlite")
        self.writer = RecordingWriter(BacnetClient(self.client, timeout_s=self.writer_timeout_s))
        self.shedder = Shedder(actions(self.target, dead_address=self.dead_address), self.ledger, self.writer,
                               stage_delay_s=5.0, clock=self.clock, sleep=pause)

    def slots(self) -> dict[str, object]:
        return {"sp": self.target.slot("analog-value,1", 10), "limit": self.target.slot("analog-output,2", 9),
                "fan": self.target.slot("binary-output,3", 10)}

    def states(self) -> dict[str, str]:
        return {name: o.state for name, o in self.ledger.overrides().items()}

    async def __aexit__(self, *exc: object) -> None:
        self.ledger.close()
        self.target.close()
        self.client.close()


NOTHING = {"sp": None, "limit": None, "fan": None}


@in_loop
async def test_an_event_sheds_in_order_and_its_end_releases_every_slot_in_reverse(tmp_path: Path) -> None:
    async with Scene(tmp_path) as s:
        s.shedder.put_event(Event("e1", 2, T0, T0 + 3600))
        assert await s.shedder.reconcile() == 3
        assert s.slots() == {"sp": 22.0, "limit": 50.0, "fan": "inactive"}
        assert s.target.objects["analog-output,2"].presentValue == 50.0
        assert s.pauses == [5.0, 5.0]                      # staged: one controller point after another
        assert [name for name, _ in s.writer.sent] == ["supply air +3 K", "chiller limit", "fan off"]
        assert await s.shedder.reconcile() == 0            # nothing differs: nothing written again
        s.clock.now = T0 + 3600
        assert await s.shedder.reconcile() == 3
        assert s.slots() == NOTHING
        assert s.target.objects["analog-output,2"].presentValue == 100.0  # back to the controller's own value
        assert s.writer.sent[3:] == [("fan off", None), ("chiller limit", None), ("supply air +3 K", None)]
        assert set(s.states().values()) == {"released"}


@in_loop
async def test_overlapping_events_shed_at_the_highest_level_and_release_only_after_the_last(tmp_path: Path) -> None:
    async with Scene(tmp_path) as s:
        s.shedder.put_event(Event("moderate", 1, T0, T0 + 3600))
        s.shedder.put_event(Event("high", 2, T0 + 1800, T0 + 5400))
        await s.shedder.reconcile()
        assert s.slots() == {"sp": 21.0, "limit": 70.0, "fan": None}   # the fan sits level 1 out
        s.clock.now = T0 + 1800
        await s.shedder.reconcile()
        assert s.slots() == {"sp": 22.0, "limit": 50.0, "fan": "inactive"}
        s.clock.now = T0 + 3600                                        # the first ends, the second goes on
        await s.shedder.reconcile()
        assert s.slots() == {"sp": 22.0, "limit": 50.0, "fan": "inactive"}
        assert s.shedder.state().until_s == T0 + 5400
        s.clock.now = T0 + 5400
        await s.shedder.reconcile()
        assert s.slots() == NOTHING


@in_loop
async def test_a_cancelled_event_releases_at_once(tmp_path: Path) -> None:
    async with Scene(tmp_path) as s:
        s.shedder.put_event(Event("e1", 2, T0, T0 + 3600))
        await s.shedder.reconcile()
        s.clock.now = T0 + 600
        assert s.shedder.cancel_event("e1")
        await s.shedder.reconcile()
        assert s.slots() == NOTHING


@in_loop
async def test_an_operator_release_holds_for_the_event_and_not_for_the_next(tmp_path: Path) -> None:
    async with Scene(tmp_path) as s:
        s.shedder.put_event(Event("e1", 2, T0, T0 + 3600))
        await s.shedder.reconcile()
        s.shedder.release("chiller limit")
        await s.shedder.reconcile()
        assert s.slots() == {"sp": 22.0, "limit": None, "fan": "inactive"}
        s.clock.now = T0 + 1800
        assert await s.shedder.reconcile() == 0             # not shed again while the event lasts
        s.shedder.release_all()
        await s.shedder.reconcile()
        assert s.slots() == NOTHING
        s.shedder.put_event(Event("e2", 1, T0 + 7200, T0 + 9000))
        s.clock.now = T0 + 7200
        await s.shedder.reconcile()
        assert s.slots() == {"sp": 21.0, "limit": 70.0, "fan": None}
        with pytest.raises(KeyError):
            s.shedder.release("no such action")


@in_loop
async def test_a_restart_mid_event_knows_what_it_wrote_and_releases_it_when_the_event_is_over(
        tmp_path: Path) -> None:
    async with Scene(tmp_path) as s:
        s.shedder.put_event(Event("e1", 2, T0, T0 + 3600))
        await s.shedder.reconcile()
        s.ledger.close()
        s.start_shedder()                                   # the process was killed; esus starts again
        assert await s.shedder.reconcile() == 0             # the event goes on: nothing to do
        assert set(s.states().values()) == {"active"}
        s.ledger.close()
        s.clock.now = T0 + 7200                             # down until after the event's end
        s.start_shedder()
        assert await s.shedder.reconcile() == 3             # the expired overrides are released at start
        assert s.slots() == NOTHING


@in_loop
async def test_a_write_the_process_died_during_is_released_after_a_restart(tmp_path: Path) -> None:
    async with Scene(tmp_path) as s:
        s.shedder.put_event(Event("e1", 2, T0, T0 + 600))
        await s.shedder.reconcile()
        s.ledger.begin(s.shedder.actions[0], 23.0, T0 + 600, T0 + 1)   # recorded, then killed before the answer
        s.ledger.close()
        s.clock.now = T0 + 900
        s.start_shedder()
        assert s.states()["supply air +3 K"] == "writing"
        await s.shedder.reconcile()
        assert s.slots() == NOTHING and set(s.states().values()) == {"released"}


@in_loop
async def test_a_controller_that_does_not_answer_delays_no_other_and_is_retried(tmp_path: Path) -> None:
    port = free_udp_port()                                  # nothing listens here yet
    async with Scene(tmp_path, dead_address=f"127.0.0.1:{port}", writer_timeout_s=1.0) as s:
        s.shedder.put_event(Event("e1", 2, T0, T0 + 3600))
        await s.shedder.reconcile()
        assert s.slots() == {"sp": 22.0, "limit": 50.0, "fan": None}
        fan = s.ledger.overrides()["fan off"]
        assert fan.state == "failed" and "no answer within" in fan.error and fan.attempts == 1
        await s.shedder.reconcile()
        assert s.ledger.overrides()["fan off"].attempts == 2
        late = start_target(702, port=port)                  # the controller is back
        try:
            await s.shedder.reconcile()
            assert late.slot("binary-output,3", 10) == "inactive"
            assert s.ledger.overrides()["fan off"].state == "active"
            s.clock.now = T0 + 3600
            await s.shedder.reconcile()
            assert late.slot("binary-output,3", 10) is None
        finally:
            late.close()


@in_loop
async def test_a_refused_write_names_the_point_and_the_answer(tmp_path: Path) -> None:
    async with Scene(tmp_path) as s:
        s.shedder.actions.append(ShedAction("missing point", s.target.address, "analog-value,99", {1: 1.0}))
        s.shedder.put_event(Event("e1", 1, T0, T0 + 60))
        await s.shedder.reconcile()
        missing = s.ledger.overrides()["missing point"]
        assert missing.state == "failed"
        assert "analog-value,99 present-value = 1.0 at priority 10: refused" in missing.error
        assert "unknown-object" in missing.error


def test_an_action_takes_the_value_of_the_highest_level_it_has_at_or_below_the_signal() -> None:
    action = ShedAction("a", "127.0.0.1", "analog-value,1", {2: 5.0, 3: 9.0})
    assert [action.value_at(level) for level in (0, 1, 2, 3)] == [None, None, 5.0, 9.0]


@in_loop
async def test_a_clean_stop_releases_and_a_start_during_the_event_sheds_again(tmp_path: Path) -> None:
    async with Scene(tmp_path) as s:
        s.shedder.put_event(Event("e1", 2, T0, T0 + 3600))
        await s.shedder.reconcile()
        done = await s.shedder.release_held()
        assert sorted(done.released) == ["chiller limit", "fan off", "supply air +3 K"] and not done.not_released
        assert s.slots() == NOTHING
        s.ledger.close()
        s.start_shedder()
        assert await s.shedder.reconcile() == 3
        assert s.slots() == {"sp": 22.0, "limit": 50.0, "fan": "inactive"}


@in_loop
async def test_a_slot_held_for_an_action_since_removed_or_moved_is_released_where_it_was_written(
        tmp_path: Path) -> None:
    async with Scene(tmp_path) as s:
        s.shedder.put_event(Event("e1", 2, T0, T0 + 3600))
        await s.shedder.reconcile()
        s.ledger.close()
        s.start_shedder()                                    # a restart with an edited site file:
        del s.shedder.actions[2]                             # the fan's action removed,
        chiller = s.shedder.actions[1]                       # the chiller's moved to priority 8
        s.shedder.actions[1] = ShedAction(chiller.name, chiller.address, chiller.object_id, chiller.values,
                                          priority=8)
        await s.shedder.reconcile()
        assert s.target.slot("binary-output,3", 10) is None   # released although no action names it now
        assert s.target.slot("analog-output,2", 9) is None    # the old slot released ...
        assert s.target.slot("analog-output,2", 8) == 50.0    # ... and the new one shed
        assert s.slots()["sp"] == 22.0


@in_loop
async def test_an_action_with_a_condition_takes_part_only_while_it_holds(tmp_path: Path) -> None:
    async with Scene(tmp_path) as s:
        sunny = {"east": False}
        s.shedder.holds = lambda condition: sunny[condition]
        fan = s.shedder.actions[2]
        s.shedder.actions[2] = ShedAction(fan.name, fan.address, fan.object_id, fan.values, condition="east")
        s.shedder.put_event(Event("e1", 2, T0, T0 + 3600))
        await s.shedder.reconcile()
        assert s.slots() == {"sp": 22.0, "limit": 50.0, "fan": None}       # in the shade: sits it out
        sunny["east"] = True
        await s.shedder.reconcile()
        assert s.slots()["fan"] == "inactive"
        sunny["east"] = False                                               # the sun moved on
        await s.shedder.reconcile()
        assert s.slots() == {"sp": 22.0, "limit": 50.0, "fan": None}


@in_loop
async def test_a_controller_that_restarts_mid_event_is_caught_by_the_read_back_and_written_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with Scene(tmp_path) as s:
        s.shedder.put_event(Event("e1", 2, T0, T0 + 3600))
        await s.shedder.reconcile()
        shed = {"sp": 22.0, "limit": 50.0, "fan": "inactive"}
        assert s.slots() == shed
        assert await s.shedder.verify() == 0                     # every slot holds what was acknowledged
        port = int(s.target.address.rsplit(":", 1)[1])
        s.target.close()
        s.target = start_target(701, port)                       # restarted: its priority arrays are empty
        assert s.slots() == NOTHING
        with caplog.at_level("WARNING"):
            assert await s.shedder.verify() == 3
            assert set(s.states().values()) == {"lost"}
            await s.shedder.reconcile()
        assert s.slots() == shed
        overrides = s.ledger.overrides()
        assert {o.state for o in overrides.values()} == {"active"} and {o.lost for o in overrides.values()} == {1}
        assert caplog.text.count("lost its override") == 3
        assert "analog-value,1 priority 10 holds NULL, not 22.0" in caplog.text
        assert await s.shedder.verify() == 0                     # and once written again, it holds
        s.target.objects["analog-value,1"].priorityArray[9] = PriorityValue(real=19.0)   # another writer
        assert await s.shedder.verify() == 1
        assert "holds 19.0, not 22.0" in caplog.text


@in_loop
async def test_another_writer_at_a_higher_priority_is_seen_said_once_and_its_release_too(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An operator's priority 8 over esus's 10: the slot still holds the shed, the point does not
    follow it. The ledger (and so the page and InfluxDB) says "outranked by priority 8"."""
    async with Scene(tmp_path) as s:
        s.shedder.put_event(Event("e1", 2, T0, T0 + 3600))
        await s.shedder.reconcile()
        supply = s.target.objects["analog-value,1"]
        supply.priorityArray[7] = PriorityValue(real=19.0)         # priority 8
        with caplog.at_level("INFO"):
            assert await s.shedder.verify() == 0                     # not lost: the slot still holds it
            await s.shedder.verify()                                 # the same again: said once
            outranked = {n: o.outranked_by for n, o in s.ledger.overrides().items()}
            assert outranked == {"supply air +3 K": 8, "chiller limit": None, "fan off": None}
            supply.priorityArray[7] = PriorityValue(null=())
            await s.shedder.verify()
        assert s.ledger.overrides()["supply air +3 K"].outranked_by is None
        assert caplog.text.count("supply air +3 K is outranked by priority 8") == 1
        assert caplog.text.count("supply air +3 K is no longer outranked") == 1
        supply.priorityArray[7] = PriorityValue(real=19.0)
        await s.shedder.verify()
        await s.shedder.release_held()                             # a release ends it
        assert s.ledger.overrides()["supply air +3 K"].outranked_by is None


@in_loop
async def test_a_controller_that_cannot_be_read_back_is_not_judged_lost(tmp_path: Path) -> None:
    async with Scene(tmp_path, writer_timeout_s=0.5) as s:
        s.shedder.put_event(Event("e1", 2, T0, T0 + 3600))
        await s.shedder.reconcile()
        s.target.close()                                         # gone: no answer at all
        assert await s.shedder.verify() == 0
        assert set(s.states().values()) == {"active"}


@in_loop
async def test_a_stop_with_a_deadline_stages_releases_closer_so_the_last_is_answered_in_time(tmp_path: Path) -> None:
    """At a stop every override must be released before systemd's stop timeout: the usual 5 s gap is
    narrowed so the last release goes out early enough for an offline controller to time out in time."""
    async with Scene(tmp_path, dead_address=f"127.0.0.1:{free_udp_port()}", writer_timeout_s=1.0) as s:
        s.shedder.put_event(Event("e1", 2, T0, T0 + 3600))
        await s.shedder.reconcile()
        s.pauses.clear()
        started = asyncio.get_running_loop().time()
        done = await s.shedder.release_held(within_s=7.0, answer_s=1.0)
        assert sorted(done.released) == ["chiller limit", "supply air +3 K"] and done.not_released == ["fan off"]
        # (7 - 1) / 2, not the site's 5 s; the offline fan never took its shed, so its release moves no
        # load and waits for no stage
        assert s.pauses == [3.0]
        assert asyncio.get_running_loop().time() - started < 1.0 + 0.5 + 2.0   # the dead one's timeout, not more
        assert s.slots() == NOTHING
        s.shedder.put_event(Event("e2", 2, T0, T0 + 3600))
        await s.shedder.reconcile()
        s.pauses.clear()
        await s.shedder.release_held(within_s=60.0, answer_s=1.0)
        assert s.pauses == [5.0]                           # room enough: the usual gap


def test_an_overrides_state_and_its_lost_count_are_told_apart() -> None:
    """InfluxDB's dr_override has `state` (a word) beside `lost_count`, which stays after a release;
    the event summary says both in words."""
    from demand_response.ledger import Override
    from esus.parts.demand import override_state
    from esus.parts.shed_tracking import override_states

    slot = ShedAction("sp", "127.0.0.1", "analog-value,1", {})
    held = Override("sp", 22.0, "active", None, 0, None, 0.0, slot)
    assert [override_state(o) for o in (None, held, replace(held, outranked_by=8),
                                        replace(held, state="lost", lost=1), replace(held, state="released", lost=1),
                                        replace(held, state="failed", error="no answer"))] == [
        "none", "held", "outranked", "lost", "released", "failing"]
    assert override_states({"sp": replace(held, state="released", lost=1)}) == {"sp": "released, lost once"}
    assert override_states({"sp": replace(held, outranked_by=8, lost=2)}) == {
        "sp": "active, outranked by priority 8, lost 2 times"}
