"""The log's quota accounting: whether one more append may start, and which "full" to report."""
from __future__ import annotations

import sqlite3

from firmware.eventlog.common import EventLogError

# Appends stop short of the hard quota by this reserve (1/10, at least 8 pages), which is kept
# for acknowledgements, rejections and compaction bookkeeping.
QUOTA_RESERVE_DIVISOR = 10
QUOTA_RESERVE_MIN_PAGES = 8
# An upper bound on the pages one append can add (a body of 8 Ki characters is at most 32 KiB
# of UTF-8: 9 overflow pages; a split of the table and of the pending index adds at most two
# pages per level, five levels deep, plus a new root each). While the soft limit is further
# away than this times the appends since the last count, appends skip counting pages.
MAX_PAGES_PER_APPEND = 32


def set_hard_limit(conn: sqlite3.Connection, quota_bytes: int) -> None:
    """The hard stop: SQLite itself refuses to grow past the quota (SQLITE_FULL), exactly the
    error a full disk gives, so both take the same path in an append."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={max(quota_bytes // page_size, 16)}")


def used_pages(conn: sqlite3.Connection) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    return int(pages - conn.execute("PRAGMA freelist_count").fetchone()[0])


class AppendQuota:
    """The soft limit appends keep under (the hard limit less the reserve), counted cheaply.
    Used under the log's writer lock only."""

    def __init__(self, conn: sqlite3.Connection, enforced: bool) -> None:
        self._append_pages: int | None = None
        self._unchecked_appends = 0  # appends that may skip counting pages (see allows_append)
        if enforced:
            hard = int(conn.execute("PRAGMA max_page_count").fetchone()[0])
            self._append_pages = hard - max(hard // QUOTA_RESERVE_DIVISOR,
                                            QUOTA_RESERVE_MIN_PAGES)

    def allows_append(self, conn: sqlite3.Connection) -> bool:
        """Whether one more append may start (pages in use below the soft limit). Counting
        pages costs two queries, so after a count at U pages the next (limit - U - 1) //
        MAX_PAGES_PER_APPEND appends skip it: none of them can have reached the limit.
        Other writes (acknowledgements, rejections) call recount()."""
        if self._append_pages is None:
            return True
        if self._unchecked_appends > 0:
            self._unchecked_appends -= 1
            return True
        used = used_pages(conn)
        if used >= self._append_pages:
            return False
        self._unchecked_appends = (self._append_pages - used - 1) // MAX_PAGES_PER_APPEND
        return True

    def recount(self) -> None:
        """Rows changed outside appends (they may have grown): count pages at the next append."""
        self._unchecked_appends = 0

    def full_error(self, conn: sqlite3.Connection) -> EventLogError:
        """EVENTLOG_FULL when the quota is what stops an append, else EVENTLOG_DISK_FULL."""
        try:
            quota_reached = (self._append_pages is not None
                             and used_pages(conn) >= self._append_pages - 1)
        except sqlite3.Error:  # cannot even count pages: the disk is the likelier culprit
            quota_reached = False
        if quota_reached:
            return EventLogError("EVENTLOG_FULL", "event log quota reached and every stored "
                                 "event still awaits upload; refusing new events")
        return EventLogError("EVENTLOG_DISK_FULL", "the disk is full; refusing new events")
