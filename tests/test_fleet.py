"""The fleet playbook (deploy/ansible), run for real: `ansible-playbook -c local` installs two hosts
of an inventory, each under its own temp prefix, with secrets from ansible-vault. Both results pass
esus's own settings check with distinct BACnet devices, a second run changes nothing, and an
inventory with one device instance twice is refused naming both hosts."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from esus.settings.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOK = ROOT / "deploy" / "ansible" / "site.yml"
ANSIBLE = Path(sys.executable).with_name("ansible-playbook")
VAULT = Path(sys.executable).with_name("ansible-vault")
SECRETS = {"vault_influx_token": "tok-3f9a-never-printed", "vault_bms_passwords": {"tmv23": "pw-tmv23-secret",
                                                                                   "library": "pw-library-secret"}}
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def inventory(tmp: Path, ids: tuple[int, int]) -> dict:
    example = yaml.safe_load((ROOT / "deploy" / "ansible" / "inventory.example.yml").read_text())["esus"]
    hosts = {}
    for n, (name, host) in enumerate(example["hosts"].items()):
        host = {k: v for k, v in host.items() if k != "ansible_host"}
        host.update(ansible_connection="local", ansible_python_interpreter=sys.executable,
                    esus_root=str(tmp / name), esus_bacnet_device_id=ids[n],
                    esus_bacnet_address=f"127.0.0.{n + 2}/8:{47900 + n}", esus_bms_url=f"http://127.0.0.1:9/{name}")
        hosts[name] = host
    common = {k: v for k, v in example["vars"].items() if not k.startswith("ansible_")}
    common.update(esus_python=sys.executable, esus_doctor_strict=False, esus_influx_url="",
                  esus_wheel_dir=str(tmp / "wheels"))
    return {"esus": {"vars": common, "hosts": hosts}}


def play(tmp: Path, ids: tuple[int, int]) -> subprocess.CompletedProcess:
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory(tmp, ids), sort_keys=False))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
           "ANSIBLE_HOME": str(tmp / "ansible-home"), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([str(ANSIBLE), "-i", str(tmp / "inventory.yml"), str(PLAYBOOK), "-e", f"@{tmp / 'vault.yml'}",
                           "--vault-password-file", str(tmp / "vault-pass")],
                          capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    if not ANSIBLE.exists() or shutil.which("systemctl") is None:
        pytest.fail("ansible-core (a test extra) and systemctl are needed: run scripts/test")
    (tmp_path / "vault-pass").write_text("fleet-test-vault\n")
    (tmp_path / "vault.yml").write_text(yaml.safe_dump(SECRETS))
    subprocess.run([str(VAULT), "encrypt", str(tmp_path / "vault.yml"), "--vault-password-file",
                    str(tmp_path / "vault-pass")], check=True, capture_output=True)
    assert b"never-printed" not in (tmp_path / "vault.yml").read_bytes()
    return tmp_path


def recap(result: subprocess.CompletedProcess) -> dict[str, tuple[int, ...]]:
    return {m.group(1): tuple(int(g) for g in m.groups()[1:]) for m in RECAP.finditer(result.stdout)}


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_fleet_installs_from_one_inventory_and_a_second_run_changes_nothing(fleet: Path) -> None:
    first = play(fleet, (260001, 260002))
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-4000:]
    for secret in ("tok-3f9a-never-printed", "pw-tmv23-secret", "pw-library-secret"):
        assert secret not in output
    devices = {}
    for name, site in (("tmv23-pi", "tmv23"), ("library-pi", "library")):
        root = fleet / name
        env_file = root / "etc" / "esus" / "esus.env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o640
        assert "pw-" + site + "-secret" in env_file.read_text()
        settings = load_settings({}, env_file=env_file)      # esus's own check: raises on any bad value
        assert settings.site.site.name == site
        devices[name] = settings.device_id
        assert (root / "opt" / "esus" / "venv" / "bin" / "esus").exists()
        assert (root / "etc" / "systemd" / "system" / "esus.service").read_text() == \
            (ROOT / "systemd" / "esus.service").read_text()
        assert (root / "etc" / "systemd" / "system" / "multi-user.target.wants" / "esus.service").is_symlink()
        assert re.search(r"ok\s+settings\s+from .*esus\.env; site '" + site, output), output[-4000:]
    assert devices == {"tmv23-pi": 260001, "library-pi": 260002}

    second = play(fleet, (260001, 260002))
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    assert {host: counts[1] for host, counts in recap(second).items()} == {"tmv23-pi": 0, "library-pi": 0}, \
        second.stdout[-4000:]


def test_two_hosts_on_one_bacnet_device_are_refused_naming_both(fleet: Path) -> None:
    result = play(fleet, (260001, 260001))
    assert result.returncode != 0
    assert re.search(r"BACnet device instance used twice: 260001 by (tmv23-pi and library-pi|library-pi and "
                     r"tmv23-pi)", result.stdout), result.stdout[-3000:]
    assert not (fleet / "tmv23-pi").exists() and not (fleet / "library-pi").exists()
