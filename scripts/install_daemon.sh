#!/usr/bin/env bash
# Install the edgemoe sensor-loop daemon as a systemd service on the robot.
#
#   sudo scripts/install_daemon.sh ENGINES_DIR DAEMON_YAML [VENV]
#
# ENGINES_DIR: an engine bundle built on this device ('edgemoe build ... --out ENGINES_DIR');
# DAEMON_YAML: the daemon config (validated here before anything is installed);
# VENV: a Python environment with edgemoe installed (default /opt/edgemoe/venv). No torch needed.
set -euo pipefail

ENGINES=${1:?usage: install_daemon.sh ENGINES_DIR DAEMON_YAML [VENV]}
CONFIG=${2:?usage: install_daemon.sh ENGINES_DIR DAEMON_YAML [VENV]}
VENV=${3:-/opt/edgemoe/venv}
HERE="$(cd "$(dirname "$0")" && pwd)"
UNIT=/etc/systemd/system/edgemoe-daemon.service

[[ $EUID -eq 0 ]] || { echo "run as root (sudo)" >&2; exit 1; }
[[ -d "$ENGINES" ]] || { echo "no engine bundle at $ENGINES" >&2; exit 1; }
[[ -x "$VENV/bin/edgemoe" ]] || { echo "no edgemoe in $VENV: pip install 'edgemoe[daemon]' there" >&2; exit 1; }

# validate the config with the same code the daemon uses, before touching the system
"$VENV/bin/python" -c "import sys; from edgemoe.daemon.config import DaemonConfig; DaemonConfig.from_yaml(sys.argv[1])" "$CONFIG"

id edgemoe >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin edgemoe
install -d -m 0750 -o edgemoe -g edgemoe /var/lib/edgemoe /var/log/edgemoe
install -d -m 0755 /etc/edgemoe
install -m 0640 -o root -g edgemoe "$CONFIG" /etc/edgemoe/daemon.yaml

# each build in its own directory; 'engines' is a symlink so SIGHUP can switch builds atomically
BUILD=/var/lib/edgemoe/builds/$(date -u +%Y%m%dT%H%M%SZ)
install -d -m 0750 -o edgemoe -g edgemoe "$(dirname "$BUILD")"
cp -a "$ENGINES" "$BUILD"
chown -R edgemoe:edgemoe "$BUILD"
ln -sfn "$BUILD" /var/lib/edgemoe/engines.next && mv -Tf /var/lib/edgemoe/engines.next /var/lib/edgemoe/engines

sed "s#/opt/edgemoe/venv#$VENV#g" "$HERE/edgemoe-daemon.service" > "$UNIT"
chmod 0644 "$UNIT"
systemctl daemon-reload
if systemctl is-active --quiet edgemoe-daemon; then
    systemctl reload edgemoe-daemon   # warm swap to the new build
else
    systemctl enable --now edgemoe-daemon
fi
systemctl --no-pager status edgemoe-daemon | head -n 5
