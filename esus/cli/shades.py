"""`esus shades plan` and `esus shades rooms`: the day's plan and the rooms learnt, for people."""

from __future__ import annotations

import argparse
import sys
from datetime import date

from esus.settings.config import load_settings
from esus.settings.errors import EXIT_BAD_SETTINGS, EXIT_FAILURE, EXIT_OK


def cmd_shades_plan(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from esus.parts.shading import day_plan
    from shades.planner import plan_json
    from shades.report import plan_plot, plan_text

    try:
        day = date.fromisoformat(args.date)
    except ValueError:
        print(f"esus: --date {args.date!r} is not a date: use YYYY-MM-DD", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    settings = load_settings()
    if not settings.site.shades.groups:
        print(f"esus: the site file {settings.site_path} has no [[shades.groups]]", file=sys.stderr)
        return EXIT_FAILURE
    plans, weather = day_plan(settings, day)
    tz = settings.site.site.tz
    print(json.dumps(plan_json(plans, day, weather), ensure_ascii=False) if args.json
          else plan_text(plans, day, weather, tz))
    if args.plot:
        plan_plot(plans, day, weather, tz, Path(args.plot))
    return EXIT_OK


def cmd_shades_rooms(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from esus.parts.bms import configured_points
    from esus.parts.room_learning import fit_group, kept_fits, room_series_of
    from esus.state.files import StateFiles
    from esus.state.store import HistoryStore
    from shades.report import rooms_plot, rooms_text

    settings = load_settings()
    site = settings.site
    if not site.shades.groups:
        print(f"esus: the site file {settings.site_path} has no [[shades.groups]]", file=sys.stderr)
        return EXIT_FAILURE
    path = StateFiles(settings.state_dir).history
    if not path.exists():
        print(f"esus: no record yet ({path} does not exist): the rooms are learnt from what the service keeps; "
              "start esus and look again after three weeks", file=sys.stderr)
        return EXIT_FAILURE
    series = room_series_of(settings, configured_points(settings))
    with HistoryStore(path, readonly=True) as store:
        fits = {g.number: fit_group(store, g, site.shades, site.site.tz, series[g.number], int(time.time()))
                for g in site.shades.groups}
        kept = kept_fits(store, site.shades)
    names = {g.number: g.name for g in site.shades.groups}
    if args.json:
        print(json.dumps({names[n]: fit.to_dict() | {"mode": "model" if fit.validated else "rule"}
                          for n, fit in fits.items()}, ensure_ascii=False))
    else:
        print(rooms_text(names, fits, kept))
    if args.plot:
        rooms_plot(names, fits, Path(args.plot))
    return EXIT_OK


def add_shades_commands(commands: argparse._SubParsersAction) -> None:
    shades = commands.add_parser("shades", help="shading tools")
    shades_commands = shades.add_subparsers(dest="shades_command", required=True, metavar="COMMAND")
    plan = shades_commands.add_parser(
        "plan", help="the day's shading plan with reasons",
        description="Run the shading policy over a day, undisturbed, as the service would (with the rooms it has "
                    "learnt, see `esus shades rooms`): every move with its reason, the sun on each façade and the "
                    "rooms' expected temperature, heating and cooling. Uses the weather forecast when it reaches "
                    "the day, else a clear sky.")
    plan.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="the day (local to the site)")
    plan.add_argument("--json", action="store_true", help="the plan as JSON: a timeline entry every 15 minutes and "
                                                          "at every move, each with the policy's whole trace")
    plan.add_argument("--plot", metavar="OUT.png", help="a PNG per group: façade irradiance, position, moves")
    plan.set_defaults(func=cmd_shades_plan)
    rooms = shades_commands.add_parser(
        "rooms", help="each group's rooms as learnt from the record, and whether the model or the rule decides",
        description="Fit each shade group's room model on the service's record (the last 35 days) and show the "
                    "fitted parameters, the day-ahead error on the held-out week, the plant's hours, and whether "
                    "the room forecast (validated) or the VDI 3813 rule decides; the service refits each night.")
    rooms.add_argument("--json", action="store_true", help="each group's fit as JSON, with the mode it sets")
    rooms.add_argument("--plot", metavar="OUT.png", help="measured vs modelled room temperature, held-out days")
    rooms.set_defaults(func=cmd_shades_rooms)
