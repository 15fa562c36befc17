"""esus doctor: each part checked, problems said in plain words."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from esus.cli.main import main
from esus.settings.config import load_settings
from bacnet_server.app import port_is_free
from tests.bacnet_harness import free_udp_port
from tests.tsdb import free_tcp_port
from esus.cli.doctor import check_bacnet, check_bms, check_influx, run_doctor


class FakeBms(http.server.BaseHTTPRequestHandler):
    status = 200
    body = b"[]"
    content_type = "application/json"

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), FakeBms)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def settings_with(site_file: Path, tmp_path: Path, **extra: str):
    env = {"ESUS_SITE": str(site_file), "ESUS_STATE_DIR": str(tmp_path / "state"),
           "GPIOZERO_PIN_FACTORY": "mock"}
    env.update(extra)
    return load_settings(env)


def test_demo_doctor_passes(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESUS_BACNET_ADDRESS", f"127.0.0.1/8:{free_udp_port()}")
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out
    for name in ("settings", "store", "bms", "influxdb", "bacnet", "gpio"):
        assert name in out


def test_bms_unreachable_wrong_password_and_login_page(site_file: Path, tmp_path: Path,
                                                       http_server: http.server.HTTPServer) -> None:
    closed = settings_with(site_file, tmp_path, ESUS_BMS_URL=f"http://127.0.0.1:{free_tcp_port()}",
                           ESUS_BMS_USER="u", ESUS_BMS_PASSWORD="secret-pw")
    check = check_bms(closed)
    assert not check.ok and "refused the connection" in check.detail and "secret-pw" not in check.detail

    url = f"http://127.0.0.1:{http_server.server_port}"
    live = settings_with(site_file, tmp_path, ESUS_BMS_URL=url, ESUS_BMS_USER="u", ESUS_BMS_PASSWORD="pw")
    assert check_bms(live).ok
    FakeBms.status = 401
    try:
        assert "ESUS_BMS_PASSWORD" in check_bms(live).detail
        FakeBms.status, FakeBms.content_type = 200, "text/html"
        assert "login page" in check_bms(live).detail
    finally:
        FakeBms.status, FakeBms.content_type = 200, "application/json"


def test_a_bms_slower_than_the_doctor_waits_is_said_with_both_limits(site_file: Path, tmp_path: Path) -> None:
    from bms_wrapper.simulator import SimulatedBms

    bms = SimulatedBms([], "u", "pw").start()
    bms.faults.next_requests.append("silent")
    try:
        check = check_bms(settings_with(site_file, tmp_path, ESUS_BMS_URL=bms.url, ESUS_BMS_USER="u",
                                        ESUS_BMS_PASSWORD="pw"))
    finally:
        bms.stop()
    assert not check.ok and "in 5 s: too slow" in check.detail
    assert "the doctor waits 5 s; the service waits [bms] deadline_s, 30 s" in check.detail


def test_a_bms_that_lists_its_points_but_fails_every_read_fails_the_doctor(site_file: Path,
                                                                             tmp_path: Path) -> None:
    from bms_wrapper.simulator import SimPoint, SimulatedBms

    listed = settings_with(site_file, tmp_path).site.bms.points
    bms = SimulatedBms([SimPoint(int(p.point_id), p.source, p.kind) for p in listed], "u", "pw").start()
    settings = settings_with(site_file, tmp_path, ESUS_BMS_URL=bms.url, ESUS_BMS_USER="u", ESUS_BMS_PASSWORD="pw")
    try:
        check = check_bms(settings)
        assert check.ok and f"{len(listed)} of the site's found; point {listed[0].point_id} read (" in check.detail
        bms.faults.next_requests.extend([None, "500"])   # the list answers, the read does not
        check = check_bms(settings)
    finally:
        bms.stop()
    assert not check.ok and check.detail == "the BMS answered HTTP 500 once for /api/v1/trenddata"


def test_influx_down(site_file: Path, tmp_path: Path) -> None:
    settings = settings_with(site_file, tmp_path, ESUS_INFLUX_URL=f"http://127.0.0.1:{free_tcp_port()}",
                             ESUS_INFLUX_TOKEN="t", ESUS_INFLUX_ORG="o", ESUS_INFLUX_BUCKET="b")
    check = check_influx(settings)
    assert not check.ok and "is InfluxDB running" in check.detail


def test_bacnet_port_taken_is_found(site_file: Path, tmp_path: Path) -> None:
    port = free_udp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        ok, detail = port_is_free("127.0.0.1", port)
        assert not ok and "already in use" in detail
        settings = settings_with(site_file, tmp_path, ESUS_BACNET_ADDRESS=f"127.0.0.1/8:{port}")
        assert not check_bacnet(settings).ok
    assert port_is_free("127.0.0.1", port)[0]


def test_loopback_bacnet_outside_the_demo_is_a_warning(site_file: Path, tmp_path: Path) -> None:
    settings = settings_with(site_file, tmp_path, ESUS_BACNET_ADDRESS=f"127.0.0.1/8:{free_udp_port()}")
    check = check_bacnet(settings)
    assert check.ok and check.warning and "OT LAN" in check.detail


def test_gpio_without_hardware_says_what_to_do(site_file: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from esus.cli.doctor import check_gpio
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    check = check_gpio(settings_with(site_file, tmp_path, GPIOZERO_PIN_FACTORY=""))
    if not Path("/dev/gpiochip0").exists():
        assert not check.ok and "set GPIOZERO_PIN_FACTORY=mock in .env" in check.detail
        assert "lgpio: No module named 'lgpio'" in check.detail
    assert check_gpio(settings_with(site_file, tmp_path)).ok        # the tests' GPIOZERO_PIN_FACTORY=mock
    (tmp_path / "pins.env").write_text(f"ESUS_SITE={site_file}\nGPIOZERO_PIN_FACTORY=mock\n")
    from_file = load_settings({"ESUS_ENV_FILE": str(tmp_path / "pins.env"), "ESUS_STATE_DIR": str(tmp_path / "s")})
    assert from_file.pin_factory == "mock" and check_gpio(from_file).ok  # from .env, not only the environment
    wrong = check_gpio(settings_with(site_file, tmp_path, GPIOZERO_PIN_FACTORY="lgpi"))
    assert not wrong.ok and "'lgpi' is not a pin library gpiozero knows: use one of lgpio, mock" in wrong.detail


def test_doctor_reads_an_existing_store(site_file: Path, tmp_path: Path) -> None:
    from esus.state.store import HistoryStore
    settings = settings_with(site_file, tmp_path, ESUS_BACNET_ADDRESS=f"127.0.0.1/8:{free_udp_port()}")
    with HistoryStore(settings.state_dir / "history.db") as store:
        store.append("x", 0, 1.0)
    store_check = next(c for c in run_doctor(settings) if c.name == "store")
    assert store_check.ok and "1 series, intact" in store_check.detail


def test_the_forecast_check_says_which_model_and_inputs_the_service_has(site_file: Path, tmp_path: Path) -> None:
    from esus.cli.doctor import check_forecast
    from esus.parts.outdoor import TEMPERATURE_SERIES
    from esus.state.files import StateFiles
    from esus.state.store import HistoryStore
    from forecast.exogenous import known_at_slots
    from forecast.training import train_validated
    from tests.test_forecast_temperature import cooled_office

    settings = settings_with(site_file, tmp_path, ESUS_BACNET_ADDRESS=f"127.0.0.1/8:{free_udp_port()}")
    first = check_forecast(settings)
    assert first.ok and not first.warning and first.detail.startswith("no model yet")
    grid, times, temperature = cooled_office(28)
    model = train_validated(grid.with_temperature(known_at_slots(grid, times - 3600, temperature))).model
    path = StateFiles(settings.state_dir).model
    model.save(path)
    with HistoryStore(settings.state_dir / "history.db") as store:
        store.append(TEMPERATURE_SERIES, 1_780_000_000, 21.25)
    trained = check_forecast(settings)
    assert trained.ok and not trained.warning, trained.detail
    assert "with the outdoor temperature (-" in trained.detail and "90 % bound calibrated at 0.900" in trained.detail
    assert "outdoor temperature auto, last known 2026-05-28 20:26 UTC (21.2 °C)" in trained.detail
    model.info.version = 5
    model.save(path)
    old = check_forecast(settings)
    assert old.ok and old.warning and "is not a version-6 esus power model" in old.detail
