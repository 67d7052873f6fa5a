"""deploy/install.sh and docs/install-pi.md (issue 16): the dry run prints every step and changes
nothing; on this machine a technician provisions a kiosk from nothing with the same steps
(fleet init/serve on loopback, token, install with init/register, the kiosk's first run, the
self-test last) with the fake camera and the display emulator."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image

from firmware.demo.frames import background
from tests.waiting import wait_for_healthz

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "install.sh"
COMMAND_TIMEOUT_S = 180.0  # a guard against a hung command, not a speed claim
START_DEADLINE_S = 30.0
STEPS = ["apt packages", "camera", "serial port", "service user", "udev rule",
         "virtual environment", "configuration", "state folder", "device identity",
         "trust anchor", "systemd unit", "self-test"]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], env=env(), capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT_S)


def python(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


def _steps(output: str) -> list[str]:
    return re.findall(r"^step \d+: (.*)$", output, re.MULTILINE)


def test_dry_run_prints_every_step_and_changes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "root"
    result = install("--dry-run", "--root", str(target))
    assert result.returncode == 0, result.stderr
    steps = _steps(result.stdout)
    assert len(steps) == len(STEPS)
    for wanted, shown in zip(STEPS, steps):
        assert wanted in shown, (wanted, shown)
    assert steps[-1].startswith("self-test")
    for command in ("apt-get install -y python3-venv python3-picamera2",
                    "raspi-config nonint do_serial_hw 0", "usermod -aG dialout,video healthgate",
                    "venv --system-site-packages", "/etc/healthgate/kiosk.toml",
                    "/var/lib/healthgate", "systemctl enable --now healthgate",
                    "provisioning.cli selftest"):
        assert command in result.stdout, command
    assert not target.exists()  # nothing changed

    on_a_pi = install("--dry-run")  # as on the Pi: the system steps are printed, not skipped
    assert on_a_pi.returncode == 0 and "skipped" not in on_a_pi.stdout
    assert _steps(on_a_pi.stdout) == [s.replace(str(target), "") for s in steps]


def test_docs_and_script_name_the_same_steps() -> None:
    page = (ROOT / "docs" / "install-pi.md").read_text()
    script = SCRIPT.read_text()
    for needle in ("python3-picamera2", "do_serial_hw", "do_serial_cons", "dialout",
                   "99-healthgate-display.rules", "--system-site-packages", "/etc/healthgate",
                   "/var/lib/healthgate", "systemctl enable --now healthgate", "selftest"):
        assert needle in page and needle in script, needle
    assert "selftest" in page.rsplit("```sh", 1)[1]  # the page's last step


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _signer_list(signer_der: bytes, anchor: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """A gateway-style signer list holding one DSC, signed by the national trust anchor."""
    digest = hashlib.sha256(signer_der).digest()
    document = {"certificates": [{
        "kid": base64.b64encode(digest[:8]).decode(), "country": "XX", "certificateType": "DSC",
        "rawData": base64.b64encode(signer_der).decode(), "thumbprint": digest.hex(),
        "signature": "", "timestamp": datetime.now(timezone.utc).isoformat()}]}
    listed = json.dumps(document).encode()
    return {"list": base64.b64encode(listed).decode(),
            "signature": base64.b64encode(anchor.sign(listed, ec.ECDSA(hashes.SHA256()))).decode()}


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The operator's side: `healthgate-fleet init`, `keygen`, `publish`, `serve` on loopback."""
    from firmware.demo.issuer import make_signer

    db = f"sqlite:///{tmp_path / 'fleet' / 'fleet.db'}"
    key = str(tmp_path / "fleet" / "signing.key")
    assert python("fleet.cli", "init", "--db", db).returncode == 0
    pinned = python("fleet.cli", "keygen", "--key", key).stdout.strip().rsplit(" ", 1)[-1]
    anchor = ec.generate_private_key(ec.SECP256R1())
    signers = tmp_path / "signers.json"
    signers.write_text(json.dumps(_signer_list(make_signer().certificate_der, anchor)))
    assert python("fleet.cli", "publish", "dcc-signers", str(signers), "--db", db,
                  "--key", key).returncode == 0
    anchor_pem = tmp_path / "xx-anchor.pem"
    anchor_pem.write_bytes(anchor.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "fleet.cli", "serve", "--db", db,
                               "--port", str(port)], cwd=ROOT, env=env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_healthz(url, server, START_DEADLINE_S)  # for the answer, not a fixed time
        yield {"db": db, "url": url, "pinned": pinned, "anchor": str(anchor_pem)}
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


def test_a_technician_provisions_a_kiosk_from_nothing(tmp_path: Path,
                                                      fleet: dict[str, str]) -> None:
    token = python("fleet.cli", "token", "create", "--db", fleet["db"]).stdout.strip()
    target = tmp_path / "pi"
    venv = Path(sys.prefix)  # this interpreter's environment stands in for /opt/healthgate/.venv
    first = install("--root", str(target), "--venv", str(venv), "--camera", "fake",
                    "--display", "emulator", "--device-id", "shop-12-door",
                    "--fleet-url", fleet["url"], "--token", token,
                    "--fleet-key", fleet["pinned"], "--trust-anchor", fleet["anchor"])
    state = target / "var" / "lib" / "healthgate"
    config = target / "etc" / "healthgate" / "kiosk.toml"
    assert config.is_file() and (state / "device_key.pem").is_file(), first.stdout + first.stderr
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    assert (target / "etc" / "udev" / "rules.d" / "99-healthgate-display.rules").is_file()
    assert (target / "etc" / "systemd" / "system" / "healthgate.service").is_file()
    # before the kiosk's first start nothing is cached: the self-test says so, and fails
    assert first.returncode == 1 and "FAIL trust data" in first.stdout

    # the service's first start (systemctl enable --now), bounded: a replay of a few frames
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(5):
        Image.fromarray(background(160, 120)).save(frames / f"{index:04d}.png")
    replay = tmp_path / "first-start.toml"
    replay.write_text(config.read_text().replace('source = "fake"', 'source = "files"')
                      .replace('path = ""', f'path = "{frames}"', 1)
                      .replace("enabled = true", "enabled = false", 1))
    started = python("firmware.cli", "run", "--config", str(replay))
    assert started.returncode == 0, started.stdout + started.stderr

    again = install("--root", str(target), "--venv", str(venv))  # idempotent; self-test last
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already done" in again.stdout and "self-test passed" in again.stdout
    assert again.stdout.rstrip().splitlines()[-1] == "self-test passed"
    listing = json.loads(python("fleet.cli", "devices", "list", "--json", "--db",
                                fleet["db"]).stdout)
    assert [d["device_id"] for d in listing] == ["shop-12-door"]
