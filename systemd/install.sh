#!/usr/bin/env bash
# Install esus on a Raspberry Pi (Pi OS bookworm) as a systemd service.
#   sudo systemd/install.sh            install or upgrade, enable the unit
# Layout: /opt/esus/venv (the program), /etc/esus/{esus.env,site.toml} (settings),
# /var/lib/esus (history, model, outbox; systemd StateDirectory), user 'esus' in group 'gpio'.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run it as root: sudo $0" >&2
  exit 1
fi
src=$(cd "$(dirname "$0")/.." && pwd)

echo "== packages (python3-venv, and lgpio for the pins)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-lgpio

echo "== user esus (groups: gpio)"
getent group gpio >/dev/null || groupadd --system gpio
if ! id esus >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/esus --no-create-home --shell /usr/sbin/nologin --groups gpio esus
else
  usermod -a -G gpio esus
fi

echo "== program in /opt/esus/venv"
# --system-site-packages lets the venv use Pi OS's python3-lgpio
python3 -m venv --system-site-packages /opt/esus/venv
/opt/esus/venv/bin/pip install --quiet --upgrade pip
/opt/esus/venv/bin/pip install --quiet "$src"
install -d /opt/esus/doc
install -m 0644 "$src/README.md" /opt/esus/doc/README.md   # the unit's Documentation=

echo "== settings in /etc/esus"
install -d -m 0750 -o root -g esus /etc/esus
first_install=0
if [ ! -f /etc/esus/esus.env ]; then
  install -m 0640 -o root -g esus "$src/.env.example" /etc/esus/esus.env
  first_install=1
fi
[ -f /etc/esus/site.toml ] || install -m 0640 -o root -g esus "$src/site.example.toml" /etc/esus/site.toml

echo "== systemd unit"
install -m 0644 "$src/systemd/esus.service" /etc/systemd/system/esus.service
systemctl daemon-reload
systemctl enable esus.service

if [ "$first_install" -eq 1 ]; then
  cat <<'NEXT'

esus is installed and enabled but not started. Next:
  1. sudo nano /etc/esus/esus.env     BMS, InfluxDB, BACnet address and device id
  2. sudo nano /etc/esus/site.toml    your building (start from the TMV23 example)
  3. sudo -u esus ESUS_ENV_FILE=/etc/esus/esus.env STATE_DIRECTORY=/var/lib/esus /opt/esus/venv/bin/esus doctor
  4. sudo systemctl start esus && journalctl -u esus -f
NEXT
else
  systemctl restart esus.service
  echo "esus upgraded and restarted: journalctl -u esus -f"
fi
