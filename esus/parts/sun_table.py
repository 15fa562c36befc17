"""pvlib's sun for the shades, made in a process of its own (see shades.sun): at a start when the
state directory has no table for the days ahead, and each night for the fortnight ahead. So the
service answers BACnet without pvlib, SciPy and h5py in its memory. A table that cannot be made is
this part's fault: pvlib then answers in the service (the same sun, more memory) and the next
night tries again."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from esus.parts.training_job import in_own_process
from esus.runtime.supervisor import Health, describe
from shades.sun import Place, write_table

log = logging.getLogger(__name__)

PART = "sun table"
#: a start makes a table when the one on file does not reach this far ahead
NEEDED_AHEAD = timedelta(days=2)
#: a table begins a day before it is made: today's plan reads the sun from the local midnight
BEGINS_BEFORE = timedelta(days=1)
#: pvlib's import and a fortnight of minutes take 2 s on a PC and under a minute on a small Pi
TIMEOUT_S = 300.0


async def made_elsewhere(path: Path, place: Place, start_s: int) -> str:
    """The table from `start_s`, made by pvlib in a spawned process and written at `path`."""
    return await in_own_process(write_table, str(path), place.latitude, place.longitude, place.altitude_m, start_s,
                                timeout_s=TIMEOUT_S)


class SunTableKeeper:
    """Keeps the place's table on file reaching the days ahead (the table itself is shades.sun.SunTable)."""

    def __init__(self, place: Place, health: Health) -> None:
        if place.table_path is None:
            raise ValueError("the place has no table file")
        self.place, self.path, self.health = place, place.table_path, health

    def reaches(self, now: datetime, ahead: timedelta = NEEDED_AHEAD) -> bool:
        """The table on file holds this place's sun from a day before `now` to `ahead` after it."""
        table = self.place.table()
        return table is not None and table.start_s <= (now - BEGINS_BEFORE).timestamp() + 3600 \
            and table.end_s >= (now + ahead).timestamp()

    async def at_start(self, now: datetime) -> None:
        if not self.reaches(now):
            await self.renew(now)

    async def renew(self, due: datetime) -> None:
        """The night's job: a new table from a day before `due`."""
        try:
            said = await made_elsewhere(self.path, self.place, int((due - BEGINS_BEFORE).timestamp()))
        except Exception as exc:  # noqa: BLE001 - any failure of the job is this part's, and pvlib answers meanwhile
            if not self.reaches(due, timedelta(0)):
                self.health.failed(PART, f"no table of the sun ({describe(exc)}): pvlib answers in the service "
                                         "(more memory) until one is made, tried again tonight")
            else:
                self.health.failed(PART, f"the table of the sun was not renewed ({describe(exc)}); the one on file "
                                         "still serves, tried again tonight")
            return
        self.health.recovered(PART)
        log.info("sun table: %s", said)
