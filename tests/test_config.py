"""Settings: every key's bad value stops the service with one line naming key, value and fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from esus.cli.main import main
from esus.settings.config import load_settings, parse_bacnet_address
from esus.settings.errors import EXIT_BAD_SETTINGS, SettingsError


def configured(site_file: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {"ESUS_SITE": str(site_file), "ESUS_STATE_DIR": str(tmp_path / "state"),
           "ESUS_BACNET_ADDRESS": "127.0.0.1/8:47808"}
    env.update(extra)
    return env


def error_for(environ: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_no_env_file_means_demo_with_the_example_site(tmp_path: Path) -> None:
    settings = load_settings({"XDG_STATE_HOME": str(tmp_path / "xdg-state")})
    assert settings.demo
    assert settings.site.site.name == "TMV23"
    assert settings.state_dir == tmp_path / "xdg-state" / "esus-demo"
    assert settings.bms is None and settings.influx is None


def test_a_complete_configuration_loads(site_file: Path, tmp_path: Path) -> None:
    settings = load_settings(configured(
        site_file, tmp_path, ESUS_BMS_URL="http://127.0.0.1:8080/", ESUS_BMS_USER="esus",
        ESUS_BMS_PASSWORD="pw", ESUS_INFLUX_URL="http://127.0.0.1:8086", ESUS_INFLUX_TOKEN="tok",
        ESUS_INFLUX_ORG="aau", ESUS_INFLUX_BUCKET="esus", ESUS_BACNET_DEVICE_ID="4194302",
        ESUS_LOG_LEVEL="debug"))
    assert not settings.demo
    assert settings.bms.url == "http://127.0.0.1:8080"
    assert settings.bms.password.get_secret_value() == "pw"
    assert settings.influx.bucket == "esus"
    assert settings.device_id == 4194302
    assert settings.bbmd is None
    with_bbmd = load_settings(configured(site_file, tmp_path, ESUS_BACNET_BBMD="10.0.0.5", ESUS_BACNET_BBMD_TTL="120"))
    assert (with_bbmd.bbmd, with_bbmd.bbmd_ttl_s) == ("10.0.0.5:47808", 120)
    assert settings.log_level == "DEBUG"
    assert str(settings.bacnet) == "127.0.0.1/8:47808"


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("ESUS_SITE", "/nonexistent/site.toml", "no such site file"),
    ("ESUS_BMS_URL", "ftp://bms.local", "http:// or https://"),
    ("ESUS_BMS_URL", "http://user:pw@bms.local", "credentials"),
    ("ESUS_INFLUX_URL", "localhost:8086", "http:// or https://"),
    ("ESUS_BACNET_ADDRESS", "192.168.1.20", "ip/prefix"),
    ("ESUS_BACNET_ADDRESS", "192.168.1.300/24", "IPv4 address"),
    ("ESUS_BACNET_ADDRESS", "192.168.1.20/24:99999", "port"),
    ("ESUS_BACNET_ADDRESS", "192.168.1.20/24:bac", "port"),
    ("ESUS_BACNET_DEVICE_ID", "4194303", "4194302"),
    ("ESUS_BACNET_DEVICE_ID", "-1", "whole number"),
    ("ESUS_BACNET_DEVICE_ID", "12a", "whole number"),
    ("ESUS_LOG_LEVEL", "LOUD", "DEBUG"),
    ("ESUS_BACNET_BBMD", "bbmd.local", "IPv4 address"),
    ("ESUS_BACNET_BBMD", "10.0.0.5:70000", "port"),
    ("ESUS_BACNET_BBMD_TTL", "5", "30"),
    ("ESUS_WEATHER_URL", "api.open-meteo.com", "'off' for clear sky only"),
])
def test_bad_value_names_key_value_and_expectation(site_file: Path, tmp_path: Path, key: str,
                                                   value: str, expected: str) -> None:
    message = error_for(configured(site_file, tmp_path, **{key: value}))
    assert key in message or (key == "ESUS_SITE" and str(value) in message)
    assert value in message
    assert expected in message


def test_state_dir_that_cannot_be_written(site_file: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    message = error_for(configured(site_file, tmp_path, ESUS_STATE_DIR=str(blocker / "state")))
    assert "ESUS_STATE_DIR" in message and "not writable" in message


@pytest.mark.parametrize(("given", "missing"), [
    ({"ESUS_BMS_URL": "http://bms"}, "ESUS_BMS_USER"),
    ({"ESUS_BMS_URL": "http://bms", "ESUS_BMS_USER": "u"}, "ESUS_BMS_PASSWORD"),
    ({"ESUS_INFLUX_URL": "http://influx"}, "ESUS_INFLUX_TOKEN"),
    ({"ESUS_INFLUX_URL": "http://influx", "ESUS_INFLUX_TOKEN": "t"}, "ESUS_INFLUX_ORG"),
    ({"ESUS_INFLUX_URL": "http://influx", "ESUS_INFLUX_TOKEN": "t", "ESUS_INFLUX_ORG": "o"},
     "ESUS_INFLUX_BUCKET"),
])
def test_incomplete_groups_name_the_missing_key(site_file: Path, tmp_path: Path, given: dict[str, str],
                                                missing: str) -> None:
    assert missing in error_for(configured(site_file, tmp_path, **given))


def test_a_haystack_token_signs_in_instead_of_a_password_and_only_for_haystack(site_file: Path,
                                                                                 tmp_path: Path) -> None:
    message = error_for(configured(site_file, tmp_path, ESUS_BMS_URL="http://bms", ESUS_BMS_TOKEN="tok-secret"))
    assert 'ESUS_BMS_TOKEN is for [bms] api = "haystack"' in message and "tok-secret" not in message
    site_file.write_text(site_file.read_text().replace('api = "aau-v1"', 'api = "haystack"'))
    settings = load_settings(configured(site_file, tmp_path, ESUS_BMS_URL="http://bms", ESUS_BMS_TOKEN="tok-secret"))
    assert settings.bms is not None and settings.bms.token.get_secret_value() == "tok-secret"
    assert "tok-secret" not in repr(settings)


def test_configured_mode_requires_a_site_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ESUS_LOG_LEVEL=INFO\n")
    assert "ESUS_SITE is missing" in error_for({})


def test_secrets_are_never_printed(site_file: Path, tmp_path: Path) -> None:
    message = error_for(configured(site_file, tmp_path, ESUS_BMS_URL="nonsense", ESUS_BMS_USER="u",
                                   ESUS_BMS_PASSWORD="hunter2-secret", ESUS_INFLUX_TOKEN="tok-secret"))
    assert "hunter2" not in message and "tok-secret" not in message
    settings = load_settings(configured(site_file, tmp_path, ESUS_BMS_URL="http://bms", ESUS_BMS_USER="u",
                                        ESUS_BMS_PASSWORD="hunter2-secret"))
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)


def test_env_file_is_read_and_environment_wins(site_file: Path, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"ESUS_SITE={site_file}\nESUS_STATE_DIR={tmp_path}/s\n"
                                   "ESUS_LOG_LEVEL=WARNING\n# a comment\nOTHER_TOOL=1\n")
    settings = load_settings({"ESUS_LOG_LEVEL": "ERROR"})
    assert not settings.demo
    assert settings.env_file == Path(".env")
    assert settings.log_level == "ERROR"


def test_env_file_with_a_misspelt_key_suggests_the_right_one(site_file: Path, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"ESUS_SITE={site_file}\nESUS_INFLUX_TOKN=abc\n")
    message = error_for({})
    assert "ESUS_INFLUX_TOKN" in message and "did you mean ESUS_INFLUX_TOKEN" in message


def test_env_file_named_but_missing(tmp_path: Path) -> None:
    assert "ESUS_ENV_FILE" in error_for({"ESUS_ENV_FILE": str(tmp_path / "nope.env")})


def test_systemd_state_directory_is_the_default(site_file: Path, tmp_path: Path) -> None:
    settings = load_settings({"ESUS_SITE": str(site_file), "STATE_DIRECTORY": str(tmp_path / "sd")})
    assert settings.state_dir == tmp_path / "sd"


def test_bacnet_address_forms() -> None:
    assert parse_bacnet_address("10.0.0.5/24").port == 47808
    address = parse_bacnet_address("127.0.0.1/8:47809")
    assert (address.ip, address.port, address.interface.network.prefixlen) == ("127.0.0.1", 47809, 8)


def test_cli_exits_2_with_one_line(site_file: Path, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ESUS_SITE": str(site_file),
           "ESUS_BACNET_DEVICE_ID": "many", "ESUS_INFLUX_TOKEN": "sekrit-token"}
    result = subprocess.run([sys.executable, "-m", "esus", "run"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_BAD_SETTINGS
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "ESUS_BACNET_DEVICE_ID = 'many'" in lines[0]
    assert "sekrit" not in result.stderr


def test_doctor_exits_2_on_bad_settings(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESUS_LOG_LEVEL", "chatty")
    assert main(["doctor"]) == EXIT_BAD_SETTINGS
    assert "ESUS_LOG_LEVEL = 'chatty'" in capsys.readouterr().err


OADR3 = {"ESUS_OADR_VERSION": "3.1", "ESUS_OADR_VTN_URL": "https://127.0.0.1:8443/openadr3/3.1.0",
         "ESUS_OADR_VEN_NAME": "tmv23", "ESUS_OADR_PROGRAM": "grid-peak", "ESUS_OADR_CLIENT_ID": "esus",
         "ESUS_OADR_CLIENT_SECRET": "very-secret"}


def test_openadr_3_1_on_python_3_11_is_one_line_naming_the_way_out(site_file: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("esus.settings.config.PYTHON", (3, 11))   # Raspberry Pi OS bookworm's
    message = error_for(configured(site_file, tmp_path, **OADR3))
    assert "ESUS_OADR_VERSION=3.1 needs Python 3.12 or later (openadr3-client)" in message
    assert "use 2.0b, or Raspberry Pi OS trixie" in message


@pytest.mark.skipif(sys.version_info < (3, 12), reason="openadr3-client (the OpenADR 3.1 VEN) needs Python 3.12+")
def test_openadr_3_1_settings_load_and_each_missing_key_is_named(site_file: Path, tmp_path: Path) -> None:
    from demand_response.ven3 import Ven3Config

    settings = load_settings(configured(site_file, tmp_path, **OADR3, ESUS_OADR_SCOPES="ven read"))
    assert isinstance(settings.oadr, Ven3Config)
    assert (settings.oadr.program, settings.oadr.client_id, settings.oadr.scopes, settings.oadr.poll_s) == (
        "grid-peak", "esus", ("ven", "read"), 30.0)
    assert "very-secret" not in repr(settings.oadr)
    for key in ("ESUS_OADR_PROGRAM", "ESUS_OADR_CLIENT_ID", "ESUS_OADR_CLIENT_SECRET"):
        message = error_for(configured(site_file, tmp_path, **{k: v for k, v in OADR3.items() if k != key}))
        assert f"ESUS_OADR_VERSION=3.1 is set, so {key} must be set too" in message
    message = error_for(configured(site_file, tmp_path, **OADR3, ESUS_OADR_VEN_ID="ven-1"))
    assert "ESUS_OADR_VEN_ID is for OpenADR 2.0b" in message


@pytest.mark.skipif(sys.version_info < (3, 12), reason="openadr3-client (the OpenADR 3.1 VEN) needs Python 3.12+")
def test_the_openadr_webhook_listens_where_it_is_told_else_on_the_bacnet_address(site_file: Path,
                                                                                 tmp_path: Path) -> None:
    url = "https://esus.example.com/openadr/notify"
    settings = load_settings(configured(site_file, tmp_path, **OADR3, ESUS_OADR_CALLBACK_URL=url))
    assert settings.oadr.callback_url == url
    assert settings.oadr.callback_listen == (settings.bacnet.ip, 8090)
    settings = load_settings(configured(site_file, tmp_path, **OADR3, ESUS_OADR_CALLBACK_URL=url,
                                        ESUS_OADR_CALLBACK_ADDRESS="127.0.0.5"))
    assert settings.oadr.callback_listen == ("127.0.0.5", 8090)
    message = error_for(configured(site_file, tmp_path, **OADR3, ESUS_OADR_CALLBACK_ADDRESS="127.0.0.5:8091"))
    assert "ESUS_OADR_CALLBACK_ADDRESS is set, so ESUS_OADR_CALLBACK_URL (the URL the VTN calls it by)" in message
    message = error_for(configured(site_file, tmp_path, **OADR3, ESUS_OADR_CALLBACK_URL=url,
                                   ESUS_OADR_CALLBACK_ADDRESS="esus.local:8090"))
    assert "ESUS_OADR_CALLBACK_ADDRESS" in message and "e.g. 192.168.10.20:8090" in message
    message = error_for(configured(site_file, tmp_path, **OADR3, ESUS_OADR_CALLBACK_URL="ftp://x/"))
    assert "ESUS_OADR_CALLBACK_URL" in message and "http:// or https://" in message


def test_openadr_3_1_keys_without_the_version_are_refused(site_file: Path, tmp_path: Path) -> None:
    message = error_for(configured(site_file, tmp_path, ESUS_OADR_VTN_URL="https://127.0.0.1/vtn",
                                   ESUS_OADR_VEN_NAME="tmv23", ESUS_OADR_CLIENT_SECRET="very-secret"))
    assert "ESUS_OADR_CLIENT_SECRET is for OpenADR 3.1: set ESUS_OADR_VERSION=3.1 too" in message
    assert "very-secret" not in message
    message = error_for(configured(site_file, tmp_path, ESUS_OADR_VERSION="3.0"))
    assert "ESUS_OADR_VERSION" in message and "2.0b" in message and "3.1" in message
