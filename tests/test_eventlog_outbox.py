"""The log's outbox on a real SQLite file: pending, acknowledgements, rejections, requeueing."""
from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.eventlog import EventLog, EventLogError
from firmware.eventlog.outbox import Outbox, UploadCounts, upload_counts

DEVICE = "kiosk-outbox-1"
BODY = {"decision": "granted", "reason": None, "format": "dcc", "pseudonym": "cd" * 16}


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "events.db"


def appended(log: EventLog, count: int) -> list[int]:
    return [log.append("decision", BODY).seq for _ in range(count)]


def test_pending_newest_first_and_upload_marks(db: Path, key: Ed25519PrivateKey) -> None:
    with EventLog.open(db, key, DEVICE) as log:
        outbox = Outbox(log)
        for _ in range(10):
            log.append("decision", BODY)
        assert [e.seq for e in outbox.pending(3)] == [10, 9, 8]
        assert [e.seq for e in outbox.pending(3, newest_first=False)] == [1, 2, 3]
        assert outbox.mark_uploaded([10, 9, 9, 42]) == 2
        assert outbox.last_acked == 10
        assert outbox.mark_rejected({8: "EVENT_BAD_SIGNATURE"}) == 1
        assert [e.seq for e in outbox.pending(3)] == [7, 6, 5]
        assert outbox.rejected() == {8: "EVENT_BAD_SIGNATURE"}
        stats = log.stats()
        assert (stats.pending, stats.uploaded, stats.rejected) == (7, 2, 1)
    with EventLog.open(db, key, DEVICE) as log:  # upload state is in the database
        outbox = Outbox(log)
        assert outbox.last_acked == 10 and outbox.pending_count() == 7
        assert outbox.requeue_rejected() == 1 and outbox.pending_count() == 8


def test_pending_events_are_the_signed_events_the_log_returned(db: Path,
                                                               key: Ed25519PrivateKey) -> None:
    with EventLog.open(db, key, DEVICE) as log:
        events = [log.append("decision", {**BODY, "reason": f"R{i}"}) for i in range(3)]
        assert Outbox(log).pending(10, newest_first=False) == events


def test_a_failed_bookkeeping_write_changes_nothing(db: Path, key: Ed25519PrivateKey) -> None:
    """Rejections are recorded in one transaction: one bad entry rolls back the others."""
    with EventLog.open(db, key, DEVICE) as log:
        appended(log, 4)
        outbox = Outbox(log)
        bad: dict = {1: "EVENT_BAD_SIGNATURE", "two": "EVENT_BAD_SIGNATURE"}  # "two" fails
        with pytest.raises(ValueError):
            outbox.mark_rejected(bad)
        assert outbox.rejected() == {} and outbox.pending_count() == 4
        assert outbox.mark_rejected({1: "EVENT_BAD_SIGNATURE"}) == 1  # the connection still works
    with EventLog.open(db, key, DEVICE) as log:
        assert Outbox(log).rejected() == {1: "EVENT_BAD_SIGNATURE"}


def test_an_acknowledged_event_leaves_the_rejected_park(db: Path, key: Ed25519PrivateKey) -> None:
    with EventLog.open(db, key, DEVICE) as log:
        appended(log, 3)
        outbox = Outbox(log)
        outbox.mark_rejected({2: "EVENT_UNKNOWN_KIND", 3: "EVENT_UNKNOWN_KIND"})
        assert outbox.mark_uploaded([2]) == 1  # the server took it after all
        assert outbox.rejected() == {3: "EVENT_UNKNOWN_KIND"}
        assert outbox.mark_rejected({2: "EVENT_UNKNOWN_KIND"}) == 0  # uploaded stays uploaded
        assert [e.seq for e in outbox.pending(10)] == [1]


def test_rejected_events_are_never_compacted(db: Path, key: Ed25519PrivateKey) -> None:
    with EventLog.open(db, key, DEVICE, retention=timedelta(0)) as log:
        appended(log, 5)
        outbox = Outbox(log)
        outbox.mark_rejected({3: "EVENT_BAD_SIGNATURE"})
        outbox.mark_uploaded([1, 2, 4, 5])
        assert log.compact() == 2  # 1 and 2; the chain must stay contiguous from the anchor
        assert log.get(3) is not None and outbox.rejected() == {3: "EVENT_BAD_SIGNATURE"}
        assert log.verify().ok


def test_acknowledgements_fit_in_a_full_log_and_free_it(db: Path, key: Ed25519PrivateKey) -> None:
    """A log full of pending events still records acknowledgements (the reserve above the
    appends' limit), after which compaction makes room and appends go on."""
    with EventLog.open(db, key, DEVICE, quota_bytes=64 * 1024) as log:
        acked: list[int] = []
        with pytest.raises(EventLogError) as full:
            for _ in range(5_000):
                acked.append(log.append("decision", BODY).seq)
        assert full.value.code == "EVENTLOG_FULL" and len(acked) > 20
        outbox = Outbox(log)
        assert outbox.mark_uploaded(acked) == len(acked)
        assert outbox.pending_count() == 0 and outbox.last_acked == acked[-1]
        assert log.append("decision", BODY).seq == acked[-1] + 1
        assert log.verify().ok


def test_last_acked_never_goes_back(db: Path, key: Ed25519PrivateKey) -> None:
    """Two outboxes over one log (the uploader's and a technician's tool) share the state."""
    with EventLog.open(db, key, DEVICE) as log:
        appended(log, 6)
        first, second = Outbox(log), Outbox(log)
        first.mark_uploaded([6])
        second.mark_uploaded([2])  # an older acknowledgement arriving late
        assert second.last_acked == 6 and log.stats().last_acked == 6
        assert first.pending_count() == second.pending_count() == 4


def test_a_closed_log_is_a_clear_error(db: Path, key: Ed25519PrivateKey) -> None:
    log = EventLog.open(db, key, DEVICE)
    outbox = Outbox(log)
    log.close()
    for call in (lambda: outbox.pending(), outbox.pending_count, outbox.rejected,
                 lambda: outbox.mark_uploaded([1]), outbox.requeue_rejected):
        with pytest.raises(EventLogError) as closed:
            call()
        assert closed.value.code == "EVENTLOG_CLOSED"


def test_upload_counts_on_a_read_only_connection(db: Path, key: Ed25519PrivateKey) -> None:
    """What `healthgate log stats` and the status page read while the kiosk holds the log."""
    with EventLog.open(db, key, DEVICE) as log:
        assert upload_counts_of(db) == UploadCounts(0, 0, 0, 0, None)
        appended(log, 5)
        outbox = Outbox(log)
        outbox.mark_uploaded([1, 2])
        outbox.mark_rejected({3: "EVENT_BAD_SIGNATURE"})
        assert upload_counts_of(db) == UploadCounts(events=5, pending=2, uploaded=2, rejected=1,
                                                    tip_seq=5)
        stats = log.stats()
        assert (stats.events, stats.pending, stats.uploaded, stats.rejected) == (5, 2, 2, 1)


def upload_counts_of(db: Path) -> UploadCounts:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return upload_counts(conn)
    finally:
        conn.close()
