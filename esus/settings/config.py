"""Deployment settings from the environment and `.env`, plus the site file they point to.

The environment wins over `.env` (as with systemd's EnvironmentFile). With no `.env` and no
ESUS_SITE in the environment, esus runs the embedded demo.
"""

from __future__ import annotations

import difflib
import importlib.util
import ipaddress
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from demand_response.ven import VenConfig
from demand_response.ven3 import Ven3Config
from esus.settings.errors import SettingsError, first_validation_error
from esus.settings.site import Site, load_site
from shades.weather import OPEN_METEO_URL

DEFAULT_BACNET_PORT = 47808
SECRET_KEYS = frozenset({"ESUS_BMS_PASSWORD", "ESUS_BMS_TOKEN", "ESUS_INFLUX_TOKEN", "ESUS_DR_PAGE_PASSWORD_HASH",
                         "ESUS_OADR_CLIENT_SECRET"})
DEFAULT_DR_PAGE_PORT = 8080
DEFAULT_CALLBACK_PORT = 8090   # the OpenADR 3.1 webhook's
#: OpenADR 3.1 only (ESUS_OADR_VERSION=3.1), and 2.0b only
OADR3_KEYS = ("ESUS_OADR_VERSION", "ESUS_OADR_PROGRAM", "ESUS_OADR_CLIENT_ID", "ESUS_OADR_CLIENT_SECRET",
              "ESUS_OADR_TOKEN_URL", "ESUS_OADR_SCOPES", "ESUS_OADR_POLL_S", "ESUS_OADR_CALLBACK_URL",
              "ESUS_OADR_CALLBACK_ADDRESS")
OADR2_ONLY_KEYS = ("ESUS_OADR_VEN_ID", "ESUS_OADR_CERT", "ESUS_OADR_KEY", "ESUS_OADR_VTN_FINGERPRINT")
KNOWN_KEYS = (
    "ESUS_SITE", "ESUS_STATE_DIR", "ESUS_BMS_URL", "ESUS_BMS_USER", "ESUS_BMS_PASSWORD", "ESUS_BMS_TOKEN",
    "ESUS_INFLUX_URL", "ESUS_INFLUX_TOKEN", "ESUS_INFLUX_ORG", "ESUS_INFLUX_BUCKET",
    "ESUS_BACNET_ADDRESS", "ESUS_BACNET_DEVICE_ID", "ESUS_BACNET_BBMD", "ESUS_BACNET_BBMD_TTL", "ESUS_LOG_LEVEL",
    "ESUS_WEATHER_URL",
    "ESUS_OADR_VTN_URL", "ESUS_OADR_VEN_NAME", "ESUS_OADR_VEN_ID", "ESUS_OADR_CERT", "ESUS_OADR_KEY",
    "ESUS_OADR_CA_FILE", "ESUS_OADR_VTN_FINGERPRINT", "ESUS_DR_PAGE_ADDRESS", "ESUS_DR_PAGE_USER",
    "ESUS_DR_PAGE_PASSWORD_HASH", *OADR3_KEYS,
    "GPIOZERO_PIN_FACTORY",   # gpiozero's own, read from .env too (gpiozero reads only the environment)
)
#: A site's own: the demo never takes them from a `.env` (it has its own site, state and simulated
#: BMS, so `esus run --demo` beside a site's .env cannot write into the site's state or poll its BMS).
SITE_ONLY_KEYS = ("ESUS_SITE", "ESUS_STATE_DIR", "ESUS_BMS_URL", "ESUS_BMS_USER", "ESUS_BMS_PASSWORD",
                  "ESUS_BMS_TOKEN", "ESUS_OADR_VTN_URL", "ESUS_DR_PAGE_USER", "ESUS_DR_PAGE_PASSWORD_HASH")
#: Variables that are ours but not settings (they choose the files settings come from).
META_KEYS = ("ESUS_ENV_FILE", "ESUS_BIND_ADDRESS")  # ESUS_BIND_ADDRESS is for docker-compose.yml
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
PYTHON = sys.version_info[:2]


def example_site_path() -> Path:
    """The TMV23 example site file shipped inside the package (used by the demo)."""
    return Path(str(resources.files("esus") / "data" / "site.example.toml"))


@dataclass(frozen=True)
class BacnetAddress:
    interface: ipaddress.IPv4Interface
    port: int

    @property
    def ip(self) -> str:
        return str(self.interface.ip)

    def __str__(self) -> str:
        return f"{self.interface.with_prefixlen}:{self.port}"


def parse_bacnet_address(text: str) -> BacnetAddress:
    """`ip/prefix[:port]`, e.g. `192.168.10.20/24` or `127.0.0.1/8:47808`."""
    host, _, port_text = text.strip().partition(":")
    if "/" not in host:
        raise ValueError("expected ip/prefix[:port], e.g. 192.168.10.20/24 or 127.0.0.1/8:47808")
    try:
        interface = ipaddress.IPv4Interface(host)
    except ValueError:
        raise ValueError("expected an IPv4 address with a prefix length, e.g. 192.168.10.20/24") from None
    port = DEFAULT_BACNET_PORT
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError("the port after ':' must be a number from 1 to 65535 (BACnet uses 47808)")
        port = int(port_text)
    return BacnetAddress(interface, port)


def _http_url(value: str | None) -> str | None:
    if value is None or value.strip() == "":
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL with a host name")
    if parts.username or parts.password:
        raise ValueError("put credentials in their own settings, not in the URL")
    return value.strip().rstrip("/")


def _ip_and_port(value: str | None, default_port: int, expected: str) -> str | None:
    """'ip[:port]' as 'ip:port'; None when empty; ValueError saying what is expected."""
    if value is None or not value.strip():
        return None
    host, _, port = value.strip().partition(":")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"expected {expected}") from None
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError("the port after ':' must be a number from 1 to 65535")
    return f"{host}:{port or default_port}"


class EnvSettings(BaseModel):
    """The ESUS_* variables, named as in `.env.example`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ESUS_SITE: Path | None = None
    ESUS_STATE_DIR: Path | None = None
    GPIOZERO_PIN_FACTORY: str | None = None
    ESUS_BMS_URL: str | None = None
    ESUS_BMS_USER: str | None = None
    ESUS_BMS_PASSWORD: SecretStr | None = None
    ESUS_BMS_TOKEN: SecretStr | None = None
    ESUS_INFLUX_URL: str | None = None
    ESUS_INFLUX_TOKEN: SecretStr | None = None
    ESUS_INFLUX_ORG: str | None = None
    ESUS_INFLUX_BUCKET: str | None = None
    ESUS_BACNET_ADDRESS: BacnetAddress = parse_bacnet_address("127.0.0.1/8")
    ESUS_BACNET_DEVICE_ID: int = Field(default=260001, ge=0, le=4194302)
    ESUS_BACNET_BBMD: str | None = None
    ESUS_BACNET_BBMD_TTL: int = Field(default=900, ge=30, le=65535)
    ESUS_LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    ESUS_WEATHER_URL: str | None = None
    ESUS_OADR_VTN_URL: str | None = None
    ESUS_OADR_VEN_NAME: str | None = Field(default=None, min_length=1, max_length=64)
    ESUS_OADR_VEN_ID: str | None = None
    ESUS_OADR_CERT: Path | None = None
    ESUS_OADR_KEY: Path | None = None
    ESUS_OADR_CA_FILE: Path | None = None
    ESUS_OADR_VTN_FINGERPRINT: str | None = None
    ESUS_OADR_VERSION: Literal["2.0b", "3.1"] = "2.0b"
    ESUS_OADR_PROGRAM: str | None = Field(default=None, min_length=1, max_length=128)
    ESUS_OADR_CLIENT_ID: str | None = Field(default=None, min_length=1, max_length=128)
    ESUS_OADR_CLIENT_SECRET: SecretStr | None = None
    ESUS_OADR_TOKEN_URL: str | None = None
    ESUS_OADR_SCOPES: str | None = None
    ESUS_OADR_POLL_S: float = Field(default=30.0, ge=1, le=3600)
    ESUS_OADR_CALLBACK_URL: str | None = None
    ESUS_OADR_CALLBACK_ADDRESS: str | None = None
    ESUS_DR_PAGE_ADDRESS: str | None = None
    ESUS_DR_PAGE_USER: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._@-]{1,64}$")
    ESUS_DR_PAGE_PASSWORD_HASH: SecretStr | None = None

    @field_validator("ESUS_DR_PAGE_ADDRESS", mode="before")
    @classmethod
    def _page_address(cls, value: str | None) -> str | None:
        return _ip_and_port(value, DEFAULT_DR_PAGE_PORT, "this device's OT LAN address and a TCP port, "
                                                         "e.g. 192.168.10.20:8080")

    @field_validator("ESUS_BACNET_BBMD", mode="before")
    @classmethod
    def _bbmd(cls, value: str | None) -> str | None:
        return _ip_and_port(value, DEFAULT_BACNET_PORT, "the building's BBMD as an IPv4 address and an optional "
                                                        "UDP port, e.g. 192.168.1.5:47808")

    @field_validator("ESUS_DR_PAGE_PASSWORD_HASH", mode="after")
    @classmethod
    def _page_hash(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from demand_response.passwords import check_format
            check_format(value.get_secret_value())
        return value

    @field_validator("ESUS_OADR_CALLBACK_ADDRESS", mode="before")
    @classmethod
    def _callback_address(cls, value: str | None) -> str | None:
        return _ip_and_port(value, DEFAULT_CALLBACK_PORT, "the address the OpenADR webhook listens on, an IPv4 "
                                                          "address and a TCP port, e.g. 192.168.10.20:8090")

    @field_validator("ESUS_BMS_URL", "ESUS_INFLUX_URL", "ESUS_OADR_VTN_URL", "ESUS_OADR_TOKEN_URL",
                     "ESUS_OADR_CALLBACK_URL", mode="before")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return _http_url(value)

    @field_validator("ESUS_WEATHER_URL", mode="before")
    @classmethod
    def _weather_url(cls, value: str | None) -> str | None:
        if isinstance(value, str) and value.strip().lower() == "off":
            return "off"
        try:
            return _http_url(value)
        except ValueError as exc:
            raise ValueError(f"{exc}, or 'off' for clear sky only") from None

    @field_validator("ESUS_BACNET_ADDRESS", mode="before")
    @classmethod
    def _address(cls, value: object) -> object:
        return parse_bacnet_address(value) if isinstance(value, str) else value

    @field_validator("ESUS_LOG_LEVEL", mode="before")
    @classmethod
    def _level(cls, value: object) -> object:
        level = value.strip().upper() if isinstance(value, str) else value
        if level not in LOG_LEVELS:
            raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("ESUS_BACNET_DEVICE_ID", mode="before")
    @classmethod
    def _device_id(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip().isdigit():
            raise ValueError("expected a whole number from 0 to 4194302, unique on the BACnet network")
        return value

    @model_validator(mode="after")
    def _complete_groups(self) -> EnvSettings:
        if self.ESUS_BMS_URL and not (self.ESUS_BMS_USER and self.ESUS_BMS_PASSWORD) and not self.ESUS_BMS_TOKEN:
            raise ValueError("ESUS_BMS_URL is set, so ESUS_BMS_USER and ESUS_BMS_PASSWORD are required too "
                             "(or, for a Haystack server, ESUS_BMS_TOKEN)")
        if self.ESUS_INFLUX_URL:
            missing = [k for k in ("ESUS_INFLUX_TOKEN", "ESUS_INFLUX_ORG", "ESUS_INFLUX_BUCKET")
                       if not getattr(self, k)]
            if missing:
                raise ValueError(f"ESUS_INFLUX_URL is set, so {', '.join(missing)} must be set too")
        if self.ESUS_OADR_VTN_URL and not self.ESUS_OADR_VEN_NAME:
            raise ValueError("ESUS_OADR_VTN_URL is set, so ESUS_OADR_VEN_NAME (the name the VTN knows) is required too")
        if bool(self.ESUS_OADR_CERT) != bool(self.ESUS_OADR_KEY):
            raise ValueError("ESUS_OADR_CERT and ESUS_OADR_KEY go together (the VEN's TLS certificate and its key)")
        if bool(self.ESUS_DR_PAGE_USER) != bool(self.ESUS_DR_PAGE_PASSWORD_HASH):
            raise ValueError("the operator page needs both ESUS_DR_PAGE_USER and ESUS_DR_PAGE_PASSWORD_HASH "
                             "(make the hash with `esus dr hash-password`)")
        if self.ESUS_DR_PAGE_ADDRESS and not self.ESUS_DR_PAGE_USER:
            raise ValueError("ESUS_DR_PAGE_ADDRESS is set, so ESUS_DR_PAGE_USER and ESUS_DR_PAGE_PASSWORD_HASH "
                             "are required too (the page always asks for a login)")
        for key in ("ESUS_OADR_CERT", "ESUS_OADR_KEY", "ESUS_OADR_CA_FILE"):
            path = getattr(self, key)
            if path is not None and not path.is_file():
                raise ValueError(f"{key} = '{path}': no such file (a PEM file from the VTN operator)")
        return self

    @model_validator(mode="after")
    def _openadr_version(self) -> EnvSettings:
        """Each OpenADR version's own keys, and 3.1 only where its client runs."""
        if self.ESUS_OADR_VERSION == "2.0b":
            stray = [k for k in OADR3_KEYS[1:] if getattr(self, k) and k in self.model_fields_set]
            if stray:
                raise ValueError(f"{stray[0]} is for OpenADR 3.1: set ESUS_OADR_VERSION=3.1 too, or remove it")
            return self
        stray = [k for k in OADR2_ONLY_KEYS if getattr(self, k)]
        if stray:
            raise ValueError(f"{stray[0]} is for OpenADR 2.0b; a 3.1 VEN signs in with ESUS_OADR_CLIENT_ID and "
                             "ESUS_OADR_CLIENT_SECRET")
        if PYTHON < (3, 12):
            raise ValueError(f"ESUS_OADR_VERSION=3.1 needs Python 3.12 or later (openadr3-client); this is Python "
                             f"{PYTHON[0]}.{PYTHON[1]}: use 2.0b, or Raspberry Pi OS trixie")
        if importlib.util.find_spec("openadr3_client") is None:
            raise ValueError("ESUS_OADR_VERSION=3.1 needs openadr3-client (Python 3.12 or later): from the checkout, "
                             "pip install '.[oadr3]'")
        needed = ["ESUS_OADR_VTN_URL", "ESUS_OADR_VEN_NAME", "ESUS_OADR_PROGRAM", "ESUS_OADR_CLIENT_ID",
                  "ESUS_OADR_CLIENT_SECRET"]
        missing = [k for k in needed if not getattr(self, k)]
        if missing:
            raise ValueError(f"ESUS_OADR_VERSION=3.1 is set, so {', '.join(missing)} must be set too (from the "
                             "VTN operator)")
        if self.ESUS_OADR_CALLBACK_ADDRESS and not self.ESUS_OADR_CALLBACK_URL:
            raise ValueError("ESUS_OADR_CALLBACK_ADDRESS is set, so ESUS_OADR_CALLBACK_URL (the URL the VTN calls "
                             "it by) is required too")
        return self


@dataclass(frozen=True)
class BmsAccess:
    url: str
    user: str
    password: SecretStr
    token: SecretStr = SecretStr("")   # a Haystack bearer token given instead of a sign-in


@dataclass(frozen=True)
class InfluxAccess:
    url: str
    token: SecretStr
    org: str
    bucket: str


@dataclass(frozen=True)
class OperatorPageAccess:
    host: str
    port: int
    user: str
    password_hash: SecretStr


@dataclass(frozen=True)
class Settings:
    demo: bool
    site_path: Path
    site: Site
    state_dir: Path
    bms: BmsAccess | None
    influx: InfluxAccess | None
    bacnet: BacnetAddress
    device_id: int
    log_level: str
    env_file: Path | None
    weather_url: str | None = None    # None: clear sky only
    oadr: VenConfig | Ven3Config | None = None     # None: no demand response VEN
    dr_page: OperatorPageAccess | None = None  # None: no operator page
    bbmd: str | None = None           # "ip:port": register with the building's BBMD as a foreign device
    bbmd_ttl_s: int = 900
    pin_factory: str | None = None    # GPIOZERO_PIN_FACTORY (None: gpiozero's own choice)
    demo_ignored: tuple[str, ...] = ()  # the site's .env keys the demo left alone (SITE_ONLY_KEYS)


def _default_state_dir(demo: bool, environ: Mapping[str, str]) -> Path:
    if environ.get("STATE_DIRECTORY"):  # set by systemd's StateDirectory=
        return Path(environ["STATE_DIRECTORY"].split(":")[0])
    base = Path(environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / ("esus-demo" if demo else "esus")


def ensure_writable_dir(path: Path, key: str) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".esus-write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SettingsError(f"{key} = '{path}': the state directory is not writable ({reason}): "
                            "create it and give the esus user write access") from None
    return path


def read_environment(environ: Mapping[str, str] | None = None,
                     env_file: Path | None = None) -> tuple[dict[str, str], Path | None]:
    """ESUS_* values from `.env` overlaid by the process environment, and the `.env` used."""
    environ = os.environ if environ is None else environ
    if env_file is None:
        env_file = Path(environ.get("ESUS_ENV_FILE") or ".env")
        if env_file == Path(os.devnull):   # the environment alone, said the usual way
            return {k: v for k, v in environ.items() if k in KNOWN_KEYS}, None
        if not env_file.is_file():
            if environ.get("ESUS_ENV_FILE"):
                raise SettingsError(f"ESUS_ENV_FILE = '{env_file}': no such file: "
                                    "point it at your .env or unset it")
            env_file = None
    values: dict[str, str] = {}
    if env_file is not None:
        try:
            from_file = dotenv_values(env_file)
        except OSError as exc:
            raise SettingsError(f".env file {env_file} cannot be read ({exc.strerror})") from None
        for key, value in from_file.items():
            if key.startswith("ESUS_") and key not in KNOWN_KEYS + META_KEYS:
                hint = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
                suggestion = f"did you mean {hint[0]}?" if hint else "see .env.example for the keys"
                raise SettingsError(f"{env_file}: {key} is not a known setting: {suggestion}")
            if key in KNOWN_KEYS and value is not None:
                values[key] = value
    values.update({k: v for k, v in environ.items() if k in KNOWN_KEYS})
    return values, env_file


def load_settings(environ: Mapping[str, str] | None = None, *, demo: bool | None = None,
                  env_file: Path | None = None) -> Settings:
    """Everything esus needs to start, validated; raises SettingsError with one line."""
    environ = os.environ if environ is None else environ
    values, used_env_file = read_environment(environ, env_file)
    if demo is None:
        demo = used_env_file is None and "ESUS_SITE" not in values
    ignored: tuple[str, ...] = ()
    if demo:   # the demo's own site, state and BMS, whatever the site's .env says (the environment still counts)
        ignored = tuple(k for k in SITE_ONLY_KEYS if k in values and k not in environ)
        values = {k: v for k, v in values.items() if k not in ignored}
    where = f"settings ({used_env_file})" if used_env_file else "settings (environment)"
    sources = {k: "settings (environment)" if k in environ else where for k in values}
    env = first_validation_error(EnvSettings, {k: v for k, v in values.items() if v != ""},
                                 where, hide=SECRET_KEYS, sources=sources)
    if env.ESUS_SITE is None and not demo:
        raise SettingsError(f"{where}: ESUS_SITE is missing: set it to the site file "
                            "(copy site.example.toml and describe your building)")
    site_path = env.ESUS_SITE or example_site_path()
    if not site_path.exists():
        raise SettingsError(f"{where}: ESUS_SITE = {site_path}: no such site file: copy site.example.toml there "
                            "and describe your building (`esus run --demo` runs the demo whatever .env says)")
    site = load_site(site_path)
    state_dir = ensure_writable_dir(env.ESUS_STATE_DIR or _default_state_dir(demo, environ),
                                    "ESUS_STATE_DIR")
    if env.ESUS_BMS_TOKEN and site.bms.api != "haystack":
        raise SettingsError(f"{where}: ESUS_BMS_TOKEN is for [bms] api = \"haystack\" (this site file's is "
                            f"\"{site.bms.api}\"): sign in with ESUS_BMS_USER and ESUS_BMS_PASSWORD, or remove it")
    bms = (BmsAccess(env.ESUS_BMS_URL, env.ESUS_BMS_USER or "", env.ESUS_BMS_PASSWORD or SecretStr(""),
                     env.ESUS_BMS_TOKEN or SecretStr(""))
           if env.ESUS_BMS_URL and (env.ESUS_BMS_PASSWORD or env.ESUS_BMS_TOKEN) else None)
    influx = (InfluxAccess(env.ESUS_INFLUX_URL, env.ESUS_INFLUX_TOKEN, env.ESUS_INFLUX_ORG or "",
                           env.ESUS_INFLUX_BUCKET or "")
              if env.ESUS_INFLUX_URL and env.ESUS_INFLUX_TOKEN else None)
    oadr = _ven_config(env)
    dr_page = None
    if env.ESUS_DR_PAGE_USER and env.ESUS_DR_PAGE_PASSWORD_HASH:
        host, port = _host_port(env.ESUS_DR_PAGE_ADDRESS or f"{env.ESUS_BACNET_ADDRESS.ip}:{DEFAULT_DR_PAGE_PORT}")
        dr_page = OperatorPageAccess(host, port, env.ESUS_DR_PAGE_USER, env.ESUS_DR_PAGE_PASSWORD_HASH)
    return Settings(demo=demo, site_path=site_path, site=site, state_dir=state_dir, bms=bms,
                    influx=influx, bacnet=env.ESUS_BACNET_ADDRESS, device_id=env.ESUS_BACNET_DEVICE_ID,
                    bbmd=env.ESUS_BACNET_BBMD, bbmd_ttl_s=env.ESUS_BACNET_BBMD_TTL,
                    log_level=env.ESUS_LOG_LEVEL, env_file=used_env_file,
                    weather_url=_weather_source(env.ESUS_WEATHER_URL, demo), oadr=oadr, dr_page=dr_page,
                    pin_factory=env.GPIOZERO_PIN_FACTORY, demo_ignored=ignored)


def _ven_config(env: EnvSettings) -> VenConfig | Ven3Config | None:
    if not env.ESUS_OADR_VTN_URL:
        return None
    if env.ESUS_OADR_VERSION == "3.1" and env.ESUS_OADR_CLIENT_SECRET is not None:
        return Ven3Config(vtn_url=env.ESUS_OADR_VTN_URL, ven_name=env.ESUS_OADR_VEN_NAME or "",
                          program=env.ESUS_OADR_PROGRAM or "", client_id=env.ESUS_OADR_CLIENT_ID or "",
                          client_secret=env.ESUS_OADR_CLIENT_SECRET.get_secret_value(),
                          token_url=env.ESUS_OADR_TOKEN_URL, scopes=tuple((env.ESUS_OADR_SCOPES or "").split()),
                          ca_file=env.ESUS_OADR_CA_FILE, poll_s=env.ESUS_OADR_POLL_S,
                          callback_url=env.ESUS_OADR_CALLBACK_URL,
                          callback_listen=_host_port(env.ESUS_OADR_CALLBACK_ADDRESS
                                                     or f"{env.ESUS_BACNET_ADDRESS.ip}:{DEFAULT_CALLBACK_PORT}"))
    return VenConfig(vtn_url=env.ESUS_OADR_VTN_URL, ven_name=env.ESUS_OADR_VEN_NAME or "",
                     ven_id=env.ESUS_OADR_VEN_ID, cert=env.ESUS_OADR_CERT, key=env.ESUS_OADR_KEY,
                     ca_file=env.ESUS_OADR_CA_FILE, vtn_fingerprint=env.ESUS_OADR_VTN_FINGERPRINT)


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.partition(":")
    return host, int(port)


def _weather_source(value: str | None, demo: bool) -> str | None:
    """Open-Meteo by default on a site; the demo stays offline (clear sky) unless a URL is given."""
    if value == "off" or (value is None and demo):
        return None
    return value or OPEN_METEO_URL
