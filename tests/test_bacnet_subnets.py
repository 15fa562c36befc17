"""Discovery on real subnets, not only loopback: network namespaces joined by veth pairs, a bridge
and a router make a BAS subnet (10.231.1.0/24, with the building's BBMD) and a Pi subnet
(10.231.2.0/24). A Who-Is broadcast on the BAS subnet finds esus on the other subnet through the
BBMD (esus registered as a foreign device), and an esus on the same subnet by plain broadcast.
The namespaces are this test's own, made and removed here; the test is skipped, saying why, where
the machine cannot make them (no root, no `ip`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TAG = f"{os.getpid() % 100000}"
NS = {role: f"esus{role}{TAG}" for role in ("r", "bas", "bbmd", "pi", "same")}
FAR, NEAR = 260010, 260011


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def can_make_namespaces() -> str | None:
    """None when this machine can; else why not."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"esusprobe{TAG}"
    try:
        ip("netns", "add", probe)
        ip("netns", "del", probe)
    except subprocess.CalledProcessError as exc:
        return f"`ip netns add` failed: {exc.stderr.strip()}"
    return None


@pytest.fixture
def subnets() -> Iterator[None]:
    why = can_make_namespaces()
    if why:
        pytest.skip(f"real subnets need network namespaces: {why}")
    try:
        for name in NS.values():
            ip("netns", "add", name)
        r = NS["r"]
        ip("-n", r, "link", "add", "br0", "type", "bridge")
        ip("-n", r, "addr", "add", "10.231.1.1/24", "dev", "br0")
        ip("-n", r, "link", "set", "br0", "up")
        ip("-n", r, "link", "set", "lo", "up")
        hosts = {"bas": "10.231.1.10/24", "bbmd": "10.231.1.20/24", "same": "10.231.1.30/24", "pi": "10.231.2.10/24"}
        for role, address in hosts.items():
            host, veth = NS[role], f"v{role}"
            ip("link", "add", veth, "netns", r, "type", "veth", "peer", "name", "eth0", "netns", host)
            ip("-n", host, "addr", "add", address, "dev", "eth0")
            ip("-n", host, "link", "set", "eth0", "up")
            ip("-n", host, "link", "set", "lo", "up")
            if role == "pi":   # the other subnet: the router's own leg
                ip("-n", r, "addr", "add", "10.231.2.1/24", "dev", veth)
                ip("-n", host, "route", "add", "default", "via", "10.231.2.1")
            else:
                ip("-n", r, "link", "set", veth, "master", "br0")
                ip("-n", host, "route", "add", "default", "via", "10.231.1.1")
            ip("-n", r, "link", "set", veth, "up")
        subprocess.run(["ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
        yield
    finally:
        for name in NS.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def start(role: str, *args: str) -> subprocess.Popen:
    process = subprocess.Popen(["ip", "netns", "exec", NS[role], sys.executable, "-m", "tests.netns_peers", *args],
                               cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    line = process.stdout.readline() if process.stdout else ""
    assert line.strip() == "ready", f"{role} did not start: {line}{process.stdout.read() if process.stdout else ''}"
    return process


def test_a_who_is_broadcast_finds_esus_across_subnets_through_the_bbmd_and_on_its_own_subnet(subnets: None) -> None:
    peers = [start("bbmd", "bbmd", "10.231.1.20/24")]
    try:
        peers.append(start("pi", "device", "10.231.2.10/24", str(FAR), "--bbmd", "10.231.1.20:47808"))
        peers.append(start("same", "device", "10.231.1.30/24", str(NEAR)))
        registered, deadline = "", time.monotonic() + 20
        while registered != "BBMD 10.231.1.20:47808 registered":   # the device says its state each second
            assert time.monotonic() < deadline, f"no registration with the BBMD: {registered}"
            registered = peers[1].stdout.readline().strip() if peers[1].stdout else ""
        bas = subprocess.run(["ip", "netns", "exec", NS["bas"], sys.executable, "-m", "tests.netns_peers", "bas",
                              "10.231.1.255", str(FAR), str(NEAR)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             capture_output=True, text=True, timeout=60)
        found = json.loads(bas.stdout.strip().splitlines()[-1])
        assert found.get(str(FAR)) == "10.231.2.10", found     # across the router, through the BBMD
        assert found.get(str(NEAR)) == "10.231.1.30", found    # the plain broadcast on its own subnet
    finally:
        for peer in peers:
            peer.kill()
            peer.wait()
