"""A site's first day, as a newcomer walks it: the example files copied and edited as the README
says, `esus doctor` and `esus run` on a machine without GPIO, the demo beside a site's `.env`, the
doctor beside the running service. No traceback, no polluted state, a doctor that agrees with
itself."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from pydantic import SecretStr

from bms_wrapper.transport import connection_problem
from esus.cli.doctor import check_bacnet, check_service, check_wind
from esus.settings.config import example_site_path, load_settings
from esus.settings.errors import SettingsError
from esus.state.files import StateFiles
from tests.bacnet_harness import free_udp_port
from tests.conftest import esus_env

ROOT = Path(__file__).resolve().parent.parent


def a_site(tmp_path: Path, **edits: str) -> Path:
    """The README's step: .env.example and site.example.toml copied and edited for this machine
    (loopback BACnet, a BMS and an InfluxDB that are not there)."""
    site = tmp_path / "site.toml"
    shutil.copy(example_site_path(), site)
    values = {"ESUS_SITE": str(site), "ESUS_STATE_DIR": str(tmp_path / "site-state"),
              "ESUS_BACNET_ADDRESS": f"127.0.0.1/8:{free_udp_port()}", "ESUS_BMS_URL": "http://127.0.0.1:9",
              "ESUS_INFLUX_URL": "http://127.0.0.1:9", "ESUS_WEATHER_URL": "off", **edits}
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        key = line.lstrip("#").split("=", 1)[0]
        lines.append(f"{key}={values.pop(key)}" if "=" in line and key in values else line)
    lines += [f"{key}={value}" for key, value in values.items()]
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    return tmp_path / ".env"


def without_pins(tmp_path: Path) -> dict[str, str]:
    env = esus_env(tmp_path)
    del env["GPIOZERO_PIN_FACTORY"]
    return env


def test_esus_run_without_gpio_says_so_in_one_line(tmp_path: Path) -> None:
    a_site(tmp_path)
    run = subprocess.run([sys.executable, "-m", "esus", "run"], cwd=tmp_path, env=without_pins(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr and "PinFactoryFallback" not in run.stderr
    said = run.stderr.strip().splitlines()
    assert len(said) == 1 and said[0].startswith("esus: no GPIO pin library works here (lgpio:")
    assert "set GPIOZERO_PIN_FACTORY=mock in .env" in said[0]


def start(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "esus", "run", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def until_running(service: subprocess.Popen, health: Path, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert service.poll() is None, service.stdout.read() if service.stdout else ""
        if health.exists() and "pid" in health.read_text():
            return
        time.sleep(0.3)
    raise AssertionError("the service did not come up")


def stop(service: subprocess.Popen) -> str:
    service.send_signal(signal.SIGINT)
    out, _ = service.communicate(timeout=60)
    return out


def test_a_site_file_tried_on_a_laptop_with_mock_pins_from_env_and_the_doctor_beside_it(tmp_path: Path) -> None:
    """README's path from the example files: .env and site file copied and edited, GPIOZERO_PIN_FACTORY
    =mock in .env honoured (gpiozero alone reads only the environment), a BMS that answers (the
    simulator, with the site file's points); the doctor, run beside the service, agrees with it."""
    from bms_wrapper.simulator import SimPoint, SimulatedBms

    site = load_settings({"ESUS_ENV_FILE": "/dev/null", "ESUS_SITE": str(example_site_path()),
                          "ESUS_STATE_DIR": str(tmp_path / "x")}).site
    bms = SimulatedBms([SimPoint(int(p.point_id), p.source, p.kind) for p in site.bms.points], "esus",
                       "change-me").start()
    env_file = a_site(tmp_path, GPIOZERO_PIN_FACTORY="mock", ESUS_BMS_URL=bms.url)
    service = start(tmp_path, without_pins(tmp_path))
    try:
        until_running(service, StateFiles(tmp_path / "site-state").health)
        settings = load_settings({"ESUS_ENV_FILE": str(env_file)})
        assert settings.pin_factory == "mock" and not settings.demo
        bacnet = check_bacnet(settings)
        assert bacnet.ok and "served by the running esus (pid" in bacnet.detail, bacnet.detail
        deadline = time.monotonic() + 60       # the first BMS poll answers
        while "bms" in check_service(settings).detail and time.monotonic() < deadline:
            time.sleep(0.5)
        doctor = subprocess.run([sys.executable, "-m", "esus", "doctor"], cwd=tmp_path, env=without_pins(tmp_path),
                                capture_output=True, text=True, timeout=120)
        said = doctor.stdout
        assert "esus (pid" in said and "FAIL service" not in said, said
        assert "FAIL bacnet" not in said and "ok   bacnet    UDP 127.0.0.1" in said, said
        assert "ok   gpio      mock pins" in said and "ok   bms       " in said and "28 of the site's found" in said
        assert "ok   wind      the anemometer, BMS point 6428" in said
    finally:
        out = stop(service)
        bms.stop()
    assert "Traceback" not in out, out
    assert "BMS poll failed" not in out and "FAULT bms" not in out, out


def test_the_demo_beside_a_site_env_keeps_to_its_own_state_and_bms(tmp_path: Path) -> None:
    env_file = a_site(tmp_path, GPIOZERO_PIN_FACTORY="mock", ESUS_BMS_URL="http://127.0.0.7:8081")
    env = without_pins(tmp_path)
    settings = load_settings({"ESUS_ENV_FILE": str(env_file), "HOME": env["HOME"],
                              "XDG_STATE_HOME": env["XDG_STATE_HOME"]}, demo=True)
    assert settings.demo and settings.bms is None and settings.site_path == example_site_path()
    assert settings.state_dir == Path(env["XDG_STATE_HOME"]) / "esus-demo"
    assert set(settings.demo_ignored) >= {"ESUS_SITE", "ESUS_STATE_DIR", "ESUS_BMS_URL", "ESUS_BMS_PASSWORD"}
    service = start(tmp_path, env, "--demo", "--speed", "60")
    try:
        until_running(service, StateFiles(settings.state_dir).health)
        time.sleep(3)
    finally:
        out = stop(service)
    assert "demo: ESUS_SITE, ESUS_STATE_DIR, ESUS_BMS_URL" in out and "left alone" in out, out
    assert not (tmp_path / "site-state" / "history.db").exists()     # the site's state untouched
    assert "127.0.0.7" not in out                                     # the site's BMS never asked
    # what the environment itself says still counts (the tests' own isolation uses it)
    told = load_settings({"ESUS_ENV_FILE": str(env_file), "ESUS_STATE_DIR": str(tmp_path / "mine")}, demo=True)
    assert told.state_dir == tmp_path / "mine"


def test_a_copied_env_without_its_site_file_points_to_the_demo(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())       # the Grafana step, as README says
    with pytest.raises(SettingsError) as raised:
        load_settings({"ESUS_ENV_FILE": str(tmp_path / ".env")})
    message = str(raised.value)
    assert "ESUS_SITE = /etc/esus/site.toml: no such site file" in message and "esus run --demo" in message


def test_a_site_without_any_wind_fails_the_doctor(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(example_site_path().read_text().replace("wind_point = 6428", "# no anemometer"))
    base = {"ESUS_SITE": str(site), "ESUS_STATE_DIR": str(tmp_path / "s"), "GPIOZERO_PIN_FACTORY": "mock"}
    offline = check_wind(load_settings(base | {"ESUS_WEATHER_URL": "off"}))
    assert not offline.ok and "every blind stays retracted" in offline.detail and "wind_point" in offline.detail
    forecast = check_wind(load_settings(base))
    assert forecast.ok and forecast.warning and "follows the weather forecast's wind" in forecast.detail
    assert check_wind(load_settings(base | {"ESUS_SITE": str(example_site_path())})).detail == \
        "the anemometer, BMS point 6428"


def test_an_unreachable_server_is_said_as_what_it_is() -> None:
    def reason(url: str) -> str:
        try:
            requests.get(url, timeout=2)
        except requests.RequestException as exc:
            return connection_problem(exc)
        raise AssertionError(f"{url} answered")
    assert reason("http://no-such-host.invalid:8086") == "cannot resolve the host name"
    assert reason("http://127.0.0.1:9") == "refused the connection"


def test_influxdb_away_is_one_short_line(tmp_path: Path) -> None:
    from esus.settings.config import InfluxAccess
    from esus.state.influx import InfluxSender, SendError

    sender = InfluxSender(InfluxAccess("http://127.0.0.1:9", SecretStr("t"), "o", "b"))
    try:
        with pytest.raises(SendError) as raised:
            sender.send(["m v=1 1"])
    finally:
        sender.close()
    assert raised.value.message == "http://127.0.0.1:9 refused the connection"
    assert json.dumps(raised.value.message).count("(") == 0


def test_settings_messages_say_where_a_value_came_from_and_no_more(tmp_path: Path) -> None:
    env_file = a_site(tmp_path)
    site = Path(load_settings({"ESUS_ENV_FILE": str(env_file), "GPIOZERO_PIN_FACTORY": "mock"}).site_path)
    # a value from the environment is the environment's, not the .env's
    with pytest.raises(SettingsError, match=r"^settings \(environment\): ESUS_LOG_LEVEL = 'LOUD'"):
        load_settings({"ESUS_ENV_FILE": str(env_file), "ESUS_LOG_LEVEL": "LOUD"})
    with pytest.raises(SettingsError, match=rf"^settings \({env_file}\): ESUS_LOG_LEVEL = 'LOUD'"):
        env_file.write_text(env_file.read_text() + "ESUS_LOG_LEVEL=LOUD\n")
        load_settings({"ESUS_ENV_FILE": str(env_file)})
    # a rule over a whole section: the rule, not the section's 1.5 kB of content
    site.write_text(site.read_text().replace("up_switch_pin = 22", "up_switch_pin = 17"))
    with pytest.raises(SettingsError) as raised:
        load_settings({"ESUS_ENV_FILE": "/dev/null", "ESUS_SITE": str(site), "ESUS_STATE_DIR": str(tmp_path / "s")})
    assert str(raised.value).endswith(": [shades]: GPIO 17 is used twice (east.up_relay_pin and east.up_switch_pin)")
    assert "datetime" not in str(raised.value) and len(str(raised.value)) < 200
    # /dev/null as the .env: the environment alone (the demo when it names no site)
    assert load_settings({"ESUS_ENV_FILE": "/dev/null", "ESUS_STATE_DIR": str(tmp_path / "d")}).demo


def test_the_openadr_client_starts_without_the_signers_deprecation_warnings(tmp_path: Path) -> None:
    """signxml names DSA in its type hints; cryptography warned at every start with demand response."""
    code = ("import asyncio, warnings\n"
            "warnings.simplefilter('default')\n"
            "from demand_response.ven import Ven, VenConfig\n"
            "async def main():\n"
            "    ven = Ven(VenConfig('http://127.0.0.1:9/OpenADR2/Simple/2.0b', 'v'), None, lambda: None, lambda: None)\n"
            "    ven.client = ven._client()\n"
            "    await ven.close()\n"
            "asyncio.run(main())\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "DSA is deprecated" not in run.stderr and "Warning" not in run.stderr, run.stderr
