"""Shared fixtures: every test runs in its own empty directory with no ESUS_* settings."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from esus.settings.config import example_site_path

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
