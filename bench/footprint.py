"""What esus costs a small Pi: time until the BACnet device answers, time to the first status line,
the service's resident memory after start, after a simulated day and while the nightly training
runs (the service and its training process apart), and the import time of each top-level package
on the service's path.

    .venv/bin/python bench/footprint.py [--speed 1440] [--day-s 70] [--only demo|site]
    python3 bench/footprint.py --probe PORT   # the seconds until a device on loopback PORT answers
                                              # (the standard library only: scripts/arm64-smoke)

Two configurations: the demo (no .env) and a site (the example site file with mock pins, a
simulated BMS on loopback and no weather); each runs `esus run --speed N` in a fresh HOME and state
directory, so one simulated day passes in 86400/N real seconds. Goals (issue 35): RSS <= 150 MB
after a simulated day; ReadProperty answered <= 2 s after start on x86.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ESUS = str(Path(sys.executable).with_name("esus"))


def read_property_request(invoke_id: int) -> bytes:
    """ReadProperty of the wildcard device's object-name (any device answers for 4194303)."""
    device = (8 << 22) | 4194303
    apdu = bytes([0x00, 0x05, invoke_id, 0x0C, 0x0C]) + device.to_bytes(4, "big") + bytes([0x19, 77])
    body = bytes([0x01, 0x04]) + apdu
    return bytes([0x81, 0x0A]) + (len(body) + 4).to_bytes(2, "big") + body


def first_answer_s(port: int, started: float, deadline_s: float = 120.0) -> float | None:
    """Seconds from `started` until the device on loopback `port` answers a ReadProperty."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.05)
        invoke = 0
        while time.monotonic() - started < deadline_s:
            invoke = (invoke + 1) % 256
            sock.sendto(read_property_request(invoke), ("127.0.0.1", port))
            try:
                reply = sock.recv(1500)
            except OSError:
                continue
            if len(reply) > 6 and reply[6] >> 4 == 3:   # a ComplexACK
                return time.monotonic() - started
    return None


def rss_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else None


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def run_one(name: str, env: dict[str, str], speed: float, day_s: float) -> None:
    port = int(env["ESUS_BACNET_ADDRESS"].rsplit(":", 1)[1])
    started = time.monotonic()
    service = subprocess.Popen([ESUS, "run", "--speed", f"{speed:g}"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    first_status: list[float] = []
    lines: list[str] = []

    def read_output() -> None:
        assert service.stdout is not None
        for line in service.stdout:
            lines.append(line)
            if "esus.status" in line and not first_status:
                first_status.append(time.monotonic() - started)

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    answered = first_answer_s(port, started)
    while not first_status and time.monotonic() - started < 120 and service.poll() is None:
        time.sleep(0.1)
    after_start = rss_mb(service.pid)
    service_max, training_max = after_start or 0.0, 0.0
    end = time.monotonic() + day_s
    while time.monotonic() < end and service.poll() is None:
        service_max = max(service_max, rss_mb(service.pid) or 0.0)
        for child in children(service.pid):
            training_max = max(training_max, rss_mb(child) or 0.0)
        time.sleep(0.2)
    after_day = rss_mb(service.pid)
    service.terminate()
    try:
        service.wait(30)
    except subprocess.TimeoutExpired:
        service.kill()
    trained = any("forecast training: held-out RMSE" in line for line in lines)

    def mb(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0f} MB"

    print(f"{name}: ReadProperty answered after {answered if answered is None else round(answered, 2)} s, first "
          f"status line after {first_status[0] if first_status else float('nan'):.1f} s; service RSS after start "
          f"{mb(after_start)}, after a simulated day {mb(after_day)} (max {service_max:.0f} MB); training process "
          f"max {training_max:.0f} MB{'' if trained else ' (no training seen)'}")


def import_times() -> None:
    """Each top-level package's own import time (µs summed over its modules), `import esus.service`."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import esus.service"], capture_output=True,
                            text=True, check=True, cwd=ROOT)
    own: dict[str, int] = defaultdict(int)
    for line in result.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[0].startswith("import time:") and parts[0].split(":")[1].strip().isdigit():
            own[parts[2].strip().split(".")[0]] += int(parts[0].split(":")[1])
    total = sum(own.values())
    print(f"import esus.service: {total / 1e6:.2f} s of imports; the largest top-level packages:")
    for package, micro in sorted(own.items(), key=lambda item: -item[1])[:12]:
        print(f"  {package:20} {micro / 1e3:7.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", type=float, default=1440, help="simulated seconds per real second")
    parser.add_argument("--day-s", type=float, help="real seconds to run (default: one simulated day and 10 s)")
    parser.add_argument("--only", choices=("demo", "site"), help="one configuration only")
    parser.add_argument("--probe", type=int, metavar="PORT",
                        help="only print the seconds until the device on loopback PORT answers a ReadProperty")
    args = parser.parse_args()
    if args.probe:
        answered = first_answer_s(args.probe, time.monotonic(), deadline_s=300.0)
        print("no answer" if answered is None else f"{answered:.1f}")
        sys.exit(0 if answered is not None else 1)
    from tests.bacnet_harness import free_udp_port

    day_s = args.day_s or 86400 / args.speed + 10
    import_times()
    with tempfile.TemporaryDirectory() as tmp:
        base = {k: v for k, v in os.environ.items() if not k.startswith("ESUS_")} | {
            "HOME": str(Path(tmp) / "home"), "PYTHONUNBUFFERED": "1", "GPIOZERO_PIN_FACTORY": "mock"}
        if args.only in (None, "demo"):
            run_one("demo", base | {"ESUS_ENV_FILE": "/dev/null", "ESUS_STATE_DIR": str(Path(tmp) / "demo-state"),
                                    "ESUS_BACNET_ADDRESS": f"127.0.0.1/8:{free_udp_port()}"}, args.speed, day_s)
        if args.only in (None, "site"):
            from bms_wrapper.simulator import SimPoint, SimulatedBms
            from esus.settings.config import example_site_path, load_settings

            site = load_settings({"ESUS_ENV_FILE": "/dev/null", "ESUS_SITE": str(example_site_path()),
                                  "ESUS_STATE_DIR": str(Path(tmp) / "x")}).site
            bms = SimulatedBms([SimPoint(int(p.point_id), p.source, p.kind) for p in site.bms.points],
                               "esus", "bench").start()
            try:
                run_one("site", base | {"ESUS_ENV_FILE": "/dev/null", "ESUS_SITE": str(example_site_path()),
                                        "ESUS_STATE_DIR": str(Path(tmp) / "site-state"), "ESUS_WEATHER_URL": "off",
                                        "ESUS_BMS_URL": bms.url, "ESUS_BMS_USER": "esus", "ESUS_BMS_PASSWORD": "bench",
                                        "ESUS_BACNET_ADDRESS": f"127.0.0.1/8:{free_udp_port()}"}, args.speed, day_s)
            finally:
                bms.stop()


if __name__ == "__main__":
    main()
