"""The service's log: a library's chatter stays out unless ESUS_LOG_LEVEL=DEBUG, whatever level the
library gives its own logger (openleadr sets INFO when it is imported)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from esus.cli.main import setup_logging


@pytest.fixture
def restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_a_library_that_sets_its_own_logger_to_info_is_heard_only_at_debug(
        level: str, restored: None, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(level)
    chatty = logging.getLogger("openleadr")
    chatty.setLevel(logging.INFO)   # as openleadr.client does at import
    chatty.info("sent a report")
    chatty.warning("the VTN refused the report")
    logging.getLogger("esus.status").info("power 20 kW")
    out = capsys.readouterr().out
    assert ("sent a report" in out) == (level == "DEBUG")
    assert "the VTN refused the report" in out and "power 20 kW" in out
