"""A damaged state file never stops the service: each file of the state directory in turn is
truncated, overwritten with random bytes or emptied, and the real service starts on it. The file is
moved aside with one WARNING naming it and what is lost, `esus doctor` lists it, BACnet answers, and
the part that owned it starts afresh."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from demand_response.passwords import hash_password
from esus.cli.doctor import check_state_files
from esus.state.files import StateFiles
from forecast.training import train_validated
from tests.synthetic import office_power
from tests.test_demand_response_shed import in_loop
from tests.test_supervision import running_service
from tests.tsdb import free_tcp_port

FILES: dict[str, Callable[[StateFiles], Path]] = {
    "history": lambda f: f.history, "old outbox": lambda f: f.outbox, "demand response": lambda f: f.demand_response,
    "model": lambda f: f.model, "weather": lambda f: f.weather, "page key": lambda f: f.page_key}
DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda data: data[: len(data) // 2],
    "random bytes": lambda data: os.urandom(max(len(data), 4096)),
    "zero length": lambda data: b""}


def page_env() -> dict[str, str]:
    return {"ESUS_DR_PAGE_USER": "operator", "ESUS_DR_PAGE_PASSWORD_HASH": hash_password("a long password"),
            "ESUS_DR_PAGE_ADDRESS": f"127.0.0.1:{free_tcp_port()}"}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory as a service leaves it, with every file there is."""
    tmp = tmp_path_factory.mktemp("template")

    async def run_once() -> None:
        async with running_service(tmp, env=page_env()) as r:
            await asyncio.sleep(1.0)
            r.service.store.append("power.input_kw", r.service.clock.now(), 12.5)
    asyncio.run(run_once())
    files = StateFiles(tmp / "state")
    files.model.parent.mkdir(parents=True, exist_ok=True)
    train_validated(office_power(16, step_s=900, seed=3)).model.save(files.model)
    files.weather.write_text('{"fetched_at": "2026-06-10T12:00:00+00:00", "payload": {"hourly": {}}}')
    shutil.copy(files.history, files.outbox)   # a release-0.1 outbox.db stands in: any SQLite file is one
    for name, where in FILES.items():
        assert where(files).stat().st_size > 0, name
    return tmp / "state"


@pytest.mark.slow
@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("name", FILES)
def test_a_damaged_state_file_is_set_aside_and_the_service_starts(name: str, damage: str, template: Path,
                                                                  tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    shutil.copytree(template, tmp_path / "state")
    files = StateFiles(tmp_path / "state")
    path = FILES[name](files)
    path.write_bytes(DAMAGE[damage](path.read_bytes()))

    @in_loop
    async def start() -> None:
        with caplog.at_level(logging.WARNING):
            async with running_service(tmp_path, env=page_env()) as r:
                assert await r.answers()
                if name == "page key":     # the page loads its key when it starts
                    await asyncio.sleep(0.5)

    start()
    said = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert len(said) == 1 and str(path) in said[0] and "lost: " in said[0], said
    aside = files.set_aside_files()
    assert [p.name.rpartition(".corrupt-")[0] for p in aside] == [path.name]
    doctor = check_state_files(files_settings(tmp_path))
    assert doctor.warning and aside[0].name in doctor.detail
    assert not any("Traceback" in r.getMessage() for r in caplog.records)


def files_settings(tmp_path: Path):
    from esus.settings.config import load_settings
    from tests.test_supervision import site_file

    return load_settings({"ESUS_SITE": str(site_file(tmp_path)), "ESUS_STATE_DIR": str(tmp_path / "state")},
                         demo=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["history", "demand response"])
def test_a_database_deleted_while_in_use_is_set_aside_and_the_service_starts(
        name: str, template: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Its WAL and SHM stay behind (as when someone deletes the file under a running service)."""
    import sqlite3

    shutil.copytree(template, tmp_path / "state")
    path = FILES[name](StateFiles(tmp_path / "state"))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS scratch (x)")
    conn.execute("INSERT INTO scratch VALUES (1)")
    conn.commit()
    left = {extra: path.with_name(path.name + extra).read_bytes() for extra in ("-wal", "-shm")}
    conn.close()
    path.unlink()
    for extra, data in left.items():
        path.with_name(path.name + extra).write_bytes(data)

    @in_loop
    async def start() -> None:
        with caplog.at_level(logging.WARNING):
            async with running_service(tmp_path, env=page_env()) as r:
                assert await r.answers()

    start()
    said = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert len(said) == 1 and "the file is gone but its WAL and SHM file is left" in said[0], said
    assert not any("Traceback" in r.getMessage() or "disk I/O" in r.getMessage() for r in caplog.records)
