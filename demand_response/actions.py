"""Shed actions: which point of which controller takes which value at each OpenADR signal level.

Pure data and one pure function; the site file declares the actions (see site.example.toml)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

#: OpenADR 2.0b SIMPLE signal levels: 0 normal, 1 moderate, 2 high, 3 special.
LEVELS = (1, 2, 3)

Value = float | int | str  # Real for analog points, "active"/"inactive" for binary, int for multi-state


@dataclass(frozen=True)
class ShedAction:
    """One override: write `values[level]` to a point at `priority` while an event lasts."""
    name: str                      # what an operator reads on the release page
    address: str                   # the controller's BACnet/IP address, "ip[:port]"
    object_id: str                 # "analog-value,3"
    values: dict[int, Value] = field(hash=False)  # signal level -> shed value
    property: str = "present-value"
    priority: int = 10             # a BACnet priority slot, 1-16; 10 is free for non-critical control
    condition: str | None = None   # a name the composer judges now and then (e.g. a shade group's sunny façade)

    def value_at(self, level: int) -> Value | None:
        """The shed value for a signal level: that of the highest configured level at or below it;
        None when the action sits this level out (or the level is 0, normal)."""
        usable = [lvl for lvl in self.values if lvl <= level]
        return self.values[max(usable)] if usable else None


def desired_values(actions: list[ShedAction], level: Callable[[str], int], released: set[str],
                   holds: Callable[[str], bool] = lambda condition: True) -> dict[str, Value | None]:
    """What each action's priority slot should hold now: its shed value at `level(name)`, or None
    (NULL, released). `released` are the actions an operator released for the rest of the current
    events; an action with a condition takes part only while `holds(condition)`."""
    return {a.name: None if a.name in released or (a.condition and not holds(a.condition))
            else a.value_at(level(a.name)) for a in actions}
