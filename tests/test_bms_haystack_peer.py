"""The Haystack adapter against shaystack, a server no one here wrote (the contract suite runs every
case against it too): what it does that our own server does not. It takes a request grid only as
`text/zinc` (406 with a charset), writes units as pint names that Zinc does not allow
(`7.14meter / second`, `595.6watt / meter ** 2`), and answers JSON in Haystack 3's encoding."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from phable import ph_from_zinc

from bms_wrapper.haystack import Haystack, HaystackAuth
from bms_wrapper.simulator import values
from bms_wrapper.transport import RetryPolicy, Transport
from bms_wrapper.zinc_mend import decoded, mend
from tests.peers.shaystack_server import Shaystack
from tests.test_bms_haystack import POINTS, serve

NOW = datetime(2026, 6, 10, 12, tzinfo=UTC)
WIND, IRRADIANCE = POINTS[1], POINTS[2]


@pytest.fixture(scope="module")
def shaystack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shaystack]:
    server = Shaystack(tmp_path_factory.mktemp("shaystack"), POINTS, [(NOW - timedelta(hours=3), NOW)]).start()
    yield server
    server.stop()


def adapter(url: str, fmt: str = "zinc") -> Haystack:
    return Haystack(Transport(url, HaystackAuth(url), retry=RetryPolicy(attempts=2, base_s=0.01)), fmt=fmt)


def test_every_value_is_read_in_zinc_and_json_alike_with_pint_units_mended_and_said_once(
        shaystack: Shaystack, caplog: pytest.LogCaptureFixture) -> None:
    start = NOW - timedelta(hours=2)
    minutes = np.arange(int(start.timestamp()), int(NOW.timestamp()), 60)
    zinc, json = adapter(shaystack.url), adapter(shaystack.url, "json")
    with caplog.at_level(logging.INFO):
        assert {p.point_id for p in zinc.list_points()} == {p.ref for p in POINTS} == {
            p.point_id for p in json.list_points()}
        for point in POINTS:
            got = zinc.read_history(point.ref, start, NOW)
            assert [s.time.timestamp() for s in got] == minutes.tolist()
            assert [s.value for s in got] == pytest.approx(values(point.sim, minutes).tolist())
            # the same instants and values (JSON keeps the unit as written: a JSON string may hold spaces)
            assert [(s.time, s.value) for s in got] == [(s.time, s.value) for s in json.read_history(point.ref,
                                                                                                      start, NOW)]
            zinc.read_history(point.ref, start, NOW)   # again: nothing said twice
    assert zinc.read_history(WIND.ref, start, NOW)[0].unit == "meter/second"
    assert zinc.read_history(IRRADIANCE.ref, start, NOW)[0].unit == "watt/meter²"
    assert caplog.text.count("unit(s) written as Zinc does not allow, mended") == 1
    assert caplog.text.count("takes requests as 'text/zinc; charset=utf-8'") == 0   # it takes the plain form


def test_a_server_that_wants_the_charset_named_is_asked_again_with_it(caplog: pytest.LogCaptureFixture) -> None:
    server = serve()
    server.faults.refused_content_type = "text/zinc"   # 415 for the plain form (shaystack is the other way)
    try:
        client = Haystack(Transport(server.url, HaystackAuth(server.url, "esus", "pw"),
                                    retry=RetryPolicy(attempts=2, base_s=0.01)))
        with caplog.at_level(logging.INFO):
            assert len(client.read_history(POINTS[0].ref, NOW - timedelta(hours=1), NOW)) == 60
            assert len(client.read_history(POINTS[0].ref, NOW - timedelta(hours=1), NOW)) == 60
        assert caplog.text.count("takes requests as 'text/zinc; charset=utf-8', not 'text/zinc'") == 1
    finally:
        server.stop()


def test_one_bad_cell_costs_that_cell_at_most() -> None:
    grid = ('ver:"3.0"\nts,v0,v1\n'
            '2026-06-10T12:00:00+02:00 Copenhagen,7.14meter / second,"a, b"\n'
            '2026-06-10T12:01:00+02:00 Copenhagen,@@nonsense,21.5°C\n'
            '2026-06-10T12:02:00+02:00 Copenhagen,3kilogram * meter ** 2 / second ** 3 / coulomb,21.6°C\n')
    assert decoded(ph_from_zinc, grid) is None
    mended, said = mend(grid, ph_from_zinc)
    rows = mended.rows
    assert [(r.get("v0"), r.get("v1")) for r in rows] == [
        (ph_from_zinc('ver:"3.0"\nv\n7.14meter/second\n').rows[0]["v"], "a, b"),
        (None, ph_from_zinc('ver:"3.0"\nv\n21.5°C\n').rows[0]["v"]),
        (ph_from_zinc('ver:"3.0"\nv\n3\n').rows[0]["v"], ph_from_zinc('ver:"3.0"\nv\n21.6°C\n').rows[0]["v"])]
    assert len(said) == 3 and "dropped" in said[1] and "'@@nonsense'" in said[2]
    assert mend('ver:"3.0"\nts,,\n', ph_from_zinc) is None   # a broken header is not guessed at
