"""`healthgate log verify|stats`: exit codes, the first broken link named, key sources."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from firmware import identity
from firmware.eventlog import EventLog
from firmware.eventlog.cli import main
from firmware.protocol.keys import public_key_b64
from firmware.eventlog.outbox import Outbox


@pytest.fixture
def state(tmp_path: Path) -> Path:
    state_dir = tmp_path / "state"
    device = identity.load_or_create(state_dir, "kiosk-cli-1")
    with EventLog.open(state_dir / "events.db", device.key, device.device_id) as log:
        for n in range(12):
            log.append("decision", {"decision": "granted", "n": n})
        Outbox(log).mark_uploaded([1, 2, 3])
    return state_dir


def test_verify_ok_with_the_device_key(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert "OK: 12 events verified" in out and "device key in" in out


def test_verify_names_the_first_broken_link(state: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    conn = sqlite3.connect(state / "events.db")
    conn.execute("UPDATE events SET body = '{\"decision\":\"denied\",\"n\":6}' WHERE seq = 7")
    conn.execute("UPDATE events SET body = '{\"decision\":\"denied\",\"n\":8}' WHERE seq = 9")
    conn.commit()
    conn.close()
    assert main(["verify", "--state-dir", str(state), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["ok"], report["broken_seq"], report["reason"]) == (
        False, 7, "EVENT_HASH_MISMATCH")


def test_verify_with_another_public_key_fails(state: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = public_key_b64(Ed25519PrivateKey.generate())
    assert main(["verify", "--db", str(state / "events.db"), "--public-key", other]) == 1
    assert "BROKEN at seq 1: EVENT_BAD_SIGNATURE" in capsys.readouterr().out


def test_verify_without_a_key_says_integrity_only(state: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--state-dir", str(tmp_path / "nowhere"),
                 "--db", str(state / "events.db")]) == 0
    assert "integrity only" in capsys.readouterr().out


def test_missing_or_garbage_database_is_an_error(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--db", str(tmp_path / "none.db")]) == 2
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00not sqlite" * 500)
    assert main(["verify", "--db", str(garbage)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_stats(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--state-dir", str(state), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert (figures["events"], figures["pending"], figures["uploaded"]) == (12, 9, 3)
    assert figures["device_id"] == "kiosk-cli-1" and figures["last_acked"] == 3


def test_state_dir_from_the_kiosk_configuration(state: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[camera]\nsource = "fake"\n\n[state]\ndir = "{state}"\n')
    assert main(["verify", "--config", str(config)]) == 0
    assert f"device key in {state}" in capsys.readouterr().out
    config.write_text('[state]\ndri = "typo"\n')
    assert main(["verify", "--config", str(config)]) == 2
    assert "state.dri" in capsys.readouterr().err
