"""Working and non-working days: weekends and, where the site names a country, its public holidays.

Power history cannot foretell a holiday: a holiday Monday runs like a Sunday, not like the Mondays
before it. So the forecast sees each day's *kind*: its weekday (Monday = 0) on a working day, and
Sunday's (6) on a public holiday. The holidays come from the `holidays` package, for a country and
optionally a subdivision, written "DK" or "US-WI". Many buildings work some public holidays
(a US office open on Juneteenth, or on the weekday a holiday is observed): `worked` names them,
and they stay working days.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

DAY_S = 86400
SUNDAY = 6
#: How far back reference days are looked for; a day with none in this span gets NaN features.
LOOK_BACK_DAYS = 70
NOT_FOUND = 10**6   # days back: far outside any grid, so the feature there is NaN
_EPOCH = date(1970, 1, 1)


class CalendarError(ValueError):
    """The country or subdivision is not one the `holidays` package knows."""


@dataclass(frozen=True)
class WorkCalendar:
    """`country`: ISO 3166 code, with an optional subdivision after a hyphen ("US-WI"); None: only
    weekends are non-working. `worked`: words of the names of holidays the building works on
    ("Juneteenth", "observed"), any case; each must name at least one of the country's holidays."""

    country: str | None = None
    worked: tuple[str, ...] = ()
    _cache: dict[int, frozenset[date]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.country is not None:
            self._holidays_of(2000)   # an unknown country fails here, where the setting is read
        names = self.holiday_names(range(2020, 2031)) if self.worked else set()
        for word in self.worked:
            if not any(word.lower() in name.lower() for name in names):
                raise CalendarError(f"holidays_worked: {word!r} names no holiday of {self.country or 'no country'} "
                                    f"(its holidays: {', '.join(sorted(names)) or 'none'})")

    def holiday_names(self, years: range) -> set[str]:
        if self.country is None:
            return set()
        return {name for year in years for name in self._named(year).values()}

    def _named(self, year: int) -> dict[date, str]:
        import holidays

        code, _, subdivision = (self.country or "").partition("-")
        try:
            # English names whatever the install's translations or the locale: holidays_worked is written
            # in English ("Juneteenth", "observed"), and left alone the names came in Danish on one install
            found = holidays.country_holidays(code.upper(), subdiv=subdivision.upper() or None, years=year,
                                              language="en_US")
        except NotImplementedError as exc:
            raise CalendarError(f"holidays '{self.country}': {exc} (write a country code such as DK, or "
                                "country-subdivision such as US-WI)") from None
        return dict(found.items())

    def _holidays_of(self, year: int) -> frozenset[date]:
        if self.country is None:
            return frozenset()
        if year not in self._cache:
            worked = [word.lower() for word in self.worked]
            self._cache[year] = frozenset(day for day, name in self._named(year).items()
                                          if not any(word in name.lower() for word in worked))
        return self._cache[year]

    def holidays_between(self, first: date, last: date) -> list[date]:
        return sorted(d for year in range(first.year, last.year + 1) for d in self._holidays_of(year)
                      if first <= d <= last)

    def day_kinds(self, local_day: np.ndarray) -> np.ndarray:
        """Kind (0-6) of each local day number (days since 1970-01-01): the weekday, Sunday on a holiday."""
        local_day = np.asarray(local_day, dtype=np.int64)
        kinds = (local_day + 3) % 7   # 1970-01-01 was a Thursday
        if self.country is not None and local_day.size:
            days, back = np.unique(local_day, return_inverse=True)
            holiday = set(self.holidays_between(_EPOCH + timedelta(int(days[0])), _EPOCH + timedelta(int(days[-1]))))
            is_holiday = np.array([_EPOCH + timedelta(int(d)) in holiday for d in days])
            kinds = np.where(is_holiday[back.reshape(local_day.shape)], SUNDAY, kinds)
        return kinds

    def reference_days(self, day: np.ndarray, count: int) -> np.ndarray:
        """For each local day number, how many days back the `count` latest earlier days of the same
        kind lie (shape (n, count)): a Monday's Mondays, skipping holiday Mondays; a holiday's Sundays
        and holidays."""
        day = np.asarray(day, dtype=np.int64)
        if day.size == 0:
            return np.full((0, count), NOT_FOUND, dtype=np.int64)
        first, last = int(day.min()) - LOOK_BACK_DAYS, int(day.max())
        keys = self.day_kinds(np.arange(first, last + 1))
        targets, back = np.unique(day, return_inverse=True)
        table = np.full((targets.size, count), NOT_FOUND, dtype=np.int64)
        for row, target in enumerate(targets.tolist()):
            key = keys[target - first]
            found = [target - d for d in range(target - 1, target - LOOK_BACK_DAYS - 1, -1) if keys[d - first] == key]
            table[row, :min(count, len(found))] = found[:count]
        return table[back.reshape(-1)]

    def kinds_at(self, local_s: np.ndarray) -> np.ndarray:
        """Kind of the local day of each wall-clock time (epoch seconds)."""
        return self.day_kinds(np.asarray(local_s, dtype=np.int64) // DAY_S)

    def working_on(self, day: date) -> bool:
        """Whether a local date is a working day (Monday to Friday, not a public holiday)."""
        return bool(self.day_kinds(np.array([(day - _EPOCH).days]))[0] < 5)

    def working_at(self, local_s: np.ndarray) -> np.ndarray:
        """True on Monday to Friday unless a public holiday."""
        return self.kinds_at(local_s) < 5
