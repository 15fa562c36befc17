"""The building, as described by the site file (TOML).

Every key is validated at start; an unknown key is an error, because a misspelt threshold that is
silently ignored is worse than a service that refuses to start.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import tomllib
from datetime import time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from bms_wrapper.bacnet import parse_point
from esus.settings.errors import SettingsError, first_validation_error

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from forecast.calendar import WorkCalendar

#: BCM pins that a relay or switch may use. 0-8 have pull-ups at boot and would glitch a relay.
PIN_RANGE = range(9, 28)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteInfo(Model):
    name: str = Field(min_length=1)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    altitude_m: float = Field(default=0.0, ge=-500, le=9000)
    timezone: str
    #: public holidays (non-working days for the forecast): a country code, or country-subdivision
    holidays: str | None = None
    #: words of the names of the holidays the building works on ("Juneteenth", "observed")
    holidays_worked: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_holidays(self) -> SiteInfo:
        self.work_calendar()   # CalendarError (a ValueError) names the code, or the holiday names it has
        return self

    def work_calendar(self) -> WorkCalendar:
        from forecast.calendar import WorkCalendar

        return WorkCalendar(self.holidays, tuple(self.holidays_worked))

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("expected an IANA time zone such as Europe/Copenhagen") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class PowerSettings(Model):
    """Range and freshness of the building power the BAS writes into input-power-meter."""

    min_kw: float = -100.0
    max_kw: float = 2000.0
    stale_after_minutes: float = Field(default=5.0, gt=0, le=1440)

    @model_validator(mode="after")
    def _ordered(self) -> PowerSettings:
        if self.min_kw >= self.max_kw:
            raise ValueError(f"min_kw ({self.min_kw}) must be below max_kw ({self.max_kw})")
        return self


class ForecastSettings(Model):
    trailing_window_days: int = Field(default=30, ge=1, le=365)
    high_percentile: float = Field(default=90.0, gt=50, lt=100)
    low_percentile: float = Field(default=30.0, gt=0, lt=50)
    flag_dwell_minutes: float = Field(default=15.0, ge=0, le=240)
    outdoor_temperature: Literal["auto", "weather", "bms", "none"] = Field(
        default="auto", description="the target hour's outdoor temperature as a forecast input: the weather "
                                    "forecast's, the BMS point's latest reading, or auto (the weather's while fresh, "
                                    "else the BMS point's)")


class HistorySettings(Model):
    retention_days: int = Field(default=400, ge=7, le=3650)


PointKind = Literal[
    "temperature", "setpoint_heating", "setpoint_cooling", "co2", "occupancy",
    "irradiance", "wind_speed", "outdoor_temperature", "power", "energy", "other",
]


def _point_id(value: object) -> object:
    """A BMS point's id as the adapter names it, kept as text: the AAU API's externallogid (a whole
    number), a Haystack ref, a BACnet object."""
    if isinstance(value, bool) or (isinstance(value, int) and value < 0):
        raise ValueError("expected a point id as the BMS lists it: a whole number (externallogid) or a text")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip().removeprefix("@"):
        return value.strip().removeprefix("@")   # a Haystack ref is written with '@' or without
    raise ValueError("expected a point id as the BMS lists it: a whole number (externallogid) or a text")


PointId = Annotated[str, BeforeValidator(_point_id)]
#: The BMS APIs esus reads (the adapters' registry is esus.parts.bms_sources).
BMS_APIS = ("aau-v1", "haystack", "bacnet")


class BmsPoint(Model):
    #: `externallogid` in an AAU BMS API v1 site file, `id` for any API
    point_id: PointId = Field(validation_alias=AliasChoices("id", "externallogid"))
    source: str = Field(min_length=1)
    room: str = Field(min_length=1)
    kind: PointKind
    unit: str = ""


class HaystackSelect(Model):
    """`[[bms.haystack.select]]`: the points a Haystack filter finds are read as one kind, each in the
    room its `room_tag` names (a ref's display name, or a text)."""

    filter: str = Field(min_length=1)
    kind: PointKind
    room_tag: str = Field(default="spaceRef", min_length=1)
    unit: str = Field(default="", description="empty: the unit the server gives")


class HaystackSettings(Model):
    """`[bms.haystack]`: how esus talks to a Project Haystack server."""

    format: Literal["zinc", "json"] = Field(default="zinc", description="zinc (any Haystack version) or json "
                                            "(Haystack 4's)")
    points_filter: str = Field(default="point and his", min_length=1,
                               description="the Haystack filter that lists the points esus may read")
    select: list[HaystackSelect] = Field(default_factory=list)


class BmsSettings(Model):
    api: str = Field(default="aau-v1", description="which BMS API: " + ", ".join(BMS_APIS))
    poll_minutes: int = Field(default=5, ge=1, le=60)
    overlap_hours: float | None = Field(default=None, ge=0, le=48, description="re-read before each mark; "
                                        "unset: 8 h for the HTTP APIs (their lag), 0.25 h for BACnet TrendLogs")
    max_in_flight: int = Field(default=4, ge=1, le=32)
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="for a connection and for each read")
    deadline_s: float = Field(default=30.0, gt=0, le=600,
                              description="for a whole request, retries included; a slower answer is dropped")
    max_reply_mb: float = Field(default=4.0, gt=0, le=256, description="a longer answer is refused while it arrives")
    points: list[BmsPoint] = Field(default_factory=list)
    haystack: HaystackSettings = Field(default_factory=HaystackSettings)

    @property
    def overlap(self) -> timedelta:
        """How much before each point's mark a poll reads again: an HTTP API's history may arrive hours
        late; a TrendLog's records are written as they are logged."""
        hours = self.overlap_hours if self.overlap_hours is not None else 0.25 if self.api == "bacnet" else 8.0
        return timedelta(hours=hours)

    @field_validator("api")
    @classmethod
    def _known_api(cls, value: str) -> str:
        if value not in BMS_APIS:
            raise ValueError(f"unknown BMS API {value!r}: expected one of {', '.join(BMS_APIS)}")
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> BmsSettings:
        if self.deadline_s >= self.poll_minutes * 60:
            raise ValueError(f"deadline_s {self.deadline_s:g} must be shorter than the poll period "
                             f"({self.poll_minutes} minutes), or a slow BMS would make polls overlap")
        if self.haystack.select and self.api != "haystack":
            raise ValueError(f"[[bms.haystack.select]] chooses points on a Haystack server, but api is {self.api!r}: "
                             'set api = "haystack" or remove the select blocks')
        seen: set[str] = set()
        for point in self.points:
            if self.api == "bacnet":
                parse_point(point.point_id)   # its ValueError names the point and the form
            if point.point_id in seen:
                raise ValueError(f"BMS point {point.point_id} is listed twice")
            seen.add(point.point_id)
        return self


Pin = Annotated[int, Field(ge=PIN_RANGE.start, le=PIN_RANGE.stop - 1)]


class ShadeGroup(Model):
    number: int = Field(ge=0, le=99, description="g in the BACnet instances 100+10g")
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    facade_azimuth_deg: float = Field(ge=0, lt=360, description="compass bearing the façade faces")
    window_width_m: float = Field(gt=0, le=20)
    window_height_m: float = Field(gt=0, le=20)
    window_count: int = Field(default=1, ge=1, le=500)
    g_value: float = Field(gt=0, le=1, description="solar energy transmittance of the glazing")
    shade_factor_fc: float = Field(gt=0, le=1, description="share of gain let through when lowered")
    up_relay_pin: Pin
    down_relay_pin: Pin
    up_switch_pin: Pin | None = None
    down_switch_pin: Pin | None = None
    travel_down_s: float = Field(gt=0, le=600)
    travel_up_s: float = Field(gt=0, le=600)
    rooms: list[str] = Field(default_factory=list)
    irradiance_point: PointId | None = None
    manual_hold: Literal["timed", "end-of-day"] = Field(
        default="timed", description="a wall-switch press holds for [shades] manual_hold_minutes, or to midnight")
    escape_door: bool = Field(default=False, description="a door: once a person raised it, never lowered "
                                                         "automatically until a person lowers it")
    floor_area_m2: float | None = Field(default=None, gt=0, le=100_000,
                                        description="floor of the rooms behind the windows; default 6 x window area")
    heating_setpoint_c: float = Field(default=21.0, ge=5, le=30, description="when the BMS gives none")
    cooling_setpoint_c: float = Field(default=25.0, ge=15, le=35, description="when the BMS gives none")
    internal_gains_w_m2: float = Field(default=15.0, ge=0, le=100,
                                       description="people, equipment and light in the occupied hours")

    def pins(self) -> dict[str, int]:
        names = ("up_relay_pin", "down_relay_pin", "up_switch_pin", "down_switch_pin")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    @property
    def window_area_m2(self) -> float:
        return self.window_width_m * self.window_height_m * self.window_count


RETIRED_SHADE_KEYS = {"sunny_on_wm2", "sunny_off_wm2", "lead_minutes", "cooling_outdoor_max_c", "comfort_margin_k"}


class ShadeSettings(Model):
    manual_hold_minutes: float = Field(default=120.0, ge=1, le=24 * 60)
    wind_retract_mps: float = Field(default=12.0, gt=0, le=60)
    wind_release_mps: float = Field(default=8.0, gt=0, le=60)
    wind_release_minutes: float = Field(default=10.0, ge=1, le=240)
    frost_below_c: float = Field(default=-2.0, ge=-20, le=5,
                                 description="precipitation at or below this outdoor temperature: retract (ice)")
    wind_point: PointId | None = None
    outdoor_temperature_point: PointId | None = None
    occupied_from: time = time(7, 0)
    occupied_until: time = time(18, 0)
    occupied_weekdays: list[int] = Field(default=[1, 2, 3, 4, 5], description="ISO weekdays, 1 = Monday")
    min_saving_wh_per_m2: float = Field(
        default=2.0, ge=0, le=100, description="a move must save this much heating and cooling today, per m² "
        "of floor; below it, daylight and view win")
    glare_distance_m: float = Field(default=1.0, gt=0, le=20)
    glare_min_wm2: float = Field(default=150.0, gt=0, le=1500)
    protect_above_wm2: float = Field(default=150.0, gt=0, le=1500, description="VDI 3813 thermal automatic: down "
                                     "from this façade irradiance while a group's room model is not validated")
    release_below_wm2: float = Field(default=120.0, gt=0, le=1500, description="and up again below this")
    heating_season_below_c: float = Field(default=12.0, ge=-20, le=35, description="a day whose forecast outdoor "
                                          "maximum stays below this is a heating day: the rooms take the sun")
    night_position_pct: float = Field(default=0.0, ge=0, le=100)
    min_move_interval_minutes: float = Field(default=15.0, ge=0, le=240)
    min_change_pct: float = Field(default=5.0, ge=0, le=50)
    max_moves_per_day: int = Field(default=4, ge=2, le=100)
    groups: list[ShadeGroup] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _retired(cls, data: Any) -> Any:
        """Keys of the geometry-only policy: an upgraded site file still starts, and says once
        what took their place."""
        retired = sorted(set(data) & RETIRED_SHADE_KEYS) if isinstance(data, dict) else []
        if retired:
            log.warning("[shades] %s: no longer used (the room model decides when and how far to shade: see "
                        "min_saving_wh_per_m2 and the groups' setpoints); remove them from the site file",
                        ", ".join(retired))
            data = {k: v for k, v in data.items() if k not in RETIRED_SHADE_KEYS}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ShadeSettings:
        if self.wind_release_mps >= self.wind_retract_mps:
            raise ValueError(
                f"wind_release_mps ({self.wind_release_mps}) must be below "
                f"wind_retract_mps ({self.wind_retract_mps})")
        if self.release_below_wm2 >= self.protect_above_wm2:
            raise ValueError(f"release_below_wm2 ({self.release_below_wm2:g}) must be below protect_above_wm2 "
                             f"({self.protect_above_wm2:g})")
        if self.occupied_from >= self.occupied_until:
            raise ValueError(f"occupied_from ({self.occupied_from}) must be before "
                             f"occupied_until ({self.occupied_until})")
        if any(not 1 <= d <= 7 for d in self.occupied_weekdays):
            raise ValueError("occupied_weekdays are ISO weekdays from 1 (Monday) to 7 (Sunday)")
        for attribute in ("number", "name"):
            values = [getattr(g, attribute) for g in self.groups]
            duplicates = sorted({v for v in values if values.count(v) > 1})
            if duplicates:
                raise ValueError(f"shade group {attribute} {duplicates[0]} is used twice")
        owner: dict[int, str] = {}
        for group in self.groups:
            for pin_name, pin in group.pins().items():
                here = f"{group.name}.{pin_name}"
                if pin in owner:
                    raise ValueError(f"GPIO {pin} is used twice ({owner[pin]} and {here})")
                owner[pin] = here
        return self


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


OBJECT_ID = re.compile(r"^(analog|binary|multi-state)-(value|output),(\d{1,7})$")


class ShedActionSettings(Model):
    """A point on another controller that demand response overrides during an event."""

    name: str = Field(min_length=1, max_length=64, description="shown on the operator page")
    address: str = Field(description="the controller's BACnet/IP address, ip[:port]")
    object: str = Field(description="object type and instance, e.g. analog-value,3")
    property: str = Field(default="present-value", pattern=r"^[a-z][a-z-]*$")
    priority: int = Field(default=10, ge=1, le=16)
    values: dict[int, float | str] = Field(min_length=1, description="signal level (1-3) -> shed value")
    when_sun_on: str | None = Field(default=None, description="a shade group: act only while the sun is on its façade")

    @field_validator("address")
    @classmethod
    def _ip_port(cls, value: str) -> str:
        host, _, port = value.partition(":")
        if not _is_ipv4(host) or (port and not (port.isdigit() and 1 <= int(port) <= 65535)):
            raise ValueError("expected an IPv4 address with an optional UDP port, e.g. 192.168.1.20:47808")
        return value

    @model_validator(mode="after")
    def _typed_values(self) -> ShedActionSettings:
        match = OBJECT_ID.match(self.object)
        if match is None:
            raise ValueError(f"object {self.object!r}: expected analog-, binary- or multi-state- value or "
                             "output and an instance, e.g. analog-value,3")
        kind = match.group(1)
        for level, value in self.values.items():
            if level not in (1, 2, 3):
                raise ValueError(f"shed action {self.name!r}: signal level {level}; OpenADR's are 1, 2 and 3")
            ok = (value in ("active", "inactive") if kind == "binary" else
                  isinstance(value, float) and value.is_integer() and value >= 1 if kind == "multi-state" else
                  isinstance(value, float))
            if not ok:
                expected = {"binary": '"active" or "inactive"', "multi-state": "a state number from 1",
                            "analog": "a number"}[kind]
                raise ValueError(f"shed action {self.name!r}: level {level} value {value!r} does not fit "
                                 f"{self.object}; expected {expected}")
        return self

    def typed_values(self) -> dict[int, float | int | str]:
        """The shed values as the point's datatype takes them (a state number is an integer)."""
        multi_state = self.object.startswith("multi-state")
        return {level: int(v) if multi_state else v for level, v in self.values.items()}


class ModbusMeterSettings(Model):
    """A Modbus TCP power meter for the VTN's reports (demand_response.meter = "modbus")."""

    host: str
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=247)
    register_address: int = Field(ge=0, le=65535, description="0-based, as in most meters' register maps")
    register_type: Literal["holding", "input"] = "holding"
    data_type: Literal["int16", "uint16", "int32", "uint32", "float32", "float64"] = "float32"
    byte_order: Literal["big", "little"] = "big"
    word_order: Literal["big", "little"] = "big"
    scale: float = Field(default=1.0, description="raw value x scale = kW")
    poll_s: float = Field(default=10.0, ge=1, le=3600)
    timeout_s: float = Field(default=3.0, gt=0, le=60)

    @field_validator("host")
    @classmethod
    def _ip(cls, value: str) -> str:
        if not _is_ipv4(value):
            raise ValueError("expected the meter's IPv4 address, e.g. 192.168.1.50")
        return value

    @field_validator("scale")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if value == 0:
            raise ValueError("a scale of 0 would report 0 kW whatever the meter reads")
        return value


class DemandResponseSettings(Model):
    stage_delay_s: float = Field(default=5.0, ge=0, le=600, description="between one point's write and the next")
    meter: Literal["bacnet", "modbus"] = Field(default="bacnet", description="the power reported to the VTN")
    modbus: ModbusMeterSettings | None = None
    actions: list[ShedActionSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> DemandResponseSettings:
        names = [a.name for a in self.actions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"shed action name {duplicates[0]!r} is used twice")
        if self.meter == "modbus" and self.modbus is None:
            raise ValueError('meter = "modbus" needs a [demand_response.modbus] section (host, register_address, ...)')
        return self


class DemandLimitSettings(Model):
    """Demand limiting: hold the billing period's peak interval with the shed actions (or only
    publish the level, for a BAS that runs its own sequence)."""

    interval_minutes: Literal[15, 30] = Field(default=15, description="the tariff's demand interval")
    billing_day: int = Field(default=1, ge=1, le=28, description="the day of the month a billing period starts")
    target_kw: float | None = Field(default=None, ge=0, description="a fixed target; none: the period's peak so far")
    price_per_kw: float = Field(default=0.0, ge=0, description="the demand charge per kW, for the report")
    act: bool = Field(default=False, description="true: the levels drive the shed actions; false: publish the "
                                                 "level only (the default while the replay bench misses its goals)")
    actions: list[str] = Field(default_factory=list, description="shed actions it uses; empty: all of them")
    shed_pct: tuple[float, float, float] = Field(default=(5.0, 10.0, 15.0),
                                                 description="the share of the building's power each level takes off")
    response_minutes: int = Field(default=2, ge=0, le=10, description="until a shed shows on the meter")
    max_hours_per_day: float = Field(default=3.0, gt=0, le=24, description="the occupants' allowance of shedding")
    dwell_minutes: int = Field(default=3, ge=1, le=120, description="a level holds this long before it falls")
    confidence: float = Field(default=0.9, ge=0.5, le=0.99, description="of the interval's upper bound")

    @field_validator("shed_pct")
    @classmethod
    def _rising(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if not all(0 < v < 100 for v in value) or list(value) != sorted(value):
            raise ValueError("expected three rising percentages between 0 and 100, one per level, e.g. [5, 10, 15]")
        return value


class Site(Model):
    site: SiteInfo
    power: PowerSettings = PowerSettings()
    forecast: ForecastSettings = ForecastSettings()
    history: HistorySettings = HistorySettings()
    bms: BmsSettings = BmsSettings()
    shades: ShadeSettings = ShadeSettings()
    demand_response: DemandResponseSettings = DemandResponseSettings()
    demand_limit: DemandLimitSettings | None = None

    @property
    def outdoor_temperature_point(self) -> str | None:
        """The BMS's outdoor thermometer: the first point of kind outdoor_temperature, else the shades'."""
        listed = (p.point_id for p in self.bms.points if p.kind == "outdoor_temperature")
        return next(listed, self.shades.outdoor_temperature_point)

    @model_validator(mode="after")
    def _known_groups(self) -> Site:
        if self.forecast.outdoor_temperature == "bms" and self.outdoor_temperature_point is None:
            raise ValueError('forecast.outdoor_temperature = "bms" needs a [[bms.points]] entry of kind '
                             '"outdoor_temperature" (or [shades] outdoor_temperature_point)')
        self._demand_limit_actions()
        groups = {g.name for g in self.shades.groups}
        for action in self.demand_response.actions:
            if action.when_sun_on is not None and action.when_sun_on not in groups:
                raise ValueError(f"shed action {action.name!r}: when_sun_on = {action.when_sun_on!r} is not a shade "
                                 f"group (the site file has {', '.join(sorted(groups)) or 'none'})")
        return self


    def _demand_limit_actions(self) -> None:
        limit = self.demand_limit
        if limit is None or not limit.act:
            return
        names = [a.name for a in self.demand_response.actions]
        if not names:
            raise ValueError("demand_limit.act = true needs [[demand_response.actions]] to shed with "
                             "(or act = false to publish the level only)")
        unknown = [n for n in limit.actions if n not in names]
        if unknown:
            raise ValueError(f"demand_limit.actions names {unknown[0]!r}, which is not a shed action (the site "
                             f"file has {', '.join(repr(n) for n in names)})")


def load_site(path: Path) -> Site:
    """Read and validate a site file; any problem raises SettingsError with one line."""
    where = f"site file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"{where} does not exist: set ESUS_SITE to your site file "
                            "(start from site.example.toml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{where} cannot be read ({exc}): check its permissions and encoding") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{where} is not valid TOML: {exc}") from None
    return first_validation_error(Site, raw, where)
