"""The Project Haystack adapter's own faults, against the Haystack server on loopback: sign-in
(SCRAM, Basic, none, a given token, a wrong password, a restarted server), an unknown point, an empty
history, a server error, an error grid, a login page, Haystack 3 JSON; and the repeated hour's
resolution from local times without their offsets."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from phable import ph_from_zinc

from bms_wrapper.adapters import PointInfo
from bms_wrapper.haystack import Haystack, HaystackAuth, Selection, history_samples
from bms_wrapper.poller import PointRef, backfill
from bms_wrapper.samples import LocalTimeResolver, samples_from
from bms_wrapper.zinc_history import his_columns
from bms_wrapper.transport import BmsAuthError, BmsBadResponse, BmsLoginPage, RetryPolicy, Transport
from esus.parts.shading import ShadesService
from esus.runtime.clock import ManualClock
from tests.bms_servers import Rig, haystack_source, site_points
from tests.haystack_server import HaystackPoint, HaystackServer

CPH = ZoneInfo("Europe/Copenhagen")
NOW = datetime(2026, 6, 10, 12, tzinfo=UTC)
POINTS = [HaystackPoint("p:tmv23:r:6397", "Rum 1.213 Temp", "temperature", 6397, "1.213"),
          HaystackPoint("p:tmv23:r:6428", "SG01 Wind velocity", "wind_speed", 6428),
          HaystackPoint("p:tmv23:r:6426", "SG01 Solar panel east", "irradiance", 6426)]
ROOM = "p:tmv23:r:6397"


def serve(**kw) -> HaystackServer:
    return HaystackServer(POINTS, "esus", "pw", now=lambda: NOW, **kw).start()


@pytest.fixture
def server():
    server = serve()
    yield server
    server.stop()


def client(server: HaystackServer, password: str = "pw", token: str = "", fmt: str = "zinc", **kw) -> Haystack:
    auth = HaystackAuth(server.url, "esus", password, token)
    return Haystack(Transport(server.url, auth, retry=RetryPolicy(attempts=3, base_s=0.01), **kw), fmt=fmt)


def last_hour(adapter: Haystack, point: str = ROOM) -> list:
    return adapter.read_history(point, NOW - timedelta(hours=1), NOW)


@pytest.mark.parametrize("fmt", ["zinc", "json"])
def test_scram_sign_in_once_then_points_and_history_in_either_format(server: HaystackServer, fmt: str) -> None:
    adapter = client(server, fmt=fmt)
    listed = {p.point_id: p.source for p in adapter.list_points()}
    assert listed == {p.ref: p.dis for p in POINTS}
    samples = last_hour(adapter)
    assert len(samples) == 60 and samples[0].unit == "°C"   # the unit as Haystack gives it, where the site file has none
    assert adapter.read_history(ROOM, NOW - timedelta(hours=1), NOW, "degC")[0].unit == "degC"
    assert server.logins == 1 and adapter.transport.auth.logins == 1


def test_a_filter_chooses_the_points(server: HaystackServer) -> None:
    adapter = client(server)
    adapter.points_filter = "point and (wind or solar)"
    assert {p.point_id for p in adapter.list_points()} == {"p:tmv23:r:6428", "p:tmv23:r:6426"}
    assert adapter.records["p:tmv23:r:6428"]["unit"] == "m/s"


@pytest.mark.parametrize("batch", [True, False])
def test_a_backfill_reads_points_in_batches_where_the_server_can(server: HaystackServer, batch: bool) -> None:
    server.faults.no_batch = not batch
    adapter = client(server)
    refs = [PointRef(p.ref, p.dis, "r", p.kind) for p in POINTS]
    got: dict[str, list] = {ref.point_id: [] for ref in refs}
    for ref, samples in backfill(adapter, refs, NOW - timedelta(days=2), NOW):   # window by window
        got[ref.point_id] += samples
    assert {k: len(v) for k, v in got.items()} == {p.ref: 2 * 24 * 60 for p in POINTS}
    assert sorted(got[ROOM]) == adapter.read_history(ROOM, NOW - timedelta(days=2), NOW)   # as one read gives it
    reads = server.ops.count("hisRead") - 1
    # a batch (of up to 8) covers an eighth of the 8 days one point's request does: 2 windows of a
    # day; without batch reads, a window's first request shows it (both windows' may be in flight),
    # and each point is read on its own from then on
    assert reads == 2 if batch else 1 + 2 * len(POINTS) <= reads <= 2 + 2 * len(POINTS)
    assert adapter.batch_reads == batch


def test_filters_choose_points_and_type_them_and_the_first_filter_wins(server: HaystackServer) -> None:
    adapter = client(server)
    adapter.selections = [Selection("point and temp and zone and sensor", "temperature"),
                          Selection("point and sensor", "other", unit="raw")]
    listed = {p.point_id: p for p in adapter.list_points()}
    assert listed[ROOM] == PointInfo(ROOM, "Rum 1.213 Temp", "temperature", "1.213", "°C")   # room from spaceRef
    assert listed["p:tmv23:r:6428"] == PointInfo("p:tmv23:r:6428", "SG01 Wind velocity", "other", "", "raw")


def test_a_site_that_chooses_its_room_temperatures_by_filter(tmp_path: Path) -> None:
    """Every room temperature left out of [[bms.points]] and chosen by one filter instead: polled,
    stored, and each read by the shade group its room belongs to."""
    clock = ManualClock(datetime(2026, 6, 10, 12, tzinfo=UTC))
    source = haystack_source(tmp_path, clock, site_points())
    text = re.sub(r'\[\[bms\.points\]\]\nid = "[^"]+"\nsource = "[^"]+"\nroom = "[^"]+"\nkind = "temperature"\n'
                  r'unit = "[^"]*"\n', "", source.site.read_text())
    text += '\n[[bms.haystack.select]]\nfilter = "point and temp and zone and sensor"\nkind = "temperature"\n'
    source.site.write_text(text)
    rig = Rig(tmp_path, clock, source)
    assert not any(p.kind == "temperature" for p in rig.settings.site.bms.points)
    rig.poll()
    temperatures = {p.point_id: p.room for p in rig.service.points if p.kind == "temperature"}
    assert temperatures == {source.point_id(n): room for n, _, kind, room in site_points() if kind == "temperature"}
    assert rig.times(6397).size == 24 * 60 and rig.service.value(source.point_id(6397)) is not None
    shades = SimpleNamespace(bms=rig.service, settings=rig.settings, shades=rig.settings.site.shades)
    east = rig.settings.site.shades.groups[0]
    assert east.rooms == ["1.213", "1.215"]
    rooms = dict(ShadesService.room_points.fget(shades)[east.number])
    assert rooms["1.213"]["temperature"] == source.point_id(6397)
    rig.close()
    source.stop()


def test_a_wrong_password_is_one_clear_error(server: HaystackServer) -> None:
    with pytest.raises(BmsAuthError, match="refused the login.*ESUS_BMS_USER and ESUS_BMS_PASSWORD") as caught:
        client(server, password="wrong").list_points()
    assert caught.value.cause == "login refused" and server.logins == 0


def test_a_restarted_server_that_forgot_the_token_is_signed_in_again(server: HaystackServer) -> None:
    adapter = client(server)
    last_hour(adapter)
    server.forget_tokens()
    adapter.transport.auth._signed_in_at -= 60   # the token is old: a 401 now means the server forgot it
    assert len(last_hour(adapter)) == 60 and server.logins == 2


def test_a_given_token_is_used_as_it_is_and_a_refused_one_is_said(server: HaystackServer) -> None:
    last_hour(client(server))
    token = next(iter(server.tokens))
    adapter = client(server, password="", token=token)
    assert len(last_hour(adapter)) == 60 and server.logins == 1   # no sign-in of its own
    with pytest.raises(BmsAuthError, match="HTTP 401"):
        last_hour(client(server, password="", token="forged"))


@pytest.mark.parametrize("auth", ["basic", "none"])
def test_a_server_that_asks_for_basic_or_for_nothing_is_read(auth: str) -> None:
    server = serve(auth=auth)
    adapter = client(server)
    assert len(last_hour(adapter)) == 60
    assert adapter.transport.auth.logins == (1 if auth == "basic" else 0)
    server.stop()


def test_an_unknown_point_is_its_own_failure(server: HaystackServer) -> None:
    adapter = client(server)
    with pytest.raises(BmsBadResponse, match="UnknownRecErr: @p:tmv23:r:999") as caught:
        last_hour(adapter, "p:tmv23:r:999")
    assert caught.value.cause == "unknown point"
    assert len(last_hour(adapter)) == 60   # the others read on


def test_an_empty_history_is_no_samples_and_no_error(server: HaystackServer) -> None:
    server.faults.empty.add(ROOM)
    assert last_hour(client(server)) == []


def test_server_errors_are_retried_and_an_error_grid_is_said(server: HaystackServer) -> None:
    adapter = client(server)
    server.faults.next_requests.extend(["503", "500"])
    assert len(last_hour(adapter)) == 60          # two failures, the third attempt answers
    server.faults.next_requests.append("error_grid")
    with pytest.raises(BmsBadResponse, match="answered hisRead with an error: sys::Err: the history store is offline"
                       ) as caught:
        last_hour(adapter)
    assert caught.value.cause == "an error grid"


def test_a_login_page_and_haystack_3_json_are_named(server: HaystackServer) -> None:
    adapter = client(server)
    server.faults.next_requests.extend(["html"] * 3)   # each attempt (one is asked again)
    with pytest.raises(BmsLoginPage, match="HTML page"):
        last_hour(adapter)
    server.faults.next_requests.clear()
    server.faults.haystack3_json = True   # read as Haystack 4's
    assert last_hour(client(server, fmt="json")) == last_hour(client(server, fmt="zinc"))
    assert len(last_hour(client(server, fmt="json"))) == 60


def test_a_slow_server_is_cut_off_at_the_deadline(server: HaystackServer) -> None:
    adapter = client(server, deadline_s=1.0)
    last_hour(adapter)
    server.faults.next_requests.extend(["slow"] * 3)
    with pytest.raises(Exception, match="too slow|no usable answer|did not answer"):
        last_hour(adapter)


# ── the repeated hour, from local times whose offsets the decoder dropped ──────────────────────


def local_rows(start_utc: datetime, minutes: int, step: int = 1) -> list[dict]:
    """hisRead rows as phable gives them: the zone kept, the offset lost (fold 0 throughout)."""
    rows = []
    for m in range(0, minutes, step):
        local = (start_utc + timedelta(minutes=m)).astimezone(CPH)
        rows.append({"ts": local.replace(tzinfo=None).replace(tzinfo=CPH, fold=0), "val": float(m)})
    return rows


@pytest.mark.parametrize("step", [1, 15, 60])
@pytest.mark.parametrize("start", [datetime(2026, 10, 24, 23, 0, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
                                   datetime(2026, 10, 25, 1, 0, tzinfo=UTC), datetime(2026, 10, 25, 1, 45, tzinfo=UTC)])
def test_a_sorted_history_places_each_row_of_the_repeated_hour(step: int, start: datetime) -> None:
    samples = history_samples(local_rows(start, 180, step), "p", "", start)
    assert [s.time for s in samples] == [start + timedelta(minutes=m) for m in range(0, 180, step)]


def test_the_resolver_seeded_in_the_second_pass_stays_there() -> None:
    resolver = LocalTimeResolver(CPH, second_pass_step=timedelta(0))
    resolver.seed(datetime(2026, 10, 25, 1, 10, tzinfo=UTC))        # 02:10 in the second pass
    assert resolver.to_utc(datetime(2026, 10, 25, 2, 10)) == datetime(2026, 10, 25, 1, 10, tzinfo=UTC)
    assert resolver.to_utc(datetime(2026, 10, 25, 3, 0)) == datetime(2026, 10, 25, 2, 0, tzinfo=UTC)


# ── the column-wise Zinc reader beside phable's ─────────────────────────────────────────────────


@pytest.mark.parametrize("day", ["2026-06-10", "2026-10-25", "2026-03-29"])   # summer, and both DST nights
def test_a_regular_his_grid_reads_the_same_column_wise_as_through_phable(day: str) -> None:
    start = datetime.fromisoformat(day).replace(tzinfo=UTC) - timedelta(hours=2)
    server = HaystackServer(POINTS, now=lambda: datetime(2027, 1, 1, tzinfo=UTC))   # its grids, not its HTTP
    text = server.his_body([ROOM, "p:tmv23:r:6428"], start, start + timedelta(hours=6), "zinc")
    seconds, columns = his_columns(text, 2)
    grid = ph_from_zinc(text)
    for i, (values, unit) in enumerate(columns):
        fast = samples_from(seconds, values, ROOM, "")
        slow = history_samples(({"ts": r["ts"], "val": r.get(f"v{i}")} for r in grid.rows), ROOM, "", start)
        assert [(s.time, s.value) for s in fast] == [(s.time, s.value) for s in slow] and len(fast) == 360
        assert unit == ("°C" if i == 0 else "m/s")
    server.server.server_close()


def test_an_irregular_his_grid_is_left_to_phable() -> None:
    head = 'ver:"3.0"\nts,val\n'
    assert his_columns(head + "2026-06-10T12:00:00Z UTC,T\n", 1) is None          # a Bool
    assert his_columns(head + "2026-06-10T12:00:00Z UTC,NA\n", 1) is None         # NA
    assert his_columns(head + '2026-06-10T12:00:00Z UTC,"x,y"\n', 1) is None      # a Str with a comma
    assert his_columns('ver:"3.0"\nts,val unit:"°C"\n', 1) is None                 # column meta
    assert his_columns('ver:"3.0" err dis:"x"\nempty\n', 1) is None                # an error grid
    seconds, [(values, unit)] = his_columns(head + "2026-06-10T12:00:00Z UTC,1_000.5kW\n"
                                            "2026-06-10T12:01:00Z UTC,\n2026-06-10T12:02:00Z UTC,N\n", 1)
    assert seconds.tolist() == [1781092800, 1781092860, 1781092920] and unit == "kW"
    assert values[0] == 1000.5 and np.isnan(values[1:]).all()
