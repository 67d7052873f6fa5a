"""`healthgate-fleet` commands and the shipped OpenAPI document."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.protocol.envelope import verify_envelope
from firmware.protocol.keys import public_key_from_b64
from firmware.sync.trustsync import TrustSync, register_device
from fleet.cli import main
from fleet.devclient import make_chain, upload
from fleet.server import openapi_document, run_in_thread
from fleet.storage import MIGRATIONS
from tests.waiting import wait_for_healthz

ROOT = Path(__file__).resolve().parent.parent
STATIC_OPENAPI = ROOT / "docs" / "fleet-openapi.json"
START_DEADLINE_S = 30.0


def test_static_openapi_document_matches_the_generated_one() -> None:
    assert STATIC_OPENAPI.read_text(encoding="utf-8") == openapi_document(), (
        "docs/fleet-openapi.json is stale: regenerate it with "
        "`healthgate-fleet openapi > docs/fleet-openapi.json`")


def test_live_server_serves_the_same_document(tmp_path: Path) -> None:
    with run_in_thread(f"sqlite:///{tmp_path}/f.db") as server:
        served = requests.get(server.url + "/openapi.json", timeout=10).json()
    assert served == json.loads(STATIC_OPENAPI.read_text(encoding="utf-8"))
    assert set(served["paths"]) >= {"/v1/devices/register", "/v1/events", "/v1/time",
                                    "/v1/trust/{name}"}


def test_keygen_token_publish_and_devices_list(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path}/fleet.db"
    key_path = tmp_path / "keys" / "fleet.key"
    assert main(["keygen", "--key", str(key_path)]) == 0
    pinned = capsys.readouterr().out.strip().rsplit(" ", 1)[-1]
    assert oct(key_path.stat().st_mode & 0o777) == "0o600"
    assert main(["keygen", "--key", str(key_path)]) == 2  # never replaces a fleet key
    assert "refusing" in capsys.readouterr().err

    assert main(["init", "--db", db]) == 0
    capsys.readouterr()
    assert main(["token", "create", "--db", db]) == 0
    token = capsys.readouterr().out.strip()
    content = tmp_path / "signers.json"
    content.write_text(json.dumps({"certificates": ["MIIB"]}))
    assert main(["publish", "dcc-signers", str(content), "--db", db, "--key", str(key_path)]) == 0
    assert "version 1" in capsys.readouterr().out

    device = Ed25519PrivateKey.generate()
    with run_in_thread(db) as server:
        register_device(server.url, token, "kiosk-cli-1", device)
        with requests.Session() as http:
            upload(http, server.url, device, "kiosk-cli-1", make_chain(device, "kiosk-cli-1", 3))
        sync = TrustSync(server.url, tmp_path / "cache", [public_key_from_b64(pinned)],
                         "kiosk-cli-1", device)
        assert {o.name: o.status for o in sync.sync()}["dcc-signers"] == "updated"
        assert sync.content("dcc-signers") == {"certificates": ["MIIB"]}
        envelope = verify_envelope((tmp_path / "cache" / "dcc-signers.json").read_bytes(),
                                   [public_key_from_b64(pinned)], "dcc-signers")
        assert envelope["version"] == 1

    assert main(["devices", "list", "--db", db]) == 0
    listing = capsys.readouterr().out
    row = next(line.split() for line in listing.splitlines() if "kiosk-cli-1" in line)
    assert row[1] == "online" and row[-1] == "3"  # state ... events
    assert main(["incidents", "--db", db]) == 0


def test_cli_errors_are_messages_not_tracebacks(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path}/fleet.db"
    key_path = tmp_path / "fleet.key"
    main(["keygen", "--key", str(key_path)])
    main(["init", "--db", db])
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{nope")
    assert main(["publish", "dcc-rules", str(bad_json), "--db", db, "--key", str(key_path)]) == 2
    assert "cannot read JSON" in capsys.readouterr().err
    assert main(["publish", "Bad Name", str(bad_json), "--db", db, "--key", str(key_path)]) == 2
    assert main(["devices", "list", "--db", "mysql://nope"]) == 2
    assert "only sqlite:// and postgresql://" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_runs_the_production_server(tmp_path: Path, workers: int,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()
    db = f"sqlite:///{tmp_path}/fleet.db"
    main(["init", "--db", db])
    capsys.readouterr()
    main(["token", "create", "--db", db, "--ttl-hours", "1"])
    token = capsys.readouterr().out.strip()
    process = subprocess.Popen([sys.executable, "-m", "fleet.cli", "serve", "--host",
                                "127.0.0.1", "--port", str(port), "--db", db,
                                "--workers", str(workers)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    try:
        health = wait_for_healthz(url, process, START_DEADLINE_S)  # its output if it exits
        assert health.json() == {"status": "ok", "schema_version": MIGRATIONS[-1][0],
                                 "database": "sqlite"}
        now = requests.get(url + "/v1/time", timeout=5)
        assert abs(datetime.fromisoformat(now.json()["now"]) - datetime.now(timezone.utc)) \
            < timedelta(seconds=5)
        key = Ed25519PrivateKey.generate()
        register_device(url, token, "kiosk-serve-1", key)
        chain = make_chain(key, "kiosk-serve-1", 60)
        with requests.Session() as http:  # new connections too, so both workers get some
            answers = [upload(requests.Session(), url, key, "kiosk-serve-1", chain[i:i + 10])
                       for i in range(0, 60, 10)]
            again = upload(http, url, key, "kiosk-serve-1", chain)
        assert all(a["rejected"] == [] for a in answers)
        assert again["duplicates"] == 60
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0].decode()
    assert process.returncode == 0, output
    assert "Application startup complete" in output
    assert main(["devices", "list", "--db", db]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split()[-1] == "60"  # events


def test_admin_commands_open_but_never_create_a_store(db_url: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """On both back ends: a database without the fleet schema is "missing" to the admin
    commands (exit 2, one line naming it); `init` creates it; then they use it."""
    from fleet.db import DatabaseMissing
    from fleet.storage import Store

    with pytest.raises(DatabaseMissing):
        Store(db_url, create=False)
    assert main(["devices", "list", "--db", db_url]) == 2
    assert "no fleet database at" in capsys.readouterr().err
    assert main(["init", "--db", db_url]) == 0
    assert "created" in capsys.readouterr().out
    Store(db_url, create=False).close()
    assert main(["token", "create", "--db", db_url]) == 0
    assert main(["init", "--db", db_url]) == 0
    assert "exists; nothing changed" in capsys.readouterr().out


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_passes_the_body_limits_to_the_app(tmp_path: Path, workers: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` options reach the app, in process (one worker) and through the environment
    the worker processes are built from (several)."""
    import uvicorn

    from fleet import server
    from fleet.admission import Limits

    served: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: served.append(app))
    for name in (server.ENV_DB, server.ENV_MAX_BODY, server.ENV_SKEW_WINDOW,
                 server.ENV_BODY_BUDGET, server.ENV_UPLOADS_PER_DEVICE, server.ENV_MIN_RATE,
                 server.ENV_GRACE, server.ENV_KEY):
        monkeypatch.setenv(name, "")  # so that undo removes what main() sets
        monkeypatch.delenv(name)
    assert main(["serve", "--db", f"sqlite:///{tmp_path}/f.db", "--workers", str(workers),
                 "--max-body-bytes", "1000", "--body-budget-bytes", "5000",
                 "--max-uploads-per-device", "3", "--min-receive-rate", "256",
                 "--receive-grace", "2.5"]) == 0
    app = served[0] if workers == 1 else server.app_from_environment()
    try:
        assert app.state.body_guard.limits == Limits(  # type: ignore[attr-defined]
            max_body_bytes=1000, budget_bytes=5000, max_uploads_per_device=3,
            min_receive_rate_bps=256, receive_grace_s=2.5)
    finally:
        app.state.store.close()  # type: ignore[attr-defined]
