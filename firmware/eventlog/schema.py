"""Numbered schema migrations for the event log database, each preceded by a backup copy."""
from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from firmware.fsutil import create_private_file

# Each migration takes the connection inside an open transaction and moves the schema from
# version N-1 to N. Never edit a released migration; append a new one.
Migration = Callable[[sqlite3.Connection], None]


def _v1_initial(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE events (
               seq       INTEGER PRIMARY KEY,      -- 1, 2, 3 ... per device, no gaps
               ts        TEXT NOT NULL,            -- RFC 3339 UTC
               kind      TEXT NOT NULL,
               body      TEXT NOT NULL,            -- canonical JSON of the body
               prev_hash TEXT NOT NULL,
               hash      TEXT NOT NULL,
               sig       TEXT NOT NULL,
               uploaded  INTEGER NOT NULL DEFAULT 0 -- 0 pending, 1 acknowledged by the server
           )""")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


def _v2_upload_state(conn: sqlite3.Connection) -> None:
    # Upload bookkeeping: when the server acknowledged an event, and events it rejected
    # (kept, never compacted, not retried automatically: they need a person to look at them).
    conn.execute("ALTER TABLE events ADD COLUMN uploaded_at TEXT")
    conn.execute("ALTER TABLE events ADD COLUMN rejected TEXT")
    # The uploader asks for pending events on every batch; a partial index keeps that cheap
    # even when most of the table is already uploaded.
    conn.execute("CREATE INDEX events_pending ON events(seq) WHERE uploaded = 0 AND rejected IS NULL")


MIGRATIONS: list[Migration] = [_v1_initial, _v2_upload_state]
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(Exception):
    """The database schema cannot be brought to the version this code expects."""


def current_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def backup_path(db_path: Path, from_version: int) -> Path:
    return db_path.with_name(f"{db_path.name}.v{from_version}.bak")


def backup(conn: sqlite3.Connection, target: Path) -> None:
    """Copy the live database with SQLite's online backup API (consistent even in WAL mode)."""
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    create_private_file(tmp)  # a copy of the log: owner-only like the log itself
    dest = sqlite3.connect(tmp)
    try:
        conn.backup(dest)
    finally:
        dest.close()
    tmp.replace(target)  # a half-written backup never carries the final name


def migrate(conn: sqlite3.Connection, db_path: Path | None,
            upto: int = SCHEMA_VERSION) -> list[Path]:
    """Apply pending migrations up to `upto`; returns the backups made.

    An existing database gets a backup before each migration; a brand-new (version 0) one has
    nothing to lose and gets none. Each migration commits atomically with its version bump.
    """
    version = current_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaError(f"database schema v{version} is newer than this software "
                          f"(v{SCHEMA_VERSION}); refusing to touch it")
    backups: list[Path] = []
    fresh = version == 0  # a brand-new file: nothing to lose, so no backups
    while version < upto:
        if not fresh and db_path is not None:
            target = backup_path(db_path, version)
            backup(conn, target)
            backups.append(target)
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version](conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        version += 1
    return backups
