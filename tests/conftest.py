"""Shared fixtures: every test runs in its own empty directory with no ESUS_* settings."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# One OpenMP thread for scikit-learn's fits in the tests (and the processes they start), as the nightly
# training has: on a shared machine, OpenMP threads that spin-wait behind another process's work made
# a 40-s backtest take over 5 minutes in CI.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from esus.settings.config import example_site_path  # noqa: E402 - after the OpenMP setting

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("ESUS_") or key in ("STATE_DIRECTORY", "JOURNAL_STREAM"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    monkeypatch.chdir(tmp_path)


_SUN_TABLES: dict[tuple[float, float, float, int], bytes] = {}


@pytest.fixture(autouse=True)
def sun_tables_made_once(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A service's sun table made in the test's process, once a place and day for the whole run,
    not in a process of its own at every start of a service (tests/test_sun_table.py takes that
    path: a test that asks for `sun_in_own_process`)."""
    if "sun_in_own_process" in request.fixturenames:
        return
    from esus.parts import sun_table
    from shades.sun import TABLE_DAYS, make_table

    async def made_here(path: Path, place, start_s: int) -> str:
        key = (place.latitude, place.longitude, place.altitude_m, start_s // 86400 * 86400)
        if key not in _SUN_TABLES:
            make_table(*key[:3], key[3], days=TABLE_DAYS + 1).save(path)   # from its day's midnight
            _SUN_TABLES[key] = path.read_bytes()
        path.write_bytes(_SUN_TABLES[key])
        return "made in the test's process"

    monkeypatch.setattr(sun_table, "made_elsewhere", made_here)


@pytest.fixture
def sun_in_own_process() -> None:
    """The service's sun table made as in production, by pvlib in a process of its own."""


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    """A writable copy of the example site file."""
    path = tmp_path / "site.toml"
    shutil.copy(example_site_path(), path)
    return path


def esus_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A process environment for running `esus` as a subprocess in tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESUS_")}
    env.update(HOME=str(tmp_path / "home"), XDG_STATE_HOME=str(tmp_path / "xdg-state"),
               GPIOZERO_PIN_FACTORY="mock", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end run last: the quick tests answer first, and it has the machine to itself."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)


# -- every test ends every process it starts -----------------------------------------------------
# pytest is made a child subreaper: a process whose parent dies (a killed service's helpers) is
# re-parented to pytest instead of init, so a test that leaves one behind is caught and named.

PR_SET_CHILD_SUBREAPER = 36


def pytest_configure(config: pytest.Config) -> None:
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):   # not Linux: orphans go to init and are not checked
        pass


def _descendants() -> dict[int, str]:
    """Live descendants of this process: pid -> command line."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    mine, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - mine
        mine |= frontier
    commands = {}
    for pid in mine:
        try:
            commands[pid] = (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip())[:160]
        except OSError:
            continue
    return commands


def _own_resource_tracker() -> int | None:
    """multiprocessing's tracker for this process: started at its first spawn, it lives as long as
    pytest does (a killed service's tracker is another process, and is caught)."""
    from multiprocessing import resource_tracker

    return getattr(resource_tracker._resource_tracker, "_pid", None)


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


@pytest.fixture(autouse=True)
def no_process_left_behind() -> Iterator[None]:
    if not Path("/proc/self/stat").exists():
        yield
        return
    before = set(_descendants())
    yield
    deadline = time.monotonic() + 5   # a process being stopped gets a moment to go
    while (left := {p: c for p, c in _descendants().items() if p not in before and p != _own_resource_tracker()}) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    left.pop(_own_resource_tracker(), None)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _reap()
    assert not left, "the test left processes running (killed now): " + "; ".join(
        f"{pid}: {command}" for pid, command in left.items())
