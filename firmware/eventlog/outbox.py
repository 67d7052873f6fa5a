"""The log's upload queue: pending events, acknowledgements and rejections from the fleet."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import NamedTuple

from firmware.protocol.event_codec import Event
from firmware.protocol.timestamps import rfc3339
from firmware.eventlog.log import SELECT_EVENTS, EventLog
from firmware.eventlog.verify import read_meta, row_to_event

ACK_CHUNK = 500  # seqs per UPDATE: well under SQLite's limit on bound parameters


class UploadCounts(NamedTuple):
    events: int  # held in the log (compacted ones not included)
    pending: int  # awaiting upload (rejected ones not included)
    uploaded: int
    rejected: int
    tip_seq: int | None  # the newest event's seq (None when the log holds none)


def upload_counts(conn: sqlite3.Connection) -> UploadCounts:
    """The upload state on any connection to the log's file, a read-only one included: for
    readers outside the kiosk's writer (`healthgate log stats`, the status page)."""
    row = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(uploaded = 0 AND rejected IS NULL), 0), "
        "COALESCE(SUM(uploaded), 0), COALESCE(SUM(rejected IS NOT NULL), 0), MAX(seq) "
        "FROM events").fetchone()
    return UploadCounts(*row)


class Outbox:
    """What the uploader sees of an event log: which events still await the fleet, and the
    fleet's answers. The state lives in the log's database (columns `uploaded`, `uploaded_at`
    and `rejected`, meta `last_acked`), so a restart resumes exactly there; it shares the log's
    connection and writer lock, so bookkeeping and appends never interleave inside a
    transaction. Uploaded events become the log's to compact; rejected ones stay."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        with log.bookkeeping("reading the upload state", writes=False) as conn:
            self._last_acked = int(read_meta(conn).get("last_acked", "0"))

    @property
    def log(self) -> EventLog:
        return self._log

    @property
    def last_acked(self) -> int:
        """Highest seq the server has acknowledged (0 when none)."""
        return self._last_acked

    def pending(self, limit: int = 500, newest_first: bool = True) -> list[Event]:
        """Events not yet acknowledged (rejected ones excluded), newest first by default so
        live decisions overtake a backlog."""
        order = "DESC" if newest_first else "ASC"
        with self._log.bookkeeping("reading pending events", writes=False) as conn:
            rows = conn.execute(
                SELECT_EVENTS + f" WHERE uploaded = 0 AND rejected IS NULL ORDER BY seq {order} "
                "LIMIT ?", (max(0, int(limit)),)).fetchall()
        return [row_to_event(self._log.device_id, row) for row in rows]

    def pending_count(self) -> int:
        with self._log.bookkeeping("counting pending events", writes=False) as conn:
            return int(conn.execute(
                "SELECT COUNT(*) FROM events WHERE uploaded = 0 AND rejected IS NULL"
            ).fetchone()[0])

    def mark_uploaded(self, seqs: Iterable[int]) -> int:
        """Record the server's acknowledgement; returns how many events changed state."""
        wanted = sorted({int(seq) for seq in seqs})
        if not wanted:
            return 0
        stamp = rfc3339(self._log.clock())
        with self._log.bookkeeping("recording acknowledgements", writes=True) as conn:
            changed = 0
            for start in range(0, len(wanted), ACK_CHUNK):
                chunk = wanted[start:start + ACK_CHUNK]
                marks = ",".join("?" * len(chunk))
                changed += conn.execute(
                    f"UPDATE events SET uploaded = 1, uploaded_at = ?, rejected = NULL "
                    f"WHERE uploaded = 0 AND seq IN ({marks})", (stamp, *chunk)).rowcount
            stored = int(read_meta(conn).get("last_acked", "0"))  # another Outbox may have moved it
            last = max(stored, self._last_acked, min(wanted[-1], self._log.tip_seq))
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('last_acked', ?)",
                         (str(last),))
        self._last_acked = last
        return changed

    def mark_rejected(self, rejections: dict[int, str]) -> int:
        """Park events the server refused (kept, never compacted, not re-sent automatically)."""
        if not rejections:
            return 0
        with self._log.bookkeeping("recording rejections", writes=True) as conn:
            return sum(conn.execute(
                "UPDATE events SET rejected = ? WHERE uploaded = 0 AND seq = ?",
                (str(reason)[:64], int(seq))).rowcount for seq, reason in rejections.items())

    def requeue_rejected(self) -> int:
        """Put rejected events back in the upload queue (after the cause was fixed)."""
        with self._log.bookkeeping("requeueing", writes=True) as conn:
            return conn.execute(
                "UPDATE events SET rejected = NULL WHERE rejected IS NOT NULL").rowcount

    def rejected(self) -> dict[int, str]:
        """The parked events: seq -> the server's reason."""
        with self._log.bookkeeping("reading rejected events", writes=False) as conn:
            rows = conn.execute(
                "SELECT seq, rejected FROM events WHERE rejected IS NOT NULL").fetchall()
        return {seq: reason for seq, reason in rows}
