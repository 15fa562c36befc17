"""The files of the state directory, named in one place: the service, `esus doctor` and the
tests all find them here."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from esus.state.sqlite import move_aside

log = logging.getLogger(__name__)

#: The suffix of a state file set aside after damage (then a UTC time): `esus doctor` lists them.
SET_ASIDE = ".corrupt-"


def set_aside(path: Path, why: str, lost: str) -> Path:
    """A damaged state file is renamed `<name>.corrupt-<time>` (kept for inspection), said in one
    WARNING naming the file and what is lost, and the part that owns it starts afresh."""
    moved = move_aside(path)
    log.warning("%s is damaged (%s): moved it to %s and started afresh; lost: %s. Keep the old file for "
                "inspection or delete it.", path, why, moved.name, lost)
    return moved


def json_damage(path: Path) -> str | None:
    """What is wrong with a JSON state file that exists, or None when it parses."""
    try:
        json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@dataclass(frozen=True)
class StateFiles:
    root: Path

    def set_aside_files(self) -> list[Path]:
        """The files moved aside after damage, oldest first."""
        return sorted(self.root.rglob(f"*{SET_ASIDE}*[0-9]Z"), key=lambda p: p.name.rpartition(SET_ASIDE)[2]) \
            if self.root.exists() else []

    @property
    def history(self) -> Path:
        """Samples, small state and the InfluxDB outbox (SQLite)."""
        return self.root / "history.db"

    @property
    def outbox(self) -> Path:
        """The InfluxDB outbox of releases before 0.2; taken over into history.db at start."""
        return self.root / "outbox.db"

    @property
    def model(self) -> Path:
        """The forecast model (numpy arrays and JSON, `forecast.model_file`; never a pickle)."""
        return self.root / "model" / "power-model.npz"

    @property
    def weather(self) -> Path:
        """The last weather forecast (JSON), so a restart without network keeps it."""
        return self.root / "weather.json"

    @property
    def demand_response(self) -> Path:
        """The demand-response ledger (SQLite): events and every override written."""
        return self.root / "demand-response.db"

    @property
    def page_key(self) -> Path:
        """The operator page's session-signing key."""
        return self.root / "operator-page.key"

    @property
    def health(self) -> Path:
        """The running service's parts and their faults (JSON), for `esus doctor`."""
        return self.root / "health.json"
