"""BMS wrapper against a real local HTTP server simulating the AAU BMS API v1, with faults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bms_wrapper.adapters import AauBmsV1
from bms_wrapper.poller import PointRef, resolve_points
from bms_wrapper.samples import normalise, parse_zone
from bms_wrapper.simulator import SimPoint, SimulatedBms
from bms_wrapper.transport import (
    BasicAuth, BearerAuth, BmsAuthError, BmsBadResponse, BmsLoginPage, BmsUnavailable, RetryPolicy, Transport,
)

CPH = ZoneInfo("Europe/Copenhagen")
POINTS = [SimPoint(6397, "Rum 1.213/TRU01_Rum Temp", "temperature"),
          SimPoint(6426, "/TM023_1_20_1103/SG01/Solar_panel_east", "irradiance"),
          SimPoint(6428, "/TM023_1_20_1103/SG01/Wind_velocity", "wind_speed")]


@pytest.fixture
def bms():
    server = SimulatedBms(POINTS, "esus", "pw").start()
    yield server
    server.stop()


def adapter_for(server: SimulatedBms, password: str = "pw", sleeps: list | None = None, **kw) -> AauBmsV1:
    sleeps = [] if sleeps is None else sleeps
    transport = Transport(server.url, BasicAuth("esus", password), retry=RetryPolicy(attempts=3, base_s=0.01),
                          sleep=sleeps.append, **kw)
    return AauBmsV1(transport)


def window(hours: float = 2, end: datetime = datetime(2026, 6, 10, 12, tzinfo=UTC)) -> tuple[datetime, datetime]:
    return end - timedelta(hours=hours), end


def test_metadata_and_history(bms: SimulatedBms) -> None:
    adapter = adapter_for(bms)
    assert {p.point_id for p in adapter.list_points()} == {"6397", "6426", "6428"}
    samples = adapter.read_history("6397", *window(2), unit="°C")
    assert len(samples) == 120
    assert all(s.time.tzinfo is UTC and s.unit == "°C" and isinstance(s.value, float) for s in samples)
    assert all((b.time - a.time) == timedelta(minutes=1) for a, b in zip(samples, samples[1:]))


def test_one_session_reuses_connections(bms: SimulatedBms) -> None:
    adapter = adapter_for(bms)
    for _ in range(5):
        adapter.read_history("6397", *window(0.5))
    pool = adapter.transport.session.get_adapter(bms.url).poolmanager
    assert len(pool.pools) == 1  # one keep-alive pool for the host, not a connection per request


def test_429_honours_retry_after_and_503_retries(bms: SimulatedBms) -> None:
    sleeps: list[float] = []
    adapter = adapter_for(bms, sleeps=sleeps)
    bms.faults.next_requests.extend(["429", "503"])
    assert len(adapter.read_history("6397", *window(1))) == 60
    assert sleeps[0] == 1.0 and 0 < sleeps[1] <= 0.02  # Retry-After: 1, then jittered backoff
    bms.faults.next_requests.extend(["503"] * 3)
    with pytest.raises(BmsUnavailable, match="HTTP 503 3 times"):
        adapter.read_history("6397", *window(1))


def test_timeouts_retry_then_give_up(bms: SimulatedBms) -> None:
    adapter = adapter_for(bms, read_timeout_s=0.3)
    bms.faults.next_requests.append("timeout")
    assert len(adapter.read_history("6397", *window(1))) == 60
    bms.faults.next_requests.extend(["timeout"] * 3)
    with pytest.raises(BmsUnavailable, match="did not answer in time"):
        adapter.read_history("6397", *window(1))


def test_connection_refused_names_the_setting() -> None:
    server = SimulatedBms(POINTS, "esus", "pw")
    url = server.url
    server.server.server_close()
    transport = Transport(url, BasicAuth("esus", "pw"), retry=RetryPolicy(attempts=2, base_s=0.01), sleep=lambda s: None)
    with pytest.raises(BmsUnavailable, match="ESUS_BMS_URL"):
        AauBmsV1(transport).list_points()


def test_wrong_password_login_page_malformed_and_error_bodies(bms: SimulatedBms) -> None:
    with pytest.raises(BmsAuthError, match="ESUS_BMS_PASSWORD"):
        adapter_for(bms, password="wrong").list_points()
    adapter = adapter_for(bms)
    for fault, error, text in [("html", BmsLoginPage, "login page"), ("malformed", BmsBadResponse, "malformed JSON"),
                               ("error_body", BmsBadResponse, "database connection lost")]:
        bms.faults.next_requests.extend([fault] * 3)   # every attempt: a login page is asked again
        with pytest.raises(error, match=text):
            adapter.read_history("6397", *window(1))
        bms.faults.next_requests.clear()


def test_an_odd_login_page_among_hundreds_of_answers_is_asked_again_and_the_backfill_finishes(
        bms: SimulatedBms) -> None:
    """As a single sign-on proxy answers now and then while a session lapses: about 2 % of requests."""
    from bms_wrapper.poller import backfill

    adapter = adapter_for(bms)
    points = [PointRef(str(p.externallogid), p.source, "", p.kind, "") for p in POINTS]
    bms.faults.next_requests.extend((["html"] + ["none"] * 49) * 4)
    start, end = window(24 * 4)
    got = {ref.point_id: 0 for ref in points}
    for ref, samples in backfill(adapter, points, start, end, threads=1):
        got[ref.point_id] += len(samples)
    assert got == {ref.point_id: 4 * 24 * 60 for ref in points}
    assert adapter.transport.failures == 0


def test_bearer_token_is_refreshed_once_on_401() -> None:
    server = SimulatedBms(POINTS, "esus", "pw", bearer_token="fresh").start()
    try:
        tokens = iter(["expired", "fresh", "fresh"])
        fetched: list[str] = []

        def fetch() -> str:
            fetched.append(next(tokens))
            return fetched[-1]

        adapter = AauBmsV1(Transport(server.url, BearerAuth(fetch), sleep=lambda s: None))
        assert len(adapter.list_points()) == 3
        assert fetched == ["expired", "fresh"]
    finally:
        server.stop()


def test_duplicates_out_of_order_and_partial_windows(bms: SimulatedBms, caplog: pytest.LogCaptureFixture) -> None:
    bms.faults.duplicates = bms.faults.shuffled = True
    samples = adapter_for(bms).read_history("6397", *window(3))
    assert len(samples) == 180 and samples == sorted(samples) and len({s.time for s in samples}) == 180
    bms.faults.partial = True
    partial = adapter_for(bms).read_history("6397", *window(3))
    assert len(partial) == 120


@pytest.mark.parametrize("tzinfo", ["name", "offset", "none"])
def test_a_dst_night_in_every_timestamp_form(bms: SimulatedBms, tzinfo: str) -> None:
    bms.faults.tzinfo = tzinfo
    start = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # 00:00 CEST; the clocks go back at 01:00 UTC
    samples = adapter_for(bms).read_history("6428", start, start + timedelta(hours=5))
    assert len(samples) == 300
    assert all((b.time - a.time) == timedelta(minutes=1) for a, b in zip(samples, samples[1:]))
    spring = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert len(adapter_for(bms).read_history("6428", spring, spring + timedelta(hours=4))) == 240


def test_parse_zone_and_normalise_edge_cases() -> None:
    assert parse_zone("+01:00").utcoffset(None) == timedelta(hours=1)
    assert parse_zone("UTC-3").utcoffset(None) == timedelta(hours=-3)
    assert parse_zone("Mars/Olympus") is None
    records = [{"timestamp": "2026-01-01 10:00:00", "value": "21.5"}, {"timestamp": "2026-01-01 10:01:00", "value": None},
               {"timestamp": "garbage", "value": 1}, {"timestamp": "2026-01-01T09:02:00Z", "value": "NaN"},
               {"timestamp": "2026-01-01T09:03:00+00:00", "value": True}]
    samples = normalise(records, "1", "", CPH)
    assert [(s.time.isoformat(), s.value) for s in samples if s.value == s.value] == [   # NaN: counted later
        ("2026-01-01T09:00:00+00:00", 21.5), ("2026-01-01T09:03:00+00:00", 1.0)]


def test_points_are_matched_by_id_or_by_source_path(bms: SimulatedBms) -> None:
    listed = adapter_for(bms).list_points()
    configured = [PointRef("6397", "Rum 1.213/TRU01_Rum Temp", "1.213", "temperature"),
                  PointRef("1111", "/TM023_1_20_1103/SG01/Wind_velocity", "tmv23", "wind_speed"),
                  PointRef("2222", "Rum 9.999/Gone", "9.999", "co2")]
    usable, messages = resolve_points(configured, listed)
    assert [p.point_id for p in usable] == ["6397", "6428"]
    assert "is now point 6428" in messages[0] and "not in the BMS's point list" in messages[1]


def test_a_nan_a_bms_writes_is_counted_with_the_dropped_values() -> None:
    """"NaN" (a sensor that read nothing) was skipped unseen; now it reaches the plausibility check,
    which drops and counts it with the values no sensor can read."""
    import math

    from bms_wrapper.plausible import implausible

    records = [{"timestamp": f"2026-06-10T12:0{m}:00+00:00", "value": v}
               for m, v in enumerate([21.5, "NaN", "nan", None, "n/a", 22.0])]
    samples = normalise(records, "6397", "°C", ZoneInfo("Europe/Copenhagen"))
    assert [s.value for s in samples if not math.isnan(s.value)] == [21.5, 22.0]
    assert len(implausible(samples, "temperature")) == 2   # the two NaNs; None and "n/a" are no readings
