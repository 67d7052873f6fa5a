"""Compaction: which uploaded events may leave the log, and the anchor the rest starts from."""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from firmware.protocol.event_codec import GENESIS_HASH
from firmware.protocol.timestamps import rfc3339

PRESSURE_COMPACT_ROWS = 256  # uploaded rows freed per step when the quota is hit
COMPACT_EVERY_APPENDS = 500  # retention sweep cadence; quota pressure compacts immediately


class Compactor:
    """Deletes the oldest *contiguous* run of uploaded events, so the chain that remains still
    starts at a recorded anchor (seq, hash) and verifies. Without pressure only events uploaded
    longer ago than the retention period go; under quota pressure up to PRESSURE_COMPACT_ROWS
    go regardless of retention. Pending or rejected events never go. Used under the log's
    writer lock only."""

    def __init__(self, meta: Mapping[str, str], retention: timedelta,
                 clock: Callable[[], datetime]) -> None:
        self.anchor_seq = int(meta.get("anchor_seq", "0"))
        self.anchor_hash = meta.get("anchor_hash", GENESIS_HASH)
        self.compacted = int(meta.get("compacted", "0"))  # events removed over the log's life
        self._retention = retention
        self._clock = clock
        self._appends_since_sweep = 0

    def after_appends(self, conn: sqlite3.Connection, tip_seq: int, count: int) -> None:
        """Run the retention sweep once every COMPACT_EVERY_APPENDS appends."""
        self._appends_since_sweep += count
        if self._appends_since_sweep < COMPACT_EVERY_APPENDS:
            return
        self._appends_since_sweep = 0
        try:
            self.compact(conn, tip_seq, pressure=False)
        except sqlite3.Error:
            pass  # retention is housekeeping; the next sweep or quota pressure retries it

    def compact(self, conn: sqlite3.Connection, tip_seq: int, pressure: bool) -> int:
        """Remove what the policy allows now; returns the number of events removed."""
        first_pending = conn.execute(
            "SELECT MIN(seq) FROM events WHERE uploaded = 0").fetchone()[0]
        limit = (first_pending - 1) if first_pending is not None else tip_seq
        if pressure:
            limit = min(limit, self.anchor_seq + PRESSURE_COMPACT_ROWS)
        else:
            cutoff = rfc3339(self._clock() - self._retention)
            recent = conn.execute("SELECT MIN(seq) FROM events WHERE uploaded = 1 AND "
                                  "uploaded_at > ? AND seq <= ?", (cutoff, limit)).fetchone()[0]
            if recent is not None:
                limit = recent - 1
        if limit <= self.anchor_seq:
            return 0
        row = conn.execute("SELECT hash FROM events WHERE seq = ?", (limit,)).fetchone()
        if row is None:
            return 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            removed = conn.execute("DELETE FROM events WHERE seq <= ?", (limit,)).rowcount
            conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                             [("anchor_seq", str(limit)), ("anchor_hash", row[0]),
                              ("compacted", str(self.compacted + removed))])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.anchor_seq, self.anchor_hash = limit, row[0]
        self.compacted += removed
        return removed
