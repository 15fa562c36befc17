"""shaystack (Engie's Project Haystack server, PyPI; written by no one here) serving the example
site's points for the BMS contract suite: its URL provider reads an ontology file of the points and
one history file per point, and answers `read` and `hisRead` over HTTP in Zinc or JSON, as any
Haystack server. The histories are the simulated AAU BMS's values at each minute of the windows the
contract reads, stamped in Copenhagen time. shaystack pins old libraries (pyparsing 2, pint 0.17,
Flask 2.1), so it runs from its own virtual environment (`.venv-peers`, made by scripts/test, or the
Python that ESUS_TEST_PEERS_PYTHON names), as a process of its own. A point is taken down by
starting it again with that point's history file missing, which shaystack answers with an error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import requests

from bms_wrapper.simulator import values
from tests.haystack_server import TAGS, UNITS, HaystackPoint, zinc_stamps
from tests.tsdb import free_tcp_port

ROOT = Path(__file__).resolve().parent.parent.parent
INSTALL = "scripts/test makes it: .venv-peers with shaystack[flask]"
#: shaystack's own Flask app, one request at a time: its Zinc grammar (pyparsing 2) is not thread-safe,
#: and under the threaded server of its `shaystack` command concurrent requests fail with 400 at random
SERVE = "import sys; from app.main import app_instance; app_instance.run('127.0.0.1', int(sys.argv[1]), threaded=False)"


def peers_python() -> Path:
    named = os.environ.get("ESUS_TEST_PEERS_PYTHON")
    path = Path(named) if named else ROOT / ".venv-peers" / "bin" / "python"
    if not path.exists():
        raise RuntimeError(f"no Python with shaystack at {path}: {INSTALL}")
    return path


class Shaystack:
    """shaystack on a loopback port, its files in `directory`."""

    def __init__(self, directory: Path, points: list[HaystackPoint], windows: Iterable[tuple[datetime, datetime]]):
        self.directory, self.points = directory, points
        self.port = free_tcp_port()
        self.process: subprocess.Popen[bytes] | None = None
        (directory / "his").mkdir(parents=True, exist_ok=True)
        minutes = np.concatenate([np.arange(int(a.timestamp()) // 60 * 60, int(b.timestamp()), 60)
                                  for a, b in windows])
        stamps = zinc_stamps(minutes)
        for point in points:
            unit = UNITS.get(point.kind, "")
            readings = values(point.sim, minutes)
            rows = [{"ts": f"t:{stamp}", "val": f"n:{value!r}{' ' + unit if unit else ''}"}
                    for stamp, value in zip(stamps, readings.tolist(), strict=True)]
            self._write(f"his/{point.number}.json", ["ts", "val"], rows)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/haystack"

    def _write(self, name: str, columns: list[str], rows: list[dict[str, str]]) -> Path:
        """A grid in Haystack 3 JSON, one of the forms shaystack's URL provider reads."""
        path = self.directory / name
        path.write_text(json.dumps({"meta": {"ver": "3.0"}, "cols": [{"name": c} for c in columns], "rows": rows}))
        return path

    def _ontology(self, missing: set[str]) -> Path:
        rows = []
        for point in self.points:
            row = {"id": f"r:{point.ref} {point.dis}", "dis": f"s:{point.dis}", "navName": f"s:{point.dis}",
                   "point": "m:", "his": "m:", "kind": "s:Number", "tz": "s:Copenhagen",
                   "hisURI": f"s:his/{'missing' if point.ref in missing else point.number}.json"}
            row |= {tag: "m:" for tag in TAGS.get(point.kind, "").split()}
            if UNITS.get(point.kind):
                row["unit"] = f"s:{UNITS[point.kind]}"
            if point.room:
                row["spaceRef"] = f"r:space-{point.room} {point.room}"
            rows.append(row)
        columns = sorted({name for row in rows for name in row}, key=lambda n: (n != "id", n))
        return self._write(f"ontology-{len(missing)}-{time.monotonic_ns()}.json", columns, rows)

    def start(self, missing: Iterable[str] = ()) -> Shaystack:
        """(Again) serving, with the history files of `missing` (refs) gone."""
        self.stop()
        env = dict(os.environ, HAYSTACK_PROVIDER="shaystack.providers.url",
                   HAYSTACK_DB=str(self._ontology(set(missing))), LOG_LEVEL="ERROR")
        log = self.directory / "shaystack.log"   # a file: a pipe nobody reads would stop the server when full
        with log.open("ab") as output:
            self.process = subprocess.Popen([str(peers_python()), "-c", SERVE, str(self.port)], env=env,
                                            stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"shaystack stopped at start: {log.read_text()[-800:]}")
            try:
                requests.get(f"{self.url}/about", timeout=2, headers={"Accept": "text/zinc"})
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("shaystack did not answer within 60 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(10)
        self.process = None
