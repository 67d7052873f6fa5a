"""Schema migrations: numbered, a backup before each, data and chain preserved."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.eventlog import EventLog, EventLogError
from firmware.eventlog import schema
from firmware.protocol.event_codec import GENESIS_HASH, make_event
from firmware.protocol.events import canonical_json
from firmware.protocol.keys import public_key_b64
from firmware.eventlog.outbox import Outbox

DEVICE = "kiosk-migrate"


def build_v1_log(path: Path, key: Ed25519PrivateKey, count: int) -> list[str]:
    """A log as the first release wrote it: schema v1, events, identity in meta."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    schema.migrate(conn, None, upto=1)
    prev, hashes = GENESIS_HASH, []
    for seq in range(1, count + 1):
        body = {"decision": "granted", "n": seq}
        event = make_event(key, DEVICE, seq, f"2026-11-01T10:00:{seq % 60:02d}.000Z",
                           "decision", body, prev)
        conn.execute("INSERT INTO events(seq, ts, kind, body, prev_hash, hash, sig, uploaded) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (seq, event.ts, event.kind, canonical_json(body).decode(), prev,
                      event.hash, event.sig, int(seq <= 2)))
        prev = event.hash
        hashes.append(event.hash)
    conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)",
                     [("device_id", DEVICE), ("public_key", public_key_b64(key))])
    conn.close()
    return hashes


def test_v1_log_is_migrated_after_a_backup(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "events.db"
    hashes = build_v1_log(path, key, 5)
    with EventLog.open(path, key, DEVICE) as log:
        assert schema.current_version(log._db()) == schema.SCHEMA_VERSION
        assert log.verify().ok
        assert [e.seq for e in Outbox(log).pending(10, newest_first=False)] == [3, 4, 5]  # state kept
        event = log.append("decision", {"decision": "denied"})
        assert (event.seq, event.prev_hash) == (6, hashes[-1])
    backup = schema.backup_path(path, 1)
    assert backup.is_file()
    old = sqlite3.connect(backup)
    try:
        assert old.execute("PRAGMA user_version").fetchone()[0] == 1
        assert [r[0] for r in old.execute("SELECT hash FROM events ORDER BY seq")] == hashes
    finally:
        old.close()


def test_a_new_log_needs_no_backup(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    EventLog.open(path, Ed25519PrivateKey.generate(), DEVICE).close()
    assert not list(tmp_path.glob("*.bak"))


def test_a_failed_migration_leaves_the_old_version_and_its_backup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "events.db"
    build_v1_log(path, key, 3)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE events ADD COLUMN uploaded_at TEXT")
        raise sqlite3.OperationalError("simulated failure half way")

    monkeypatch.setattr(schema, "MIGRATIONS", [schema.MIGRATIONS[0], broken])
    with pytest.raises(EventLogError) as caught:
        EventLog.open(path, key, DEVICE)
    assert caught.value.code == "EVENTLOG_IO"
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        columns = [r[1] for r in conn.execute("PRAGMA table_info(events)")]
        assert "uploaded_at" not in columns  # rolled back as a whole
    finally:
        conn.close()
    assert schema.backup_path(path, 1).is_file()
    monkeypatch.undo()
    with EventLog.open(path, key, DEVICE) as log:  # the real migration then succeeds
        assert log.verify().ok and log.tip_seq == 3


def test_a_newer_schema_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    key = Ed25519PrivateKey.generate()
    EventLog.open(path, key, DEVICE).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(EventLogError) as caught:
        EventLog.open(path, key, DEVICE)
    assert caught.value.code == "EVENTLOG_SCHEMA"
