"""Wind, ice and lost-wind-data lockout: retract external blinds in wind, in precipitation at or
below the frost temperature (ice would hold the slats), and when the wind reading is missing or
stale (external blinds fail safe); keep them up until it has been calm and dry for a while. The
order of the commercial sun-protection controllers (VDI 3813): these three above the BAS and the
wall switch.

Pure: it takes readings and times (seconds on any monotonic scale) and says locked or not, with
the reason shown to the user. Its state is a small dict, stored so a lockout survives a restart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: What locks, as the group's mode shows it (BACnet shade-{g}-mode).
WIND, FROST, WIND_DATA_LOST = "wind", "frost", "wind-data-lost"
KINDS = (WIND, FROST, WIND_DATA_LOST)


@dataclass
class LockoutSettings:
    retract_mps: float = 12.0
    release_mps: float = 8.0
    release_after_s: float = 600.0
    stale_after_s: float = 900.0   # a wind reading older than this is unknown
    frost_below_c: float = -2.0    # precipitation at or below this: ice


@dataclass
class LockoutState:
    locked: bool = True            # until a first good reading says otherwise
    kind: str = WIND_DATA_LOST     # one of KINDS
    reason: str = "no wind reading yet"
    calm_since_s: float | None = None


class Lockout:
    def __init__(self, settings: LockoutSettings, state: LockoutState | None = None) -> None:
        if settings.release_mps >= settings.retract_mps:
            raise ValueError("release_mps must be below retract_mps")
        self.settings, self.state = settings, state or LockoutState()

    def update(self, now_s: float, wind_mps: float | None, wind_at_s: float | None,
               temperature_c: float | None = None, precipitation: bool = False) -> LockoutState:
        s, st = self.settings, self.state
        ice = temperature_c is not None and temperature_c <= s.frost_below_c and precipitation
        if wind_mps is None or wind_at_s is None:
            self._lock(WIND_DATA_LOST, "no wind reading: retracted as in wind (check the anemometer and the BMS)")
        elif now_s - wind_at_s > s.stale_after_s:
            self._lock(WIND_DATA_LOST, f"wind reading {(now_s - wind_at_s) / 60:.0f} min old: retracted as in wind "
                                       "(check the anemometer and the BMS)")
        elif wind_mps >= s.retract_mps:
            self._lock(WIND, f"wind {wind_mps:.1f} m/s >= {s.retract_mps:g} m/s")
        elif ice:
            self._lock(FROST, f"ice: precipitation at {temperature_c:.1f} °C (<= {s.frost_below_c:g} °C)")
        elif st.locked:
            if wind_mps < s.release_mps:
                if st.calm_since_s is None:
                    st.calm_since_s = now_s
                if now_s - st.calm_since_s >= s.release_after_s:
                    st.locked, st.reason, st.calm_since_s = False, "calm", None
                else:
                    left = s.release_after_s - (now_s - st.calm_since_s)
                    st.reason = f"{st.kind} lockout: releasing after {left / 60:.0f} more calm, dry minute(s)"
            else:
                st.calm_since_s = None
                st.reason = f"wind {wind_mps:.1f} m/s: not yet below {s.release_mps:g} m/s"
        return st

    def _lock(self, kind: str, reason: str) -> None:
        self.state.locked, self.state.kind, self.state.reason, self.state.calm_since_s = True, kind, reason, None

    def to_dict(self) -> dict:
        return asdict(self.state)

    @classmethod
    def from_dict(cls, settings: LockoutSettings, data: dict | None) -> Lockout:
        return cls(settings, LockoutState(**data) if data else None)
