"""ReadProperty throughput and latency against the running esus service, from an independent stack.

Starts `esus run --demo` on a loopback port, then reads input-power-meter's presentValue with
rusty-bacnet: sequentially (latency p50/p99) and with 8 requests in flight (throughput). Then the
same while a CPU-bound forecast training runs in another process, and while a flood of wrong logins
hits the operator page (served by the same event loop; each from a fresh loopback address, so the
per-address lockout does not stop the hashing). Prints medians of 3 rounds.

    .venv/bin/python bench/bacnet_read.py [--reads N]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rusty_bacnet as rb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.bacnet_harness import free_udp_port  # noqa: E402

AV1 = rb.ObjectIdentifier(rb.ObjectType.ANALOG_VALUE, 1)


def training_load(stop_after_s: float) -> None:
    """A forecast-sized CPU job: gradient boosting on 90 days of 1-minute features, repeated."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(90 * 1440, 24))
    y = x[:, 0] * 3 + np.sin(x[:, 1]) + rng.normal(size=len(x))
    end = time.monotonic() + stop_after_s
    while time.monotonic() < end:
        HistGradientBoostingRegressor(max_iter=200).fit(x, y)


async def measure(address: str, reads: int) -> dict[str, float]:
    async with rb.BACnetClient(interface="127.0.0.1", port=free_udp_port(),
                               broadcast_address="127.255.255.255") as client:
        for _ in range(200):  # warm up
            await client.read_property(address, AV1, rb.PropertyIdentifier.PRESENT_VALUE)
        latencies = []
        for _ in range(reads):
            t = time.perf_counter()
            await client.read_property(address, AV1, rb.PropertyIdentifier.PRESENT_VALUE)
            latencies.append(time.perf_counter() - t)
        latencies.sort()

        async def worker(n: int) -> None:
            for _ in range(n):
                await client.read_property(address, AV1, rb.PropertyIdentifier.PRESENT_VALUE)

        t = time.perf_counter()
        await asyncio.gather(*(worker(reads // 8) for _ in range(8)))
        concurrent = (reads // 8 * 8) / (time.perf_counter() - t)
    return {"sequential_per_s": reads / sum(latencies), "concurrent8_per_s": concurrent,
            "p50_ms": latencies[len(latencies) // 2] * 1e3, "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3}


def login_flood(url: str, stop_after_s: float) -> None:
    """Wrong logins, 40 at a time, each batch from another loopback address."""
    import aiohttp

    async def flood() -> None:
        end, batch = time.monotonic() + stop_after_s, 0
        while time.monotonic() < end:
            batch += 1
            source = f"127.1.{batch // 250 % 250}.{batch % 250 + 1}"
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0))) as web:
                async def one() -> None:
                    async with web.post(url + "/login", data={"user": "operator", "password": "guess"}) as reply:
                        await reply.read()
                await asyncio.gather(*(one() for _ in range(40)), return_exceptions=True)
    asyncio.run(flood())


def start_service(port: int, state: Path, page_port: int) -> subprocess.Popen:
    from demand_response.passwords import hash_password

    env = dict(os.environ, ESUS_BACNET_ADDRESS=f"127.0.0.1/8:{port}", ESUS_STATE_DIR=str(state),
               ESUS_LOG_LEVEL="ERROR", GPIOZERO_PIN_FACTORY="mock", ESUS_DR_PAGE_USER="operator",
               ESUS_DR_PAGE_PASSWORD_HASH=hash_password("a long password"),
               ESUS_DR_PAGE_ADDRESS=f"127.0.0.1:{page_port}")
    env.pop("ESUS_SITE", None)
    process = subprocess.Popen([sys.executable, "-m", "esus", "run", "--demo"], cwd=state, env=env)
    time.sleep(4)  # start-up: seeding the demo history and binding
    if process.poll() is not None:
        raise SystemExit("esus did not start")
    return process


def summarise(label: str, rounds: list[dict[str, float]]) -> None:
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(f"{label:<22} {med['sequential_per_s']:8.0f} {med['concurrent8_per_s']:10.0f} "
          f"{med['p50_ms']:8.2f} {med['p99_ms']:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port, page_port = free_udp_port(), free_udp_port()
    with tempfile.TemporaryDirectory() as tmp:
        service = start_service(port, Path(tmp), page_port)
        address = f"127.0.0.1:{port}"
        try:
            print(f"{'reads/s, ms':<22} {'one-by-one':>8} {'8 in flight':>10} {'p50':>8} {'p99':>8}")
            idle = [asyncio.run(measure(address, args.reads)) for _ in range(args.rounds)]
            summarise("service idle", idle)
            load = multiprocessing.Process(target=training_load, args=(600,), daemon=True)
            load.start()
            time.sleep(2)
            busy = [asyncio.run(measure(address, args.reads)) for _ in range(args.rounds)]
            load.terminate()
            summarise("during training", busy)
            flood = multiprocessing.Process(target=login_flood, args=(f"http://127.0.0.1:{page_port}", 600),
                                            daemon=True)
            flood.start()
            time.sleep(2)
            flooded = [asyncio.run(measure(address, args.reads)) for _ in range(args.rounds)]
            flood.terminate()
            summarise("during a login flood", flooded)
        finally:
            service.send_signal(signal.SIGTERM)
            service.wait(timeout=30)
    print(f"(2 cores; client, service and training share them; {args.reads} reads per round)")


if __name__ == "__main__":
    main()
