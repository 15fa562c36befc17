"""The files of the state directory, named in one place: the service, `esus doctor` and the
tests all find them here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StateFiles:
    root: Path

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
        return self.root / "model" / "power-model.pkl"

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
