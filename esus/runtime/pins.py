"""The GPIO pins the shades' relays and switches are on: the pin library GPIOZERO_PIN_FACTORY names
(from the environment or `.env`), else the first of gpiozero's own that loads here. Chosen once
at start, so a machine without pins says so in one line instead of a traceback from the first
relay, and `mock` from `.env` is honoured (gpiozero itself reads only the environment)."""

from __future__ import annotations

from importlib.metadata import entry_points

from gpiozero.pins import Factory

from esus.settings.errors import SettingsError

#: gpiozero's own order when nothing is named: lgpio (every Pi, Pi 5 too), then the older ones.
PREFERRED = ("lgpio", "rpigpio", "native")
NO_PINS = ("no GPIO pin library works here ({why}): on a Raspberry Pi install lgpio (apt install python3-lgpio, "
           "as systemd/install.sh does); to try the site file on another machine, set GPIOZERO_PIN_FACTORY=mock in "
           ".env (no relay is moved)")


def load_pin_factory(name: str | None) -> Factory:
    """The pin factory to drive the site's pins with; SettingsError in one line when there is none."""
    found = {ep.name.lower(): ep for ep in entry_points(group="gpiozero_pin_factories")}
    if name is not None:
        entry = found.get(name.lower())
        if entry is None:
            raise SettingsError(f"GPIOZERO_PIN_FACTORY = '{name}' is not a pin library gpiozero knows: use one of "
                                f"{', '.join(sorted(found))}")
        try:
            return entry.load()()
        except Exception as exc:  # noqa: BLE001 - any failure of the library to load is the finding
            raise SettingsError(NO_PINS.format(why=f"{name}: {_short(exc)}")) from None
    failures = []
    for candidate in PREFERRED:
        entry = found.get(candidate)
        if entry is None:
            continue
        try:
            return entry.load()()
        except Exception as exc:  # noqa: BLE001 - try the next library, as gpiozero does
            failures.append(f"{candidate}: {_short(exc)}")
    raise SettingsError(NO_PINS.format(why="; ".join(failures) or "none installed"))


def _short(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:80]
