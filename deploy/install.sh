#!/usr/bin/env bash
# Install healthgate on Raspberry Pi OS (Bookworm, 64-bit), as docs/install-pi.md does by hand.
# Idempotent: each step checks before it changes anything, so running it again is safe.
#
#   sudo deploy/install.sh [--dry-run] [--root DIR] [--venv DIR] [--camera SOURCE]
#                          [--display PORT] [--device-id ID] [--fleet-url URL --token TOKEN
#                          --fleet-key KEY] [--trust-anchor PEM]
#
# --dry-run     print every step and its commands, change nothing
# --root DIR    install under DIR instead of / (no root needed): the steps that need the real
#               system (apt, raspi-config, users, udev, systemd) are printed and skipped
# --venv DIR    use this existing virtual environment instead of creating one
# With --fleet-url, --token and --fleet-key it also provisions the kiosk (init, register) and
# starts the service; --trust-anchor installs the national DCC trust anchor (PEM) that signs the
# fleet's DCC signer lists. selftest is always the last step.
set -euo pipefail

SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_RUN=0 ROOT="" VENV="" CAMERA="picamera2" DISPLAY_PORT="/dev/healthgate-display"
DEVICE_ID="" FLEET_URL="" TOKEN="" FLEET_KEY="" TRUST_ANCHOR=""
SERVICE_USER="healthgate"
APT_PACKAGES=(python3-venv python3-picamera2 libcamera-apps)

usage() { sed -n '2,/^set -euo/{/^set/d;p}' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --root) ROOT="${2%/}"; shift ;;
        --venv) VENV="$2"; shift ;;
        --camera) CAMERA="$2"; shift ;;
        --display) DISPLAY_PORT="$2"; shift ;;
        --device-id) DEVICE_ID="$2"; shift ;;
        --fleet-url) FLEET_URL="$2"; shift ;;
        --token) TOKEN="$2"; shift ;;
        --fleet-key) FLEET_KEY="$2"; shift ;;
        --trust-anchor) TRUST_ANCHOR="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

OPT="$ROOT/opt/healthgate"
VENV="${VENV:-$OPT/.venv}"
ETC="$ROOT/etc/healthgate"
CONFIG="$ETC/kiosk.toml"
STATE="$ROOT/var/lib/healthgate"
UDEV_RULE="$ROOT/etc/udev/rules.d/99-healthgate-display.rules"
UNIT="$ROOT/etc/systemd/system/healthgate.service"
BOOT_CONFIG="$ROOT/boot/firmware/config.txt"
PY="$VENV/bin/python"
STEP=0

step() { STEP=$((STEP + 1)); echo "step $STEP: $*"; }
# run CMD...: print it; run it unless --dry-run
run() { echo "  + $*"; [ "$DRY_RUN" = 1 ] || "$@"; }
# system CMD...: a command that needs the real system: skipped under --root
system() {
    if [ -n "$ROOT" ]; then echo "  + $* (skipped: --root)"; else run "$@"; fi
}
done_already() { echo "  = $* (already done)"; }

if [ -z "$ROOT" ] && [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (sudo), or give --root DIR or --dry-run" >&2
    exit 2
fi

step "apt packages: ${APT_PACKAGES[*]}"
system apt-get install -y "${APT_PACKAGES[@]}"

step "camera: libcamera detects it (camera_auto_detect=1 in /boot/firmware/config.txt)"
system raspi-config nonint do_camera 0 || true  # older images; Bookworm auto-detects
if [ -z "$ROOT" ] && ! grep -q '^camera_auto_detect=1' "$BOOT_CONFIG" 2>/dev/null; then
    system sh -c "echo camera_auto_detect=1 >> $BOOT_CONFIG"
fi

step "serial port: UART on, no login console on it"
system raspi-config nonint do_serial_hw 0
system raspi-config nonint do_serial_cons 1

step "service user $SERVICE_USER in the dialout (serial) and video (camera) groups"
if [ -z "$ROOT" ] && id "$SERVICE_USER" >/dev/null 2>&1; then
    done_already "user $SERVICE_USER exists"
else
    system useradd --system --home-dir /var/lib/healthgate --shell /usr/sbin/nologin "$SERVICE_USER"
fi
system usermod -aG dialout,video "$SERVICE_USER"

step "udev rule for the display: $UDEV_RULE"
run install -D -m 0644 "$SOURCE/deploy/99-healthgate-display.rules" "$UDEV_RULE"
system udevadm control --reload
system udevadm trigger --subsystem-match=tty

step "virtual environment $VENV (--system-site-packages: picamera2 comes from apt)"
if [ -x "$PY" ]; then
    done_already "$VENV exists"
else
    run mkdir -p "$OPT"
    run python3 -m venv --system-site-packages "$VENV"
    run "$PY" -m pip install --upgrade pip
    run "$PY" -m pip install "$SOURCE"
fi

step "configuration $CONFIG"
if [ -f "$CONFIG" ]; then
    done_already "$CONFIG exists (kept as it is)"
else
    run install -d -m 0755 "$ETC"
    echo "  + sed (camera.source = \"$CAMERA\", display.port = \"$DISPLAY_PORT\", fleet.url, state.dir = \"$STATE\") examples/kiosk.toml > $CONFIG"
    if [ "$DRY_RUN" = 0 ]; then
        sed -e "s|^source = \"[a-z0-9]*\"|source = \"$CAMERA\"|" \
            -e "s|^port = \"[^\"]*\"|port = \"$DISPLAY_PORT\"|" \
            -e "s|^url = \"[^\"]*\"|url = \"$FLEET_URL\"|" \
            -e "s|^dir = \"/var/lib/healthgate\"|dir = \"$STATE\"|" \
            "$SOURCE/examples/kiosk.toml" > "$CONFIG"
        chmod 0644 "$CONFIG"
    fi
fi

step "state folder $STATE (mode 0700, owned by $SERVICE_USER)"
run install -d -m 0700 "$STATE"
system chown "$SERVICE_USER:" "$STATE"

step "device identity and registration"
if [ -n "$FLEET_URL" ] && [ -n "$TOKEN" ] && [ -n "$FLEET_KEY" ]; then
    run "$PY" -m provisioning.cli init --state-dir "$STATE" ${DEVICE_ID:+--device-id "$DEVICE_ID"}
    run "$PY" -m provisioning.cli register --state-dir "$STATE" --fleet-url "$FLEET_URL" \
        --token "$TOKEN" --fleet-key "$FLEET_KEY"
else
    echo "  (no --fleet-url/--token/--fleet-key: run healthgate-provision init and register" \
         "as docs/install-pi.md says, then this script again)"
fi

step "national DCC trust anchor"
if [ -n "$TRUST_ANCHOR" ]; then
    run install -D -m 0600 "$TRUST_ANCHOR" "$STATE/trust/dcc-trust-anchors/$(basename "$TRUST_ANCHOR")"
else
    echo "  (none given: copy it into $STATE/trust/dcc-trust-anchors/ as docs/install-pi.md says)"
fi

step "systemd unit $UNIT, enabled and started"
run install -D -m 0644 "$SOURCE/deploy/healthgate.service" "$UNIT"
system systemctl daemon-reload
if [ -f "$STATE/device_key.pem" ] || [ "$DRY_RUN" = 1 ]; then
    system systemctl enable --now healthgate
else
    echo "  (not started: the kiosk is not provisioned yet)"
fi

step "self-test (the last step: it passes only when the kiosk can admit someone)"
run "$PY" -m provisioning.cli selftest --config "$CONFIG" || {
    echo "install.sh: the self-test failed; each FAIL line says what to do" >&2
    exit 1
}
