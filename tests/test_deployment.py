"""Deployment artefacts: compose file, Grafana provisioning and dashboards, systemd unit, sd_notify."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from esus.runtime.systemd import notify, watchdog_period_s
from esus.settings.config import load_settings
from esus.state.telemetry import SCHEMA, schema_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_schema_doc_is_current() -> None:
    assert schema_markdown() in (ROOT / "docs" / "influx-schema.md").read_text(), \
        "docs/influx-schema.md is out of date with esus/state/telemetry.py"


def test_compose_file_pins_versions_binds_localhost_and_checks_health() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"influxdb", "grafana"}
    for name, service in services.items():
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+", image), f"{name}: pin an exact version, not {image}"
        assert "healthcheck" in service
        for port in service["ports"]:
            assert port.startswith("${ESUS_BIND_ADDRESS:-127.0.0.1}:")
    influx = services["influxdb"]
    assert "influxdb-data:/var/lib/influxdb2" in influx["volumes"]
    assert influx["environment"]["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert "ESUS_INFLUX_TOKEN" in influx["environment"]["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    assert "grafana-data:/var/lib/grafana" in services["grafana"]["volumes"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "INFLUXDB_ADMIN_PASSWORD": "x", "ESUS_INFLUX_TOKEN": "t",
               "GRAFANA_ADMIN_PASSWORD": "y"}
        result = subprocess.run(["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                                capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr


def test_grafana_datasource_provisioning() -> None:
    source = yaml.safe_load((ROOT / "grafana/provisioning/datasources/esus.yml").read_text())["datasources"][0]
    assert source["uid"] == "esus-influxdb" and source["jsonData"]["version"] == "InfluxQL"
    assert source["jsonData"]["dbName"] == "${ESUS_INFLUX_BUCKET}"
    assert source["secureJsonData"]["httpHeaderValue1"] == "Token ${ESUS_INFLUX_TOKEN}"
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/esus.yml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_file_verifies_without_warnings(tmp_path: Path) -> None:
    unit = (ROOT / "systemd" / "esus.service").read_text()
    for key in ("Type=notify", "WatchdogSec=", "ProtectSystem=strict", "StateDirectory=esus", "NoNewPrivileges=true",
                "CapabilityBoundingSet=\n", "SupplementaryGroups=gpio", "Restart=on-failure"):
        assert key in unit, key
    # the program lives in /opt/esus/venv on the Pi; point ExecStart at an executable that exists here
    executable = tmp_path / "esus"
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    (tmp_path / "esus.service").write_text(unit.replace("/opt/esus/venv/bin/esus", str(executable)))
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "esus.service")],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "" and result.stderr.strip() == "", \
        result.stdout + result.stderr


def test_influxdb2_maps_the_influxql_database_at_setup() -> None:
    """The dashboards' InfluxQL reaches InfluxDB 2's bucket through a DBRP mapping made at setup."""
    influx = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["influxdb"]
    assert "./grafana/influxdb-init:/docker-entrypoint-initdb.d:ro" in influx["volumes"]
    script = ROOT / "grafana" / "influxdb-init" / "dbrp.sh"
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    assert "DOCKER_INFLUXDB_INIT_BUCKET" in influx["environment"]
    assert "influx v1 dbrp create" in script.read_text()


def test_install_script_is_valid_bash() -> None:
    assert subprocess.run(["bash", "-n", str(ROOT / "systemd" / "install.sh")]).returncode == 0


def test_the_install_steps_survive_a_password_with_a_quote_and_a_space(tmp_path: Path) -> None:
    """The printed doctor step lets esus read esus.env itself (no shell word splitting), and the
    unit's Documentation= is a file the script installs."""
    script = (ROOT / "systemd" / "install.sh").read_text()
    assert "xargs" not in script and "ESUS_ENV_FILE=/etc/esus/esus.env" in script
    documentation = next(line for line in (ROOT / "systemd" / "esus.service").read_text().splitlines()
                         if line.startswith("Documentation="))
    installed = documentation.removeprefix("Documentation=file://")
    assert f'"$src/README.md" {installed}' in script
    env = tmp_path / "esus.env"
    env.write_text(f"ESUS_SITE={ROOT / 'site.example.toml'}\nESUS_BMS_URL=https://bms.example\n"
                   "ESUS_BMS_USER=esus\nESUS_BMS_PASSWORD='a pass \"word\"'\n")
    settings = load_settings({"ESUS_ENV_FILE": str(env), "ESUS_STATE_DIR": str(tmp_path / "s")})
    assert settings.bms is not None and settings.bms.password.get_secret_value() == 'a pass "word"'
    env.write_text(env.read_text().replace("'a pass \"word\"'", '"it\'s a pass word"'))
    settings = load_settings({"ESUS_ENV_FILE": str(env), "ESUS_STATE_DIR": str(tmp_path / "s")})
    assert settings.bms.password.get_secret_value() == "it's a pass word"


def test_the_fleet_playbook_says_how_to_use_it() -> None:
    ansible = ROOT / "deploy" / "ansible"
    readme = (ansible / "README.md").read_text()
    assert "ansible-vault create deploy/ansible/group_vars/esus/vault.yml" in readme
    assert (ansible / "group_vars" / "esus").is_dir()
    assert "group_vars/esus/vault.yml" in (ansible / "inventory.example.yml").read_text()


def test_sd_notify_reaches_the_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        assert notify("READY=1", {"NOTIFY_SOCKET": path})
        assert listener.recv(100) == b"READY=1"
    assert not notify("READY=1", {})
    assert watchdog_period_s({"WATCHDOG_USEC": "120000000"}) == 60.0
    assert watchdog_period_s({}) is None
