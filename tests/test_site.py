"""Site file: malformed, unknown keys, wrong types, bad zones and pins stop the service in one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from esus.settings.config import example_site_path
from esus.settings.errors import SettingsError
from esus.settings.site import load_site


def edited(site_file: Path, old: str, new: str, count: int = 1) -> Path:
    text = site_file.read_text()
    assert old in text, old
    site_file.write_text(text.replace(old, new, count))
    return site_file


def error_for(path: Path) -> str:
    with pytest.raises(SettingsError) as caught:
        load_site(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


def test_the_example_describes_tmv23() -> None:
    site = load_site(example_site_path())
    assert (site.site.latitude, site.site.longitude, site.site.timezone) == (57.015, 9.985, "Europe/Copenhagen")
    rooms = {p.room for p in site.bms.points if p.kind == "temperature"}
    assert rooms == {"1.213", "1.215", "1.217", "1.229", "1.231", "1.233"}
    for room in rooms:
        kinds = {p.kind for p in site.bms.points if p.room == room}
        assert {"temperature", "setpoint_heating", "setpoint_cooling", "co2"} <= kinds
    assert {g.name for g in site.shades.groups} == {"east", "south", "west"}
    pins = [pin for g in site.shades.groups for pin in g.pins().values()]
    assert len(pins) == len(set(pins)) and all(9 <= pin <= 27 for pin in pins)
    ids = {p.point_id for p in site.bms.points}
    assert site.shades.wind_point in ids
    assert all(g.irradiance_point in ids for g in site.shades.groups)


def test_top_level_example_is_the_packaged_one() -> None:
    top = Path(__file__).resolve().parent.parent / "site.example.toml"
    assert top.read_text() == example_site_path().read_text()


@pytest.mark.parametrize(("old", "new", "expected"), [
    ('timezone = "Europe/Copenhagen"', 'timezone = "Europe/Aalborg"', r"site\.timezone = 'Europe/Aalborg': expected an IANA time zone"),
    ("latitude = 57.015", "latitude = 97.0", r"site\.latitude = 97\.0: Input should be less than or equal to 90"),
    ("latitude = 57.015", 'latitude = "north"', r"site\.latitude = 'north': Input should be a valid number"),
    ("[power]", "[power]\nmax_kw_typo = 3", r"power\.max_kw_typo is not a known key"),
    ("[history]", "[histroy]", r"histroy is not a known key"),
    ("min_kw = -50.0", "min_kw = 600.0", r"min_kw \(600\.0\) must be below max_kw"),
    ("up_relay_pin = 17", "up_relay_pin = 4", r"shades\.groups\.0\.up_relay_pin = 4: Input should be greater than or equal to 9"),
    ("up_relay_pin = 17", "up_relay_pin = 28", r"less than or equal to 27"),
    ("down_relay_pin = 25", "down_relay_pin = 27", r"GPIO 27 is used twice \(east\.down_relay_pin and south\.down_relay_pin\)"),
    ("number = 2", "number = 1", r"shade group number 1 is used twice"),
    ("wind_release_mps = 8.0", "wind_release_mps = 13.0", r"wind_release_mps \(13\.0\) must be below wind_retract_mps"),
    ("release_below_wm2 = 120", "release_below_wm2 = 200", r"release_below_wm2 \(200\) must be below protect_above_wm2 \(150\)"),
    ('kind = "co2"', 'kind = "carbon"', r"bms\.points\.\d+\.kind = 'carbon': Input should be"),
    ("externallogid = 6023", "externallogid = 6397", r"BMS point 6397 is listed twice"),
    ("externallogid = 6023", 'id = "6397"', r"BMS point 6397 is listed twice"),   # one id, however written
    ("externallogid = 6023", "externallogid = -1", r"a whole number \(externallogid\) or a text"),
    ('api = "aau-v1"', 'api = "haystak"', r"bms\.api = 'haystak': .*unknown BMS API 'haystak': expected one of aau-v1, haystack, bacnet"),
    ('api = "aau-v1"', 'api = "bacnet"', r"BACnet point '6397': expected '<address> <object-type>,<instance>', such as"),
    ("max_reply_mb = 4 ", 'max_reply_mb = 4\n[bms.haystack]\nformat = "xml"\n#', r"bms\.haystack\.format = 'xml': Input should be 'zinc' or 'json'"),
    ("max_reply_mb = 4 ", 'max_reply_mb = 4\n[bms.haystack]\npoints_filter = ""\n#', r"bms\.haystack\.points_filter = '': String should have at least 1 character"),
    ("max_reply_mb = 4 ", 'max_reply_mb = 4\n[[bms.haystack.select]]\nfilter = "temp"\nkind = "temperature"\n#',
     r"\[\[bms\.haystack\.select\]\] chooses points on a Haystack server, but api is 'aau-v1'"),
    ('name = "east"', 'name = "East Façade"', r"shades\.groups\.0\.name = 'East Façade'"),
    ("travel_up_s = 52\n", 'travel_up_s = 52\nmanual_hold = "forever"\n',
     r"shades\.groups\.0\.manual_hold = 'forever': Input should be 'timed' or 'end-of-day'"),
    ("frost_below_c = -2 ", "frost_below_c = 8 ", r"shades\.frost_below_c = 8: Input should be less than or equal to 5"),
    ("min_saving_wh_per_m2 = 2 ", "min_saving_wh_per_m2 = -1 ", r"shades\.min_saving_wh_per_m2 = -1"),
])
def test_bad_site_values(site_file: Path, old: str, new: str, expected: str) -> None:
    assert re.search(expected, error_for(edited(site_file, old, new)))


def test_keys_of_the_geometry_only_policy_are_dropped_with_a_warning(site_file: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """An upgraded site file still starts; the log says once which keys to remove."""
    path = edited(site_file, "[shades]\n", "[shades]\nsunny_on_wm2 = 200\nlead_minutes = 30\n")
    site = load_site(path)
    assert site.shades.min_saving_wh_per_m2 == 2
    assert "[shades] lead_minutes, sunny_on_wm2: no longer used" in caplog.text and "remove them" in caplog.text


def test_the_rooms_behind_a_group_and_its_conventions(site_file: Path) -> None:
    path = edited(site_file, "travel_up_s = 52\n", 'travel_up_s = 52\nfloor_area_m2 = 30\nmanual_hold = "end-of-day"\n'
                  "escape_door = true\ncooling_setpoint_c = 26\n")
    east = load_site(path).shades.groups[0]
    assert (east.floor_area_m2, east.manual_hold, east.escape_door, east.cooling_setpoint_c) == (30, "end-of-day", True, 26)
    assert load_site(path).shades.groups[1].manual_hold == "timed"


def test_missing_section(site_file: Path) -> None:
    text = site_file.read_text()
    start, end = text.index("[site]"), text.index("[power]")
    site_file.write_text(text[:start] + text[end:])
    assert "site is missing: it is required" in error_for(site_file)


def test_malformed_toml(site_file: Path) -> None:
    message = error_for(edited(site_file, "latitude = 57.015", "latitude = = 57"))
    assert "not valid TOML" in message and "line" in message


def test_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in error_for(tmp_path / "absent.toml")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes("[site]\nname = 'Bygning 1.2 \xe6'\n".encode("latin-1"))
    assert "cannot be read" in error_for(path)


def _with_demand_response(site_file: Path) -> Path:
    """The example's commented demand response block, switched on (its settings, not its prose)."""
    text = site_file.read_text()
    head, block = text[:text.index("# [demand_response]")], text[text.index("# [demand_response]"):]
    setting = re.compile(r"^# (\[|[a-z_0-9]+ = )")
    site_file.write_text(head + "\n".join(line[2:] if setting.match(line) else line for line in block.splitlines()))
    return site_file


def test_the_example_demand_response_block_is_valid(site_file: Path) -> None:
    dr = load_site(_with_demand_response(site_file)).demand_response
    assert [a.name for a in dr.actions] == ["AHU-1 supply air setpoint +2 K", "Chiller demand limit",
                                            "Corridor lighting off", "Lower the south shades"]
    assert dr.meter == "bacnet" and dr.modbus is not None and dr.modbus.register_address == 3059
    assert dr.actions[3].when_sun_on == "south" and dr.actions[0].when_sun_on is None
    assert dr.actions[1].priority == 9 and dr.actions[1].typed_values() == {1: 80.0, 2: 60.0, 3: 40.0}
    assert dr.actions[2].priority == 10 and dr.actions[2].typed_values() == {2: "inactive"}


def test_the_example_demand_limit_block_is_valid(site_file: Path) -> None:
    limit = load_site(_with_demand_response(site_file)).demand_limit
    assert limit is not None and limit.interval_minutes == 15 and limit.target_kw == 120.0 and limit.act
    assert limit.actions == ["AHU-1 supply air setpoint +2 K", "Chiller demand limit"]
    assert limit.shed_pct == (5, 10, 15) and limit.max_hours_per_day == 3.0


def test_the_example_haystack_block_is_valid(site_file: Path) -> None:
    text = site_file.read_text().replace('api = "aau-v1"', 'api = "haystack"')
    text = re.sub(r"^# (\[bms\.haystack\]|\[\[bms\.haystack\.select\]\]|format = |points_filter = |filter = |kind = |"
                  r"room_tag = )", r"\1", text, flags=re.M)
    bms = load_site(edited(site_file, site_file.read_text(), text)).bms
    assert bms.api == "haystack" and bms.haystack.format == "zinc" and bms.haystack.points_filter == "point and his"
    assert [(s.filter, s.kind, s.room_tag) for s in bms.haystack.select] == [
        ("point and his and temp and zone and sensor", "temperature", "spaceRef")]
    assert "[bms.haystack]" in text


@pytest.mark.parametrize(("old", "new", "expected"), [
    ('address = "192.168.1.21"', 'address = "ahu-1"', r"demand_response\.actions\.0\.address = 'ahu-1': expected an IPv4"),
    ('object = "analog-value,12"', 'object = "analog-input,12"', r"object 'analog-input,12': expected analog-, binary-"),
    ('values = { 2 = "inactive" }', 'values = { 2 = "off" }', r"level 2 value 'off' does not fit binary-output,7"),
    ("values = { 1 = 22.0, 2 = 23.0 }", "values = { 4 = 22.0 }", r"signal level 4; OpenADR's are 1, 2 and 3"),
    ("priority = 9", "priority = 17", r"priority = 17: Input should be less than or equal to 16"),
    ('name = "Chiller demand limit"', 'name = "Corridor lighting off"', r"shed action name 'Corridor lighting off' is used twice"),
    ('when_sun_on = "south"', 'when_sun_on = "north"', r"when_sun_on = 'north' is not a shade group \(the site file has east, south, west\)"),
])
def test_bad_demand_response_actions(site_file: Path, old: str, new: str, expected: str) -> None:
    assert re.search(expected, error_for(edited(_with_demand_response(site_file), old, new)))


def test_point_ids_are_text_however_the_site_file_writes_them(site_file: Path) -> None:
    site = load_site(edited(site_file, "externallogid = 6023", 'id = "@p:tmv23:r:2a3b-temp"'))
    ids = [p.point_id for p in site.bms.points]
    assert "p:tmv23:r:2a3b-temp" in ids and "6397" in ids and all(isinstance(i, str) for i in ids)   # '@' or not
    assert site.shades.wind_point == "6428" and site.bms.api == "aau-v1"
