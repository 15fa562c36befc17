"""The sun over a place: pvlib's position and clear sky, kept in a table for the service.

Importing pvlib loads SciPy and h5py with it: 60 MB of a small Pi's memory, in the process that
answers BACnet, for two things a minute: where the sun is and what a clear sky gives. So another
process asks pvlib for them, every minute of the next TABLE_DAYS, and keeps the answers in a table
of plain arrays (`SunTable`, an .npz file); the service looks them up (`Place`). Where no table
covers the times asked (a tool, a test, a table not made yet), `Place` asks pvlib itself: the
answers are the same either way, only the memory differs.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: how far ahead a table reaches: a fortnight, so a service whose nightly renewal fails for days
#: still has its sun
TABLE_DAYS = 15
STEP_S = 60
#: pvlib's names: apparent (refracted) elevation and zenith, azimuth (compass, degrees); the
#: Ineichen clear sky (W/m²)
COLUMNS = ("apparent_elevation", "azimuth", "apparent_zenith", "ghi", "dni", "dhi")
FORMAT = "esus sun table 1"


class SunTableError(ValueError):
    """A table file that cannot be used (damaged, foreign, another format)."""


@dataclass(frozen=True)
class SunTable:
    """pvlib's sun over one place, every `step_s` seconds from `start_s` (Unix time).

    On file, an .npz of plain arrays: `format` ("esus sun table 1"), `made_by` (pvlib's version),
    `place` (latitude, longitude in degrees, altitude in m), `steps` (start_s, step_s) and `values`
    (float64, a row per step, the columns of COLUMNS)."""

    latitude: float
    longitude: float
    altitude_m: float
    start_s: int
    step_s: int
    values: np.ndarray          # rows of times, COLUMNS
    made_by: str                # the pvlib version that computed it

    @property
    def end_s(self) -> int:
        return self.start_s + (len(self.values) - 1) * self.step_s

    def is_for(self, latitude: float, longitude: float, altitude_m: float) -> bool:
        return (self.latitude, self.longitude, self.altitude_m) == (latitude, longitude, altitude_m)

    def covers(self, times_s: np.ndarray) -> bool:
        return bool(len(times_s)) and self.start_s <= float(np.min(times_s)) and float(np.max(times_s)) <= self.end_s

    def lookup(self, times_s: np.ndarray) -> np.ndarray:
        """The columns at `times_s` (within the table): exact on its steps, linear between them
        (the azimuth along its shorter way round)."""
        at = (np.asarray(times_s, dtype=float) - self.start_s) / self.step_s
        knots = np.arange(len(self.values), dtype=float)
        out = np.empty((len(at), len(COLUMNS)))
        for i, name in enumerate(COLUMNS):
            column = self.values[:, i]
            if name == "azimuth":
                out[:, i] = np.interp(at, knots, np.unwrap(column, period=360.0)) % 360.0
            else:
                out[:, i] = np.interp(at, knots, column)
        return out

    def save(self, path: Path) -> None:
        """Written whole or not at all (a temporary file renamed over the old one)."""
        part = path.with_name(path.name + ".part")
        with open(part, "wb") as file:
            np.savez_compressed(file, values=self.values, format=np.array(FORMAT), made_by=np.array(self.made_by),
                                place=np.array([self.latitude, self.longitude, self.altitude_m]),
                                steps=np.array([self.start_s, self.step_s]))
        part.replace(path)

    @classmethod
    def load(cls, path: Path) -> SunTable:
        """Plain arrays only (no pickle is ever loaded); a damaged or foreign file is SunTableError."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["format"]) != FORMAT:
                    raise SunTableError(f"{path}: {str(data['format'])!r} is not an esus sun table")
                latitude, longitude, altitude_m = (float(v) for v in data["place"])
                start_s, step_s = (int(v) for v in data["steps"])
                values = np.asarray(data["values"], dtype=float)
                made_by = str(data["made_by"])
        except SunTableError:
            raise
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise SunTableError(f"{path}: not a readable sun table ({type(exc).__name__}: {exc})") from None
        if values.ndim != 2 or values.shape[1] != len(COLUMNS) or len(values) < 2 or step_s <= 0:
            raise SunTableError(f"{path}: a sun table of shape {values.shape}, step {step_s} s cannot be used")
        return cls(latitude, longitude, altitude_m, start_s, step_s, values, made_by)


def by_pvlib(latitude: float, longitude: float, altitude_m: float, times: pd.DatetimeIndex) -> np.ndarray:
    """COLUMNS at `times`, from pvlib (SPA at the altitude's pressure, Ineichen with the Linke turbidity)."""
    from pvlib.location import Location  # only here: a table spares the service the import

    location = Location(latitude, longitude, altitude=altitude_m)
    position, clear = location.get_solarposition(times), location.get_clearsky(times)
    return np.column_stack([position[c].to_numpy(dtype=float) for c in COLUMNS[:3]]
                           + [clear[c].to_numpy(dtype=float) for c in COLUMNS[3:]])


def make_table(latitude: float, longitude: float, altitude_m: float, start_s: int, days: int = TABLE_DAYS,
               step_s: int = STEP_S) -> SunTable:
    """The table from `start_s` (floored to a step) over `days`: for a process that may import pvlib."""
    import pvlib

    start_s = start_s // step_s * step_s
    times = pd.date_range(pd.Timestamp(start_s, unit="s", tz="UTC"), periods=days * 86400 // step_s + 1,
                          freq=f"{step_s}s")
    return SunTable(latitude, longitude, altitude_m, start_s, step_s,
                    by_pvlib(latitude, longitude, altitude_m, times), pvlib.__version__)


def write_table(path: str, latitude: float, longitude: float, altitude_m: float, start_s: int,
                days: int = TABLE_DAYS) -> str:
    """`make_table` saved at `path` (the nightly job, in a process of its own); says what it wrote."""
    table = make_table(latitude, longitude, altitude_m, start_s, days)
    table.save(Path(path))
    return (f"{len(table.values)} minutes from {pd.Timestamp(table.start_s, unit='s', tz='UTC'):%Y-%m-%d %H:%M} UTC "
            f"(pvlib {table.made_by})")


class Place:
    """A place on Earth and the sun over it: pvlib's Location's fields, and its answers read from
    the table at `table_path` where it covers the times asked (re-read when the file changes)."""

    def __init__(self, latitude: float, longitude: float, altitude_m: float, tz: str,
                 table_path: Path | None = None) -> None:
        self.latitude, self.longitude, self.altitude_m, self.tz = latitude, longitude, altitude_m, tz
        self.table_path = table_path
        self._table: SunTable | None = None
        self._seen: tuple[float, int] | None = None   # the file's mtime and size when read
        self.asked_pvlib = 0                           # answers pvlib gave in this process (none: no import)

    def position(self, times: pd.DatetimeIndex) -> pd.DataFrame:
        """Columns elevation_deg, azimuth_deg, apparent_zenith_deg (refraction included)."""
        values = self._columns(times)
        return pd.DataFrame({"elevation_deg": values[:, 0], "azimuth_deg": values[:, 1],
                             "apparent_zenith_deg": values[:, 2]}, index=times)

    def clear_sky(self, times: pd.DatetimeIndex) -> pd.DataFrame:
        """Columns ghi, dni, dhi of the Ineichen clear sky, W/m²."""
        values = self._columns(times)
        return pd.DataFrame({"ghi": values[:, 3], "dni": values[:, 4], "dhi": values[:, 5]}, index=times)

    def table(self) -> SunTable | None:
        """The table on file for this place, read again when the file changed; None without one."""
        if self.table_path is None:
            return None
        try:
            stat = self.table_path.stat()
        except OSError:
            self._table, self._seen = None, None
            return None
        if self._seen != (stat.st_mtime, stat.st_size):
            self._seen = (stat.st_mtime, stat.st_size)
            try:
                table = SunTable.load(self.table_path)
            except SunTableError as exc:
                log.warning("%s: the sun comes from pvlib in the service until the night's table replaces it", exc)
                table = None
            self._table = table if table and table.is_for(self.latitude, self.longitude, self.altitude_m) else None
        return self._table

    def _columns(self, times: pd.DatetimeIndex) -> np.ndarray:
        aware = times if times.tz is not None else times.tz_localize(self.tz)
        times_s = aware.as_unit("ns").asi8 / 1e9
        table = self.table()
        if table is not None and table.covers(times_s):
            return table.lookup(times_s)
        self.asked_pvlib += 1
        return by_pvlib(self.latitude, self.longitude, self.altitude_m, aware)
