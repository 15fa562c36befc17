"""The integration guide lists exactly the points the device serves for the example site."""

from pathlib import Path

from bacnet_server.points import markdown_table
from esus.parts.bacnet import site_points
from esus.settings.config import load_settings


def test_guide_table_matches_the_device() -> None:
    guide = (Path(__file__).resolve().parent.parent / "docs" / "bacnet-points.md").read_text()
    table = markdown_table(site_points(load_settings({}, demo=True)))
    assert table in guide, "docs/bacnet-points.md is out of date: regenerate with `esus bacnet points --markdown`"


def test_esus_bacnet_points_prints_every_point(capsys) -> None:
    from esus.cli.main import main
    assert main(["bacnet", "points"]) == 0
    out = capsys.readouterr().out
    for name in ("input-power-meter", "one-hour-future-power", "shade-3-mode", "wind-lockout"):
        assert name in out


def test_guide_lists_the_demand_response_points() -> None:
    from bacnet_server.points import demand_response_points

    guide = (Path(__file__).resolve().parent.parent / "docs" / "bacnet-points.md").read_text()
    assert markdown_table(demand_response_points()) in guide


def test_guide_lists_the_demand_limit_points() -> None:
    from bacnet_server.points import demand_limit_points

    guide = (Path(__file__).resolve().parent.parent / "docs" / "bacnet-points.md").read_text()
    assert markdown_table(demand_limit_points(15)) in guide
