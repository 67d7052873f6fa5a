"""Shared pieces of the event log: its error type and reason codes, statistics, SQLite errors."""
from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass

from firmware.protocol.decoded import Decoded


class EventLogError(Exception):
    """A log operation failed; `code` is a stable reason (EVENTLOG_FULL, EVENTLOG_CORRUPT...)."""

    def __init__(self, code: str, message: str, pending: object = None,
                 reason: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.detail = message
        # EVENTLOG_BUSY with the event possibly stored: pass it back as append(retry_of=...)
        self.pending = pending
        # A refused event: the shared schema's reason (firmware/protocol/events.py), the same
        # one the fleet would give for it.
        self.reason = reason

    def copy(self) -> "EventLogError":
        """The same error as a new object (for each of several threads that raise it)."""
        return EventLogError(self.code, self.detail, self.pending, self.reason)


@dataclass(frozen=True)
class LogStats:
    events: int  # rows held (pending + uploaded + rejected)
    pending: int
    uploaded: int
    rejected: int
    tip_seq: int  # the last appended seq (0 when nothing was ever appended)
    anchor_seq: int  # compacted through this seq
    compacted: int  # events removed after upload, in total
    last_acked: int
    used_bytes: int  # database pages in use
    quota_bytes: int | None

    def as_dict(self) -> dict[str, Decoded]:
        return asdict(self)


def is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def translate(exc: sqlite3.Error, doing: str) -> EventLogError:
    """Map SQLite failures onto the log's stable reason codes."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL:
        return EventLogError("EVENTLOG_DISK_FULL", f"{doing}: {exc}")
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or "malformed" in str(exc):
        return EventLogError("EVENTLOG_CORRUPT", f"{doing}: {exc}")
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return EventLogError("EVENTLOG_BUSY", f"{doing}: {exc}")
    return EventLogError("EVENTLOG_IO", f"{doing}: {exc}")
