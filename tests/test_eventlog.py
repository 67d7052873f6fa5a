"""Event log: durable signed appends, chain verification, privacy guard, quota, retention, threads."""
from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.eventlog import EventLog, EventLogError
from firmware.eventlog.outbox import Outbox
from firmware.eventlog.sqlitefile import WAL_SIZE_BYTES
from firmware.protocol.event_codec import GENESIS_HASH, check_event, check_link

DEVICE = "kiosk-test-1"
KIOSK_BODY = {"decision": "granted", "reason": None, "format": "dcc",
              "pseudonym": "ab" * 16, "face": {"score": 0.83, "liveness": 0.97}}


class ManualClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "events.db"


def raw(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(db, isolation_level=None)


def test_append_signs_chains_and_survives_reopen(db: Path, key: Ed25519PrivateKey) -> None:
    with EventLog.open(db, key, DEVICE) as log:
        first = log.append("decision", KIOSK_BODY)
        second = log.append("decision", {**KIOSK_BODY, "decision": "denied",
                                         "reason": "DCC_EXPIRED"})
    assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
    assert check_event(first, key.public_key()) is None
    assert check_event(second, key.public_key()) is None
    assert check_link(first, second) is None
    with EventLog.open(db, key, DEVICE) as log:  # the chain continues across a restart
        third = log.append("fault", {"part": "camera"})
        assert log.get(2) == second
        report = log.verify()
    assert (third.seq, third.prev_hash) == (3, second.hash)
    assert report.ok and report.checked == 3 and report.last_seq == 3


def test_database_uses_wal_and_full_sync(db: Path, key: Ed25519PrivateKey) -> None:
    with EventLog.open(db, key, DEVICE) as log:
        log.append("decision", KIOSK_BODY)
        for name in (db.name, db.name + "-wal", db.name + "-shm"):
            assert (db.parent / name).stat().st_mode & 0o077 == 0  # owner only
        conn = log._db()  # the connection that commits appends
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_wal_is_grown_once_and_then_overwritten_in_place(db: Path,
                                                         key: Ed25519PrivateKey) -> None:
    wal = Path(f"{db}-wal")
    with EventLog.open(db, key, DEVICE, durability="normal") as log:
        assert wal.stat().st_size == WAL_SIZE_BYTES  # grown at open, before any append
        for n in range(1200):  # past SQLite's automatic checkpoint: the WAL restarts
            log.append("decision", {"decision": "granted", "n": n})
        assert wal.stat().st_size == WAL_SIZE_BYTES  # reused, never grown or cut
        with EventLog.open(db, key, DEVICE) as second:  # a WAL in use is left alone
            assert wal.stat().st_size == WAL_SIZE_BYTES
            assert second.tip_seq == 1200 and second.verify().ok
        log.append("decision", {"decision": "granted", "n": "last"})
    with EventLog.open(db, key, DEVICE) as log:
        assert log.tip_seq == 1201 and log.verify().ok


@pytest.mark.parametrize("body", [
    {"nam": {"fn": "Mustermann"}},
    {"dob": "1964-08-12"},
    {"holder": {"birthDate": "1964"}},
    {"ci": "URN:UVCI:01DE/IZ12345A/5CWLU12RNOB9RXSEOP6FG8#W"},
    {"uvci": "x"}, {"credential_id": "x"}, {"jti": "x"}, {"Given-Name": "x"},
    {"items": [{"name": "x"}]},
    {"note": "urn:uvci:01:SE:EHM/V12916227179"},
    {"raw": "HC1:6BFOXN%TS3DH0YOJ58S"},
])
def test_guard_refuses_personal_fields_and_stores_nothing(db: Path, key: Ed25519PrivateKey,
                                                          body: dict) -> None:
    with EventLog.open(db, key, DEVICE) as log:
        with pytest.raises(EventLogError) as caught:
            log.append("decision", body)
        assert caught.value.code == "EVENTLOG_FORBIDDEN_FIELD"
        assert "Mustermann" not in str(caught.value) and "1964" not in str(caught.value)
        assert log.stats().events == 0 and log.tip_seq == 0


@pytest.mark.parametrize("kind, body, code", [
    ("decision", {"score": float("nan")}, "EVENTLOG_BAD_BODY"),
    ("decision", {"blob": b"bytes"}, "EVENTLOG_BAD_BODY"),
    ("decision", ["not", "a", "dict"], "EVENTLOG_BAD_BODY"),
    ("decision", {"pad": "x" * 10_000}, "EVENTLOG_BAD_BODY"),
    ("Decision!", {}, "EVENTLOG_BAD_KIND"),
    ("", {}, "EVENTLOG_BAD_KIND"),
])
def test_bad_input_is_refused_with_a_reason(db: Path, key: Ed25519PrivateKey, kind: str,
                                            body: object, code: str) -> None:
    with EventLog.open(db, key, DEVICE) as log:
        with pytest.raises(EventLogError) as caught:
            log.append(kind, body)  # type: ignore[arg-type]
        assert caught.value.code == code
        assert log.append("decision", KIOSK_BODY).seq == 1  # the chain is untouched


json_leaf = st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20) | \
    st.floats(allow_nan=False, allow_infinity=False)
safe_keys = st.sampled_from(["decision", "reason", "format", "pseudonym", "score", "x", "k_2"])
bodies = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(safe_keys, inner, max_size=3), max_leaves=8)
# Fields the decision kind does not declare may hold any JSON (tests/test_event_schema.py
# covers the declared ones).
free_keys = st.sampled_from(["score", "x", "k_2", "extra"])


@settings(max_examples=30, deadline=None)
@given(extra=st.dictionaries(free_keys, bodies, max_size=4))
def test_any_json_body_round_trips_and_verifies(tmp_path_factory: pytest.TempPathFactory,
                                                extra: dict) -> None:
    body = {"decision": "denied", **extra}
    key = Ed25519PrivateKey.generate()
    path = tmp_path_factory.mktemp("rt") / "events.db"
    with EventLog.open(path, key, DEVICE, durability="normal") as log:
        event = log.append("decision", body)
        (stored,) = Outbox(log).pending(10)
    assert stored == event and stored.body == body
    assert check_event(stored, key.public_key()) is None


def tamper(db: Path, sql: str, *params: object) -> None:
    conn = raw(db)
    conn.execute(sql, params)
    conn.close()


@pytest.mark.parametrize("sql, params, broken_seq, reason", [
    ("UPDATE events SET body = ? WHERE seq = 5", ('{"decision":"granted"}',), 5,
     "EVENT_HASH_MISMATCH"),
    ("UPDATE events SET ts = ? WHERE seq = 4", ("2020-01-01T00:00:00.000Z",), 4,
     "EVENT_HASH_MISMATCH"),
    ("UPDATE events SET sig = (SELECT sig FROM events WHERE seq = 1) WHERE seq = ?", (6,), 6,
     "EVENT_BAD_SIGNATURE"),
    ("DELETE FROM events WHERE seq = ?", (3,), 3, "EVENT_SEQ_GAP"),
    ("UPDATE events SET prev_hash = ? WHERE seq = 7", ("f" * 64,), 7, "EVENT_CHAIN_BROKEN"),
])
def test_verify_names_the_first_broken_link(db: Path, key: Ed25519PrivateKey, sql: str,
                                            params: tuple, broken_seq: int, reason: str) -> None:
    with EventLog.open(db, key, DEVICE) as log:
        for _ in range(9):
            log.append("decision", KIOSK_BODY)
    tamper(db, sql, *params)
    with EventLog.open(db, key, DEVICE) as log:  # the tail (seq 9) is intact, so it opens
        report = log.verify()
    assert not report.ok
    assert (report.broken_seq, report.reason) == (broken_seq, reason)
    assert f"seq {broken_seq}" in str(report)


def test_rewritten_history_signed_by_another_key_is_caught(db: Path,
                                                           key: Ed25519PrivateKey) -> None:
    with EventLog.open(db, key, DEVICE) as log:
        for _ in range(3):
            log.append("decision", KIOSK_BODY)
    forger = Ed25519PrivateKey.generate()
    other = db.with_name("forged.db")
    with EventLog.open(other, forger, DEVICE) as log:
        forged = [log.append("decision", {**KIOSK_BODY, "decision": "denied"}) for _ in range(3)]
    tamper(db, "UPDATE events SET body = ?, hash = ?, sig = ? WHERE seq = 1",
           '{"decision":"denied"}', forged[0].hash, forged[0].sig)
    with EventLog.open(db, key, DEVICE) as log:
        report = log.verify()
    assert (report.ok, report.broken_seq) == (False, 1)


def test_tampered_tip_refuses_to_open(db: Path, key: Ed25519PrivateKey) -> None:
    with EventLog.open(db, key, DEVICE) as log:
        for _ in range(3):
            log.append("decision", KIOSK_BODY)
    tamper(db, "UPDATE events SET body = ? WHERE seq = 3", '{"decision":"granted"}')
    with pytest.raises(EventLogError) as caught:
        EventLog.open(db, key, DEVICE)
    assert caught.value.code == "EVENTLOG_CHAIN_BROKEN"


def test_other_identity_is_refused(db: Path, key: Ed25519PrivateKey) -> None:
    EventLog.open(db, key, DEVICE).close()
    for other_key, other_id in ((Ed25519PrivateKey.generate(), DEVICE), (key, "kiosk-other")):
        with pytest.raises(EventLogError) as caught:
            EventLog.open(db, other_key, other_id)
        assert caught.value.code == "EVENTLOG_IDENTITY_MISMATCH"


def test_garbage_file_is_reported_corrupt(db: Path, key: Ed25519PrivateKey) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not an sqlite database at all" * 200)
    with pytest.raises(EventLogError) as caught:
        EventLog.open(db, key, DEVICE)
    assert caught.value.code == "EVENTLOG_CORRUPT"


def test_damaged_pages_are_reported_corrupt(db: Path, key: Ed25519PrivateKey) -> None:
    with EventLog.open(db, key, DEVICE) as log:
        for _ in range(200):
            log.append("decision", KIOSK_BODY)
    conn = raw(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(db.read_bytes())
    page = 4096
    for offset in range(3 * page, len(data) - page, page):  # scribble over the page headers
        data[offset:offset + 16] = b"\xde\xad\xbe\xef" * 4
    db.write_bytes(bytes(data))
    with pytest.raises(EventLogError) as caught:
        EventLog.open(db, key, DEVICE)
    assert caught.value.code == "EVENTLOG_CORRUPT"


def test_closed_log_refuses(db: Path, key: Ed25519PrivateKey) -> None:
    log = EventLog.open(db, key, DEVICE)
    log.close()
    log.close()  # idempotent
    with pytest.raises(EventLogError) as caught:
        log.append("decision", KIOSK_BODY)
    assert caught.value.code == "EVENTLOG_CLOSED"


def test_kiosk_and_uploader_threads_share_the_log(db: Path, key: Ed25519PrivateKey) -> None:
    errors: list[BaseException] = []
    acked: list[int] = []
    done = threading.Event()
    with EventLog.open(db, key, DEVICE) as log:

        def kiosk() -> None:
            try:
                for _ in range(150):
                    acked.append(log.append("decision", KIOSK_BODY).seq)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                done.set()

        outbox = Outbox(log)

        def uploader() -> None:
            try:
                while not done.is_set() or outbox.pending_count():
                    batch = outbox.pending(20)
                    outbox.mark_uploaded(e.seq for e in batch)
                    log.stats()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=kiosk), threading.Thread(target=uploader)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors
        assert acked == list(range(1, 151))
        stats = log.stats()
        assert (stats.uploaded, stats.pending) == (150, 0)
        assert log.verify().ok


def fill_until_full(log: EventLog, limit: int = 5_000) -> tuple[list[int], EventLogError]:
    acked: list[int] = []
    for _ in range(limit):
        try:
            acked.append(log.append("decision", KIOSK_BODY).seq)
        except EventLogError as exc:
            return acked, exc
    raise AssertionError("quota never reached")


def test_quota_refuses_when_only_unuploaded_events_remain(db: Path,
                                                          key: Ed25519PrivateKey) -> None:
    with EventLog.open(db, key, DEVICE, quota_bytes=64 * 1024) as log:
        acked, error = fill_until_full(log)
        assert error.code == "EVENTLOG_FULL"
        assert len(acked) > 20
        with pytest.raises(EventLogError):  # stays refused: nothing may be dropped
            log.append("decision", KIOSK_BODY)
        stats = log.stats()
        assert (stats.events, stats.pending, stats.compacted) == (len(acked), len(acked), 0)
        assert [e.seq for e in Outbox(log).pending(10_000, newest_first=False)] == acked
        assert log.verify().ok


def test_quota_compacts_uploaded_events_first(db: Path, key: Ed25519PrivateKey) -> None:
    with EventLog.open(db, key, DEVICE, quota_bytes=64 * 1024) as log:
        acked, _ = fill_until_full(log)
        uploaded = acked[: len(acked) // 2]
        outbox = Outbox(log)
        outbox.mark_uploaded(uploaded)
        more, error = fill_until_full(log)
        assert error.code == "EVENTLOG_FULL"  # once the uploaded half is gone, it refuses again
        stats = log.stats()
        assert stats.compacted == len(uploaded) and stats.anchor_seq == uploaded[-1]
        # every event not uploaded is still there, and the remaining chain verifies
        remaining = {e.seq for e in outbox.pending(10_000)}
        assert remaining == set(acked[len(uploaded):]) | set(more)
        report = log.verify()
        assert report.ok and report.anchor_seq == uploaded[-1]
        assert report.first_seq == uploaded[-1] + 1
    with EventLog.open(db, key, DEVICE, quota_bytes=64 * 1024) as log:  # anchor persisted
        assert log.verify().ok and log.tip_seq == more[-1]


def test_compaction_never_skips_over_a_pending_event(db: Path, key: Ed25519PrivateKey) -> None:
    with EventLog.open(db, key, DEVICE, quota_bytes=64 * 1024) as log:
        acked, _ = fill_until_full(log)
        Outbox(log).mark_uploaded(s for s in acked if s != 3)  # seq 3 still waits for the server
        assert log.compact() == 0  # within retention anyway
        _, error = fill_until_full(log)
        assert log.stats().anchor_seq == 2 and error.code == "EVENTLOG_FULL"
        assert log.get(3) is not None


def test_retention_removes_only_old_uploaded_events(db: Path, key: Ed25519PrivateKey) -> None:
    clock = ManualClock()
    with EventLog.open(db, key, DEVICE, retention=timedelta(days=7), clock=clock) as log:
        for _ in range(10):
            log.append("decision", KIOSK_BODY)
        outbox = Outbox(log)
        outbox.mark_uploaded(range(1, 5))
        clock.now += timedelta(days=3)
        outbox.mark_uploaded(range(5, 8))
        clock.now += timedelta(days=5)  # 1-4 are 8 days old, 5-7 are 5 days old
        assert log.compact() == 4
        assert log.stats().anchor_seq == 4 and log.get(5) is not None
        clock.now += timedelta(days=30)
        assert log.compact() == 3  # 8-10 were never uploaded: kept
        assert [e.seq for e in outbox.pending(10, newest_first=False)] == [8, 9, 10]
        assert log.verify().ok
