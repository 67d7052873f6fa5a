"""A kiosk that keeps its key but loses its event log starts a new chain the fleet accepts."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.eventlog import EventLog, EventLogError
from firmware.eventlog.outbox import Outbox
from firmware.eventlog.restart import open_or_restart
from firmware.protocol.event_codec import GENESIS_HASH, LOG_RESTARTED_KIND
from tests.test_uploader import DEVICE, drain, make_uploader
from tests.test_uploader_support import Fleet

BODY = {"decision": "denied", "reason": "DCC_EXPIRED", "format": "dcc", "pseudonym": "ab" * 16}
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def _now() -> datetime:
    return NOW


def test_first_log_starts_at_one_and_reopens_unchanged(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "events.db"
    with open_or_restart(path, key, DEVICE, _now) as log:
        assert log.append("decision", BODY).seq == 1
    with open_or_restart(path, key, DEVICE, _now) as log:
        assert log.append("decision", BODY).seq == 2
    assert (tmp_path / "events.db.start").read_text().strip() == "1"


def test_lost_log_restarts_past_the_old_chain_and_the_fleet_takes_it(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    fleet = Fleet(tmp_path / "fleet.db").start()
    try:
        fleet.enrol(key, DEVICE)
        path = tmp_path / "kiosk" / "events.db"
        with open_or_restart(path, key, DEVICE, _now) as log:
            for _ in range(5):
                log.append("decision", BODY)
            drain(make_uploader(log, fleet.url, key))
            log.append("decision", BODY)  # seq 6: never uploaded, lost with the file
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)

        with open_or_restart(path, key, DEVICE, _now) as log:
            first = log.get(int(NOW.timestamp() * 1000))
            assert first is not None and first.kind == LOG_RESTARTED_KIND
            assert first.prev_hash == GENESIS_HASH and first.body["reason"] == "EVENTLOG_MISSING"
            after = log.append("decision", BODY)
            assert after.seq == first.seq + 1
            assert log.verify().ok
            uploader = make_uploader(log, fleet.url, key)
            drain(uploader)
            assert uploader.status().pending == 0 and Outbox(log).rejected() == {}
        stored = [e.seq for e in fleet.stored(DEVICE)]
        assert stored == [1, 2, 3, 4, 5, first.seq, first.seq + 1]
        assert (path.with_name("events.db.start").read_text().strip()) == str(first.seq)
    finally:
        fleet.stop()


def test_a_restart_with_a_wrong_clock_still_numbers_past_the_old_chain(tmp_path: Path) -> None:
    """A board without a real-time clock may boot in 1970: the recorded start, not the
    clock, then keeps the new chain clear of every seq the old one can have used."""
    from firmware.eventlog.restart import SEQ_GAP

    key = Ed25519PrivateKey.generate()
    path = tmp_path / "events.db"
    open_or_restart(path, key, DEVICE, _now).close()
    starts = []
    for clock in (_now, lambda: datetime(1970, 1, 1, 0, 0, 5, tzinfo=timezone.utc)):
        path.unlink()
        with open_or_restart(path, key, DEVICE, clock) as log:
            starts.append(log.stats().tip_seq)
    assert starts[0] == int(NOW.timestamp() * 1000)  # past a chain that started at 1
    assert starts[1] == starts[0] + SEQ_GAP  # the clock went back; the numbering did not


def test_a_corrupt_log_is_moved_aside_not_deleted(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "events.db"
    with open_or_restart(path, key, DEVICE, _now) as log:
        for _ in range(200):
            log.append("decision", BODY)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the main file
    conn.close()
    data = bytearray(path.read_bytes())
    for offset in range(3 * 4096, len(data) - 4096, 4096):  # damaged pages on the card
        data[offset:offset + 16] = b"\xde\xad\xbe\xef" * 4
    path.write_bytes(bytes(data))
    with open_or_restart(path, key, DEVICE, _now) as log:
        assert log.stats().tip_seq == int(NOW.timestamp() * 1000)
        assert log.get(log.stats().tip_seq).body["reason"] in ("EVENTLOG_CORRUPT",
                                                               "EVENTLOG_CHAIN_BROKEN")
    aside = list(tmp_path.glob("events.db.broken-*"))
    assert aside and aside[0].stat().st_size == len(data)  # kept for a technician


def test_other_open_failures_are_not_papered_over(tmp_path: Path) -> None:
    """A wrong key is a provisioning fault, not a lost log: a new chain would not cure it."""
    path = tmp_path / "events.db"
    open_or_restart(path, Ed25519PrivateKey.generate(), DEVICE, _now).close()
    with pytest.raises(EventLogError) as raised:
        open_or_restart(path, Ed25519PrivateKey.generate(), DEVICE, _now)
    assert raised.value.code == "EVENTLOG_IDENTITY_MISMATCH"
    assert not list(tmp_path.glob("events.db.broken-*"))


def test_restart_after_is_refused_for_a_log_that_holds_events(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "events.db"
    with EventLog.open(path, key, DEVICE) as log:
        log.append("decision", BODY)
    with pytest.raises(EventLogError) as raised:
        EventLog.open(path, key, DEVICE, restart_after=1000)
    assert raised.value.code == "EVENTLOG_BAD_CONFIG"
