"""The `esus` command line (stable: scripts and tests depend on it)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

from esus.cli.backtest import add_backtest_command
from esus.cli.shades import add_shades_commands
from esus.runtime.clock import AcceleratedClock, Clock, RealClock
from esus.settings.config import Settings, load_settings
from esus.settings.errors import EXIT_BAD_SETTINGS, EXIT_FAILURE, EXIT_OK, SettingsError

log = logging.getLogger("esus")



#: Libraries whose INFO lines are their own business: shown from WARNING on unless ESUS_LOG_LEVEL=DEBUG
LIBRARIES = ("urllib3", "matplotlib", "bacpypes3", "openleadr", "openadr3_client", "apscheduler", "pymodbus",
             "aiohttp", "paho")


class LibraryChatter(logging.Filter):
    """Keeps libraries' lines below WARNING out of the log. A filter on the handler, not a level on
    their loggers: openleadr sets its logger to INFO when it is imported, after the log is set up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".", 1)[0] not in LIBRARIES


def setup_logging(level: str) -> None:
    """Log to stdout for journald (which adds its own timestamps)."""
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") else \
        "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(fmt, datefmt="%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if root.level > logging.DEBUG:
        handler.addFilter(LibraryChatter())


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(demo=True if getattr(args, "demo", False) else None)


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    setup_logging(settings.log_level)
    from esus.service import Service, StartupError, install_signal_handlers

    if settings.demo_ignored:
        log.info("demo: %s from %s left alone: the demo keeps its own state in %s and polls a simulated BMS",
                 ", ".join(settings.demo_ignored), settings.env_file, settings.state_dir)

    if settings.demo and args.start is None:
        from esus.demo import resume_time

        args.start = resume_time(settings)   # a demo that ran ahead goes on from where it got to
    simulated = args.speed != 1 or args.start is not None
    clock: Clock = AcceleratedClock(args.speed, args.start, args.anchor) if simulated else RealClock()
    if simulated:
        log.info("simulated clock at %s, %gx real time", clock.now().isoformat(timespec="seconds"), args.speed)

    async def main() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        if settings.demo:
            from esus.demo import demo_service
            service = demo_service(settings, clock)
        else:
            service = Service(settings, clock)
        await service.run(stop)

    try:
        asyncio.run(main())
    except StartupError as exc:
        print(f"esus: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from esus.cli.doctor import run_doctor

    checks = run_doctor(_settings(args))
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok]
    print(f"{len(failed)} problem(s) found" if failed else "all checks passed")
    return EXIT_FAILURE if failed else EXIT_OK


@contextlib.contextmanager
def _bms_adapter(settings: Settings, max_in_flight: int | None = None) -> Iterator:
    """The configured BMS, or in the demo a simulated one; closed (and stopped) afterwards."""
    from esus.demo import simulated_bms_adapter, start_simulated_bms
    from esus.parts.bms_sources import bms_configured, command_context, make_adapter

    simulator = start_simulated_bms(settings) if not bms_configured(settings) and settings.demo else None
    with command_context(settings) as context:
        adapter = simulated_bms_adapter(settings, simulator, max_in_flight) if simulator else \
            make_adapter(settings, max_in_flight, context)
        try:
            yield adapter
        finally:
            adapter.close()
            if simulator:
                simulator.stop()


def cmd_bms_points(args: argparse.Namespace) -> int:
    from bms_wrapper.poller import resolve_points
    from bms_wrapper.transport import BmsError
    from esus.parts.bms import configured_points

    settings = _settings(args)
    configured = configured_points(settings)
    try:
        with _bms_adapter(settings) as adapter:
            listed = adapter.list_points()
    except BmsError as exc:
        print(f"esus: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    usable, messages = resolve_points(configured, listed)
    ids = {p.point_id for p in usable}
    chosen = [ref for ref in usable if ref.point_id not in {c.point_id for c in configured}
              and ref.source not in {c.source for c in configured}]
    found = len(usable) - len(chosen)
    print(f"{len(listed)} points in the BMS ({settings.site.bms.api}); {found} of {len(configured)} configured "
          f"points found" + (f", {len(chosen)} more chosen by the site file's filters" if chosen else ""))
    width = max([13, *(len(ref.point_id) for ref in configured + chosen)])
    print(f"{'point':>{width}}  {'room':<7} {'kind':<17} {'unit':<5} {'status':<8} source")
    for ref in configured:
        renamed = any(p.source == ref.source for p in usable)
        state = "ok" if ref.point_id in ids else "renamed" if renamed else "MISSING"
        print(f"{ref.point_id:>{width}}  {ref.room:<7} {ref.kind:<17} {ref.unit:<5} {state:<8} {ref.source}")
    for ref in chosen:
        print(f"{ref.point_id:>{width}}  {ref.room or '-':<7} {ref.kind:<17} {ref.unit:<5} {'filter':<8} {ref.source}")
    for message in messages:
        print(f"note: {message}")
    return EXIT_OK if found == len(configured) else EXIT_FAILURE


def cmd_bms_backfill(args: argparse.Namespace) -> int:
    import csv

    from bms_wrapper.poller import backfill, resolve_points
    from bms_wrapper.transport import BmsError
    from esus.parts.bms import configured_points

    settings = _settings(args)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    days = args.days
    out = open(args.out, "w", newline="") if args.out else sys.stdout
    show = sys.stderr.isatty()
    rows = 0
    try:
        with _bms_adapter(settings, args.max_in_flight) as adapter:
            kept = adapter.history_days
            if kept is not None and days > kept:
                print(f"esus: the BMS keeps about {kept:g} days; fetching {kept:g} days", file=sys.stderr)
                days = kept
            start = end - timedelta(days=days)
            points, messages = resolve_points(configured_points(settings), adapter.list_points())
            for message in messages:
                print(f"esus: {message}", file=sys.stderr)
            writer = csv.writer(out)
            writer.writerow(["time", "point", "source", "room", "kind", "unit", "value"])

            def progress(done: int, total: int) -> None:
                if show:
                    bar = "#" * (30 * done // total)
                    print(f"\rbackfill [{bar:<30}] {done}/{total} requests, {rows} samples", end="",
                          file=sys.stderr)

            in_flight = args.max_in_flight or settings.site.bms.max_in_flight
            for ref, samples in backfill(adapter, points, start, end, threads=2 * in_flight, progress=progress):
                for sample in samples:
                    writer.writerow([sample.time.strftime("%Y-%m-%dT%H:%M:%SZ"), ref.point_id, ref.source,
                                     ref.room, ref.kind, ref.unit, sample.value])
                rows += len(samples)
    except BmsError as exc:
        print(f"\nesus: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if args.out:
            out.close()
    if show:
        print(file=sys.stderr)
    print(f"esus: {rows} samples of {len(points)} points over {days:g} days" +
          (f" written to {args.out}" if args.out else ""), file=sys.stderr)
    return EXIT_OK


def cmd_bacnet_points(args: argparse.Namespace) -> int:
    from bacnet_server.points import format_table, markdown_table
    from esus.parts.bacnet import device_identity, site_points

    settings = _settings(args)
    points = site_points(settings)
    identity = device_identity(settings)
    print(f"device {identity.instance} '{identity.name}' on {identity.address}, {len(points)} points")
    print(markdown_table(points) if args.markdown else format_table(points))
    return EXIT_OK


def cmd_bacnet_epics(args: argparse.Namespace) -> int:
    """The device's EPICS, from the point table (a technician reviews it before the device is on site)."""
    import asyncio

    from bacnet_server.epics import epics_text
    from esus.parts.bacnet import device_identity, site_points

    settings = _settings(args)

    async def build() -> str:   # bacpypes3 objects are made inside an event loop
        return epics_text(device_identity(settings), site_points(settings))

    print(asyncio.run(build()), end="")
    return EXIT_OK


def cmd_dr_hash_password(args: argparse.Namespace) -> int:
    """Print the hash for ESUS_DR_PAGE_PASSWORD_HASH; the password is read, never an argument."""
    import getpass

    from demand_response.passwords import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("operator page password: ")
        if getpass.getpass("again: ") != password:
            print("esus: the two passwords differ; nothing printed", file=sys.stderr)
            return EXIT_BAD_SETTINGS
    else:
        password = sys.stdin.readline().rstrip("\n")
    try:
        print(hash_password(password))
    except ValueError as exc:
        print(f"esus: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    return EXIT_OK


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def utc_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time like 2026-06-01T00:00:00+00:00, got {text!r}") from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the time with its offset (e.g. +00:00), got {text!r}")
    return when.astimezone(UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="esus", description="Edge service for building energy: BACnet device, one-hour power "
        "forecast, solar shading, InfluxDB logging. With no .env, 'esus run' runs the demo.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="run the service (the demo when no .env exists)",
        description="Run esus: the BACnet device, the forecast, the BMS poller, the shades, demand response and the "
                    "InfluxDB writer, with the settings of .env (or the environment) and the site file. With no "
                    ".env and no ESUS_SITE, or with --demo, the embedded demo: its own state, a simulated BMS and "
                    "BAS, mock pins. Stops cleanly on Ctrl-C or SIGTERM (every override released).")
    run.add_argument("--demo", action="store_true", help="run the embedded demo even if .env exists")
    run.add_argument("--speed", type=positive_float, default=1.0, metavar="N",
                     help="run the clock N times faster than real time (demo and tests)")
    run.add_argument("--start", type=utc_time, metavar="TIME",
                     help="simulated start time, ISO 8601 with offset (replays and tests; implies a simulated clock)")
    run.add_argument("--anchor", type=float, metavar="UNIX_S",
                     help="the wall-clock time (Unix seconds) at which the simulated clock read --start; "
                     "processes given the same pair share one timeline")
    run.set_defaults(func=cmd_run)

    doctor = commands.add_parser(
        "doctor", help="check settings, BMS, InfluxDB, BACnet port and GPIO",
        description="Check each part as the service would meet it (settings, the running service, state files, the "
                    "store, the forecast model, the shades' rooms and wind, the BMS, InfluxDB, the BACnet port, the "
                    "GPIO pins, demand response) and say what to do about each problem; exit 1 when one fails.")
    doctor.set_defaults(func=cmd_doctor)

    forecast = commands.add_parser("forecast", help="power forecast tools")
    forecast_commands = forecast.add_subparsers(dest="forecast_command", required=True, metavar="COMMAND")
    add_backtest_command(forecast_commands)

    bms = commands.add_parser("bms", help="BMS API tools")
    bms_commands = bms.add_subparsers(dest="bms_command", required=True, metavar="COMMAND")
    points = bms_commands.add_parser(
        "points", help="list the BMS points and how they map",
        description="Ask the BMS for its points and show how the site file's [[bms.points]] map to them: room, kind, "
                    "unit, and whether each is found (the demo asks its simulated BMS).")
    points.set_defaults(func=cmd_bms_points)
    backfill = bms_commands.add_parser(
        "backfill", help="fetch history from the BMS",
        description="Fetch the last N days of every site point's history from the BMS, and print a summary or "
                    "write the samples to a CSV file (time, point, room, kind, unit, value).")
    backfill.add_argument("--days", type=positive_float, required=True, metavar="N", help="how many days back")
    backfill.add_argument("--out", metavar="FILE.csv", help="write every sample to this CSV file")
    backfill.add_argument("--max-in-flight", type=int, choices=range(1, 33), metavar="N",
                          help="requests to the BMS at a time (default: the site file's [bms] max_in_flight)")
    backfill.set_defaults(func=cmd_bms_backfill)

    add_shades_commands(commands)

    bacnet = commands.add_parser("bacnet", help="BACnet device tools")
    bacnet_commands = bacnet.add_subparsers(dest="bacnet_command", required=True, metavar="COMMAND")
    bacnet_points = bacnet_commands.add_parser(
        "points", help="the BACnet point list",
        description="The BACnet objects this device serves for the site file: instance, name, type, units, whether "
                    "a BAS may write it, and what it means.")
    bacnet_points.add_argument("--markdown", action="store_true", help="as a Markdown table")
    bacnet_points.set_defaults(func=cmd_bacnet_points)
    bacnet_epics = bacnet_commands.add_parser(
        "epics", help="the device's EPICS (bacepics format), from the point table",
        description="Print the device's Electronic PICS in the text form bacnet-stack's bacepics prints: the "
                    "services, object types and every object with its properties; values fixed by the site "
                    "are given, run-time values are '?', what a BAS may write is marked Writable.")
    bacnet_epics.set_defaults(func=cmd_bacnet_epics)

    dr = commands.add_parser("dr", help="demand response tools")
    dr_commands = dr.add_subparsers(dest="dr_command", required=True, metavar="COMMAND")
    hash_command = dr_commands.add_parser(
        "hash-password", help="the operator page password's hash for .env (asks for it, or reads one line from stdin)",
        description="Print the scrypt hash of the operator page's password, for ESUS_DR_PAGE_PASSWORD_HASH in .env "
                    "(the password itself is never stored). Asks for it twice at a terminal; reads one line from "
                    "standard input otherwise.")
    hash_command.set_defaults(func=cmd_dr_hash_password)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"esus: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `esus ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
