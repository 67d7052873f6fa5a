"""What an operator and a shop owner see (issue 16): `healthgate-fleet devices list` (last seen,
online, software, trust age, pending; --json), `devices revoke`, `token list` / `token revoke`,
`incidents` with none, and `healthgate status` on the box."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from firmware.app import main as run_main
from firmware.clihelp import software_version
from firmware.demo.frames import background
from firmware.identity import load
from firmware.protocol.keys import public_key_b64
from firmware.protocol.request_signing import sign_request
from firmware.status.file import KioskStatus, parse_header, write_status
from firmware.sync.trustsync import register_device
from fleet.runner import run_in_thread
from fleet.server import create_app
from fleet.trust import generate_signing_key
from provisioning.cli import main as provision

ROOT = Path(__file__).resolve().parent.parent
COMMAND_TIMEOUT_S = 120.0
NOW = datetime.now(timezone.utc)


def run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT_S)


def test_a_kiosk_run_shows_in_devices_list_and_healthgate_status(tmp_path: Path) -> None:
    state = tmp_path / "state"
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(5):
        Image.fromarray(background(160, 120)).save(frames / f"{index:04d}.png")
    fleet_key = generate_signing_key(tmp_path / "fleet.key")
    db = tmp_path / "fleet.db"
    with run_in_thread(create_app(str(db), tmp_path / "fleet.key")) as server:
        server.store.add_token("enrol-0123456789abcdef", NOW + timedelta(hours=1))
        server.publish("dcc-rules", [])
        assert provision(["init", "--state-dir", str(state), "--device-id", "door-1"]) == 0
        assert provision(["register", "--state-dir", str(state), "--fleet-url", server.url,
                          "--token", "enrol-0123456789abcdef",
                          "--fleet-key", public_key_b64(fleet_key)]) == 0
        config = tmp_path / "kiosk.toml"
        config.write_text(f'[camera]\nsource = "files"\npath = "{frames}"\nfps = 15\n'
                          f'[face]\nenabled = false\n[fleet]\nurl = "{server.url}"\n'
                          f'[state]\ndir = "{state}"\n')
        assert run_main(["--config", str(config)]) == 0

        listing = run("fleet.cli", "devices", "list", "--json", "--db", f"sqlite:///{db}")
        assert listing.returncode == 0, listing.stderr
        (device,) = json.loads(listing.stdout)
        assert device["device_id"] == "door-1" and device["state"] == "online"
        assert device["software"] == software_version() and device["last_seen"] is not None
        assert device["trust_age_s"] is not None and device["pending"] is not None, device
        table = run("fleet.cli", "devices", "list", "--db", f"sqlite:///{db}").stdout
        assert "last seen" in table and "trust age" in table and "pending" in table

        # a stolen kiosk: revoked, its next signed request is refused; its events are kept
        revoked = run("fleet.cli", "devices", "revoke", "door-1", "--db", f"sqlite:///{db}")
        assert revoked.returncode == 0 and "revoked" in revoked.stdout
        identity = load(state)
        headers = sign_request(identity.key, "door-1", "GET", "/v1/trust/dcc-rules", b"")
        refused = requests.get(server.url + "/v1/trust/dcc-rules", headers=headers, timeout=10)
        assert refused.status_code == 401
        assert server.store.events("door-1")
    shown = json.loads(run("fleet.cli", "devices", "list", "--json", "--db",
                           f"sqlite:///{db}").stdout)
    assert shown[0]["state"] == "revoked"
    assert run("fleet.cli", "devices", "revoke", "nobody", "--db",
               f"sqlite:///{db}").returncode == 1

    # on the box: the kiosk stopped, so one line says so, with trust age and uploads
    status = run("firmware.cli", "status", "--state-dir", str(state))
    assert status.returncode == 1, status.stdout
    (line,) = status.stdout.splitlines()
    assert line.startswith("NOT RUNNING") and "trust data" in line
    assert "event(s) waiting" in line and "last upload" in line
    assert "door-1" not in json.dumps(json.loads((state / "status.json").read_text()))


def test_healthgate_status_of_a_running_kiosk(tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)
    write_status(tmp_path, KioskStatus(
        state="IDLE", software="0.1.0", updated_at=now.isoformat(),
        trust_updated_at=(now - timedelta(hours=2)).isoformat(), max_trust_age_h=72.0,
        pending=3, last_upload=(now - timedelta(minutes=5)).isoformat()))
    result = run("firmware.cli", "status", "--state-dir", str(tmp_path))
    assert result.returncode == 0
    assert result.stdout.strip() == ("IDLE; trust data 2 h old; 3 event(s) waiting, "
                                     "last upload 5 min ago")
    write_status(tmp_path, KioskStatus(
        state="IDLE", software="0.1.0", updated_at=now.isoformat(),
        trust_updated_at=(now - timedelta(hours=80)).isoformat(), max_trust_age_h=72.0))
    assert "TOO OLD" in run("firmware.cli", "status", "--state-dir", str(tmp_path)).stdout
    never = run("firmware.cli", "status", "--state-dir", str(tmp_path / "nothing"))
    assert never.returncode == 2 and "--state-dir" in never.stdout


def test_token_list_revoke_and_no_incidents(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    assert run("fleet.cli", "init", "--db", db).returncode == 0
    assert run("fleet.cli", "token", "list", "--db", db).stdout.strip() == "no enrolment tokens"
    token = run("fleet.cli", "token", "create", "--db", db).stdout.strip()
    listed = run("fleet.cli", "token", "list", "--db", db).stdout
    assert token not in listed and "unused" in listed  # listed by id: the token is secret
    token_id = listed.split()[0]
    revoked = run("fleet.cli", "token", "revoke", token_id, "--db", db)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in run("fleet.cli", "token", "list", "--db", db).stdout
    again = run("fleet.cli", "token", "revoke", token, "--db", db)
    assert again.returncode == 1 and "already used or revoked" in again.stderr
    incidents = run("fleet.cli", "incidents", "--db", db)
    assert incidents.returncode == 0 and incidents.stdout.strip() == "no incidents"
    # a revoked token enrols nothing
    with run_in_thread(create_app(str(tmp_path / "fleet.db"))) as server:
        try:
            register_device(server.url, token, "door-2", Ed25519PrivateKey.generate())
            raise AssertionError("a revoked token registered a device")
        except Exception as exc:  # RegistrationError TOKEN_INVALID
            assert "TOKEN" in str(exc)


def test_status_header_is_bounded_and_informational() -> None:
    assert parse_header("software=0.1.0; trust_age_s=60; pending=2") == {
        "software": "0.1.0", "trust_age_s": 60, "pending": 2}
    assert parse_header("software=<script>; pending=-1; other=1") == {}
    assert parse_header("software=1" + "0" * 300) == {}
    assert parse_header(None) == {}
