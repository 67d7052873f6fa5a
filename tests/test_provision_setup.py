"""Setting up a kiosk cannot go wrong silently (issue 16): the real commands, as subprocesses.

Each test runs `healthgate`, `healthgate-provision` or `healthgate-fleet` as a technician or an
operator would (another working folder, a relative path, a key that exists, a wrong key) and
checks the exit code and the one line that says what is wrong and what to do.
"""
from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.config import DEFAULT_STATE_DIR
from tests.waiting import wait_for_healthz

ROOT = Path(__file__).resolve().parent.parent
COMMAND_TIMEOUT_S = 120.0  # a guard against a hung command, not a speed claim
START_DEADLINE_S = 30.0
USER_UMASK = 0o022  # a technician's usual umask: files would be world-readable by default


def run(module: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """One real command (`python -m module`), importing this worktree's code."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT_S, umask=USER_UMASK)


def healthgate(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run("firmware.cli", *args, cwd=cwd)


def provision(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run("provisioning.cli", *args, cwd=cwd)


def fleet(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run("fleet.cli", *args, cwd=cwd)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _frames(folder: Path, count: int = 3) -> None:
    from PIL import Image

    from firmware.demo.frames import background

    folder.mkdir(parents=True)
    for index in range(count):
        Image.fromarray(background(160, 120)).save(folder / f"{index:04d}.png")


def _kiosk_config(folder: Path, state: str = "state", extra: str = "") -> Path:
    """An offline kiosk replaying frames, its paths relative to the configuration's folder."""
    folder.mkdir(parents=True, exist_ok=True)
    _frames(folder / "frames")
    config = folder / "kiosk.toml"
    config.write_text(f"""
[kiosk]
result_hold_s = 0.3
[camera]
source = "files"
path = "frames"
fps = 30
[face]
enabled = false
[state]
dir = "{state}"
{extra}
""")
    return config


# -- 1. only provisioning creates identities; one state folder everywhere ----------------------
def test_run_refuses_an_unprovisioned_state_folder_and_creates_nothing(tmp_path: Path) -> None:
    config = _kiosk_config(tmp_path / "etc")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = healthgate("run", "--config", str(config), cwd=elsewhere)
    assert result.returncode == 2, result.stdout + result.stderr
    state = tmp_path / "etc" / "state"  # relative to the configuration, not to the cwd
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and "not provisioned" in lines[0], result.stdout
    assert str(state) in lines[0] and "healthgate-provision init" in lines[0]
    assert f"--state-dir {state}" in lines[0] and "register" in lines[0]
    assert "Traceback" not in result.stderr
    assert not state.exists() and list(elsewhere.iterdir()) == []  # no identity invented


def test_run_with_a_fleet_but_no_pinned_key_is_not_registered(tmp_path: Path) -> None:
    config = _kiosk_config(tmp_path, extra='[fleet]\nurl = "http://127.0.0.1:9"\n')
    assert provision("init", "--state-dir", str(tmp_path / "state")).returncode == 0
    result = healthgate("run", "--config", str(config))
    assert result.returncode == 2
    assert "not registered" in result.stdout and "healthgate-provision register" in result.stdout


def test_provisioned_kiosk_runs_from_any_folder_logs_who_and_where_and_keeps_files_private(
        tmp_path: Path) -> None:
    config = _kiosk_config(tmp_path / "etc")
    state = tmp_path / "etc" / "state"
    init = provision("init", "--state-dir", str(state), "--device-id", "door-7")
    assert init.returncode == 0, init.stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = healthgate("run", "--config", str(config), cwd=elsewhere)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 decisions" in result.stdout  # it read the frames named relative to the config
    assert f"kiosk door-7 starting; state folder {state}" in result.stderr
    assert list(elsewhere.iterdir()) == []
    assert (state / "events.db").is_file()
    # issue 15 §5: every state file owner-only, every state folder too, whatever the umask
    for path in [state, *state.rglob("*")]:
        assert _mode(path) == (0o700 if path.is_dir() else 0o600), (path, oct(_mode(path)))


def test_kiosk_event_log_wal_and_shm_are_private_after_a_write(tmp_path: Path) -> None:
    """The -wal and -shm files exist only while the log is open: checked after an append."""
    from firmware.eventlog.restart import open_or_restart
    from firmware.identity import load_or_create

    previous = os.umask(USER_UMASK)
    try:
        identity = load_or_create(tmp_path / "state", "door-8")
        log = open_or_restart(tmp_path / "state" / "events.db", identity.key, identity.device_id,
                              lambda: datetime.now(timezone.utc))
        try:
            log.append("boot", {})
            files = sorted((tmp_path / "state").glob("events.db*"))
            assert {p.name for p in files} >= {"events.db", "events.db-wal", "events.db-shm"}
            assert {p.name: oct(_mode(p)) for p in files} == {p.name: "0o600" for p in files}
        finally:
            log.close()
    finally:
        os.umask(previous)


def test_every_default_names_the_same_state_folder() -> None:
    import tomllib

    example = tomllib.loads((ROOT / "examples" / "kiosk.toml").read_text())
    assert example["state"]["dir"] == DEFAULT_STATE_DIR
    unit = (ROOT / "deploy" / "healthgate.service").read_text()
    assert f"ReadWritePaths={DEFAULT_STATE_DIR}\n" in unit
    assert f"StateDirectory={Path(DEFAULT_STATE_DIR).name}\n" in unit
    for command in ("init", "register", "template-key"):
        shown = provision(command, "--help").stdout
        assert f"(default: $HEALTHGATE_STATE_DIR or {DEFAULT_STATE_DIR})" in " ".join(shown.split()), command
    assert f"or {DEFAULT_STATE_DIR})" in " ".join(provision("enrol", "--help").stdout.split())
    docs = (ROOT / "docs" / "kiosk.md").read_text()
    stated = set(re.findall(r"--state-dir (/[^\s`]*)", docs))
    assert stated == {DEFAULT_STATE_DIR}, stated


# -- 2. the self-test tells the truth -----------------------------------------------------------
def _selftest_config(folder: Path, state: Path, extra: str = "") -> Path:
    config = folder / "kiosk.toml"
    config.write_text(f'[camera]\nsource = "fake"\n[state]\ndir = "{state}"\n{extra}')
    return config


def test_selftest_fails_when_no_credential_format_has_trust_data(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert provision("init", "--state-dir", str(state)).returncode == 0
    (state / "trust").mkdir()
    (state / "trust" / "dcc-rules.json").write_text("[]")  # rules, but nobody trusted to sign
    result = provision("selftest", "--config", str(_selftest_config(tmp_path, state)))
    assert result.returncode == 1, result.stdout
    line = next(l for l in result.stdout.splitlines() if l.startswith("FAIL trust data"))
    assert "no credential format has trust data" in line and "DCC 0" in line
    assert "dcc-trust-anchors" in line  # what to do
    assert "self-test passed" not in result.stdout


@contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """Make `folder` refuse new files, for root too (immutable flag) or by mode otherwise."""
    if os.geteuid() == 0:
        flagged = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        if flagged.returncode != 0:
            pytest.skip(f"cannot make a folder unwritable for root here: {flagged.stderr!r}")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)


def test_selftest_and_run_name_an_unwritable_state_folder(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert provision("init", "--state-dir", str(state)).returncode == 0
    config = _selftest_config(tmp_path, state)
    with unwritable(state):
        result = provision("selftest", "--config", str(config))
        started = healthgate("run", "--config", str(config))
    assert result.returncode == 1
    line = next(l for l in result.stdout.splitlines() if l.startswith("FAIL state"))
    assert f"state folder {state} is not writable" in line and "write access" in line
    assert started.returncode == 2 and f"state folder {state} is not writable" in started.stdout


def test_selftest_names_a_fleet_key_mismatch(tmp_path: Path) -> None:
    from firmware.protocol.keys import public_key_b64
    from firmware.protocol.keys import key_id
    from fleet.runner import run_in_thread
    from fleet.server import create_app
    from fleet.trust import generate_signing_key

    fleet_key = generate_signing_key(tmp_path / "fleet.key")
    wrong = Ed25519PrivateKey.generate()  # e.g. a key copied from another fleet
    state = tmp_path / "state"
    assert provision("init", "--state-dir", str(state), "--device-id", "door-9").returncode == 0
    with run_in_thread(create_app(str(tmp_path / "fleet.db"), tmp_path / "fleet.key")) as server:
        server.store.add_token("enrol-0123456789abcdef",
                               datetime.now(timezone.utc) + timedelta(hours=1))
        server.publish("dcc-rules", [])
        registered = provision("register", "--state-dir", str(state), "--fleet", server.url,
                               "--token", "enrol-0123456789abcdef",
                               "--fleet-key", public_key_b64(wrong))
        assert registered.returncode == 0, registered.stdout
        config = _selftest_config(tmp_path, state, f'[fleet]\nurl = "{server.url}"\n')
        result = provision("selftest", "--config", str(config))
    assert result.returncode == 1
    line = next(l for l in result.stdout.splitlines() if l.startswith("FAIL fleet"))
    assert (f"fleet key mismatch: pinned {key_id(wrong.public_key())}, fleet signs with "
            f"{key_id(fleet_key.public_key())}") in line
    assert "healthgate-fleet keygen" in line  # what to do


# -- 3. keys are never replaced by accident; secrets only on request ---------------------------
def _cache_sealed_templates(state: Path, key_id: str, count: int) -> None:
    """Status records, as the kiosk caches them, carrying templates sealed with `key_id`."""
    from firmware.credentials.status import load_trust
    from firmware.credentials.status.records import StatusRecord
    from firmware.demo.issuers.status import sign_status_record

    issuer_key = Ed25519PrivateKey.generate()
    pem = issuer_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    (state / "trust").mkdir(exist_ok=True)
    (state / "trust" / "status-issuers.json").write_text(json.dumps(
        {"keys": [{"issuer": "shop", "kid": "aXNz", "public_key_pem": pem}]}))
    trust = load_trust(state / "trust")
    assert trust is not None and trust.cache is not None
    now = int(time.time())
    records = [StatusRecord("shop", bytes([n]) * 16, "green", now - 60, now + 3600,
                            face_key_id=key_id, face_template=bytes(64)) for n in range(count)]
    trust.cache.apply_sync([sign_status_record(r, issuer_key, kid=b"iss") for r in records],
                           datetime.now(timezone.utc))


def test_template_key_is_never_replaced_silently_and_stays_secret(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert provision("init", "--state-dir", str(state)).returncode == 0
    key_file = state / "template-keys" / "site-1.key"
    created = provision("template-key", "--state-dir", str(state), "--id", "site-1",
                        "--generate")
    assert created.returncode == 0, created.stdout
    first = key_file.read_bytes()
    assert base64.b64encode(first).decode() not in created.stdout + created.stderr
    assert "--show-key" in created.stdout
    _cache_sealed_templates(state, "site-1", 2)

    again = provision("template-key", "--state-dir", str(state), "--id", "site-1", "--generate")
    assert again.returncode == 2 and key_file.read_bytes() == first
    assert "exists" in again.stdout and "2 cached member template(s)" in again.stdout
    assert "--force" in again.stdout
    other = base64.b64encode(bytes(range(32))).decode()
    imported = provision("template-key", "--state-dir", str(state), "--id", "site-1",
                         "--import-b64", other)
    assert imported.returncode == 2 and key_file.read_bytes() == first

    forced = provision("template-key", "--state-dir", str(state), "--id", "site-1",
                       "--generate", "--force", "--show-key")
    assert forced.returncode == 0, forced.stdout
    backups = list((state / "template-keys").glob("site-1.key.bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == first and _mode(backups[0]) == 0o600
    assert str(backups[0]) in forced.stdout and "2 cached member template(s)" in forced.stdout
    assert key_file.read_bytes() != first
    assert f"key (base64): {base64.b64encode(key_file.read_bytes()).decode()}" in forced.stdout


def test_template_key_needs_a_provisioned_state_folder(tmp_path: Path) -> None:
    result = provision("template-key", "--state-dir", str(tmp_path / "typo"), "--id", "site-1",
                       "--generate")
    assert result.returncode == 2 and "no state folder" in result.stdout
    assert not (tmp_path / "typo").exists()


def test_register_never_replaces_a_pinned_fleet_key_silently(tmp_path: Path) -> None:
    from firmware.protocol.keys import public_key_b64

    state = tmp_path / "state"
    assert provision("init", "--state-dir", str(state)).returncode == 0
    pinned = public_key_b64(Ed25519PrivateKey.generate())
    (state / "fleet_key.pub").write_text(pinned + "\n")
    result = provision("register", "--state-dir", str(state), "--fleet", "http://127.0.0.1:9",
                       "--token", "t", "--fleet-key", public_key_b64(Ed25519PrivateKey.generate()))
    assert result.returncode == 2 and "different fleet key is pinned" in result.stdout
    assert (state / "fleet_key.pub").read_text().strip() == pinned


def test_erase_and_enrol_never_make_a_new_gallery_key(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert provision("init", "--state-dir", str(state)).returncode == 0
    (state / "gallery.hgg").write_bytes(b"members")  # a gallery whose key was lost
    for command in (["erase"], ["enrol", "--consent", str(tmp_path / "face.png")]):
        result = provision(*command, "--member", "m-1", "--state-dir", str(state))
        assert result.returncode == 1, result.stderr
        assert "no gallery key" in result.stderr and "restore the key" in result.stderr
        assert not (state / "gallery.key").exists()


# -- 4. fleet admin commands never create databases ---------------------------------------------
def test_fleet_admin_commands_never_create_a_database(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environment_db = os.environ.pop("HEALTHGATE_FLEET_DB", None)
    try:
        for command in (["token", "create"], ["devices", "list"], ["incidents"]):
            result = fleet(*command, cwd=elsewhere)
            assert result.returncode == 2, (command, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, lines
            assert f"no fleet database at sqlite:///{elsewhere}/fleet-state/fleet.db" in lines[0]
            assert "healthgate-fleet init" in lines[0] and result.stdout == ""
        assert list(elsewhere.iterdir()) == []
    finally:
        if environment_db is not None:
            os.environ["HEALTHGATE_FLEET_DB"] = environment_db
    db = f"sqlite:///{tmp_path}/fleet/fleet.db"
    created = fleet("init", "--db", db)
    assert created.returncode == 0 and "created" in created.stdout
    assert "exists" in fleet("init", "--db", db).stdout
    token = fleet("token", "create", "--db", db)
    assert token.returncode == 0 and f"database: {db}" in token.stderr
    assert len(token.stdout.strip().splitlines()) == 1  # the token alone: scripts read it
    database = tmp_path / "fleet" / "fleet.db"
    assert _mode(database) == 0o600 and _mode(database.parent) == 0o700
    database.chmod(0o644)  # as an older version created it
    listed = fleet("devices", "list", "--db", db)
    assert listed.returncode == 0 and f"database: {db}" in listed.stderr
    assert _mode(database) == 0o600


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_fleet_database_is_private_and_refused_requests_name_the_device(tmp_path: Path) -> None:
    from firmware.sync.trustsync import register_device

    db = f"sqlite:///{tmp_path}/fleet-state/fleet.db"
    port, url = _free_port(), ""
    process = subprocess.Popen([sys.executable, "-m", "fleet.cli", "serve", "--host",
                                "127.0.0.1", "--port", str(port), "--db", db],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, umask=USER_UMASK)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_healthz(url, process, START_DEADLINE_S)  # its output if it exits instead
        assert fleet("token", "create", "--db", db).returncode == 0  # the server's own database
        token = fleet("token", "create", "--db", db).stdout.strip()
        register_device(url, token, "kiosk-modes-1", Ed25519PrivateKey.generate())  # a write
        folder = tmp_path / "fleet-state"
        files = {p.name: oct(_mode(p)) for p in folder.iterdir()}
        assert {"fleet.db", "fleet.db-wal", "fleet.db-shm"} <= set(files), files
        assert files == {name: "0o600" for name in files} and _mode(folder) == 0o700
        refused = requests.get(url + "/v1/trust/dcc-rules", timeout=5, headers={
            "X-Device-Id": "kiosk-ghost-7", "X-Timestamp": datetime.now(timezone.utc).isoformat(),
            "X-Nonce": "0123456789abcdef", "X-Signature": base64.b64encode(bytes(64)).decode()})
        assert refused.status_code == 401
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0].decode()
    assert f"database: {db}" in output
    assert "kiosk-ghost-7" in output and "refused" in output
