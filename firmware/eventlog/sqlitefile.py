"""SQLite setup for the event log: WAL, the synchronous level, a WAL reused in place, identity."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Literal

Durability = Literal["full", "normal"]
# The WAL is truncated back to this size after checkpoints (PRAGMA journal_size_limit), and
# grown to it once at open (see preallocate_wal). SQLite's automatic checkpoint at 1,000 pages
# (~4.1 MB of 4 KiB frames) keeps it inside this size in normal running.
WAL_SIZE_BYTES = 4 * 1024 * 1024
_ZEROS = bytes(256 * 1024)


def connect(path: Path, durability: Durability) -> sqlite3.Connection:
    """One connection in WAL mode with the given synchronous level (FULL for the kiosk)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    try:
        if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
            raise sqlite3.OperationalError("the database cannot use WAL mode here")
        conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_BYTES}")
    except BaseException:
        conn.close()
        raise
    return conn


def preallocate_wal(conn: sqlite3.Connection, db_path: Path) -> bool:
    """Grow the WAL file to WAL_SIZE_BYTES with written zeros, once, so that commits overwrite
    blocks that already exist instead of extending the file. Returns whether it did.

    Why: with synchronous=FULL every commit ends in fdatasync() of the WAL. While the WAL grows,
    each commit also changes the file size, so the file system must commit its metadata journal
    as well (a second flush); an overwrite in place needs only the data flush. SQLite deletes
    the WAL when the last connection closes, so without this every open would grow it again
    for its first ~500 appends. Safe by construction: the zeros go only past the current end of
    the file, under the write lock (no other connection can append frames meanwhile), and SQLite
    treats anything after the last valid frame as garbage (a frame counts only if its salt and
    running checksum match the WAL header), exactly as it treats stale frames after a restart.
    Best effort: a disk too full for it gets its space back and the log runs as before.
    """
    wal = Path(f"{db_path}-wal")
    conn.execute("BEGIN IMMEDIATE")  # the writer lock: nobody appends frames while we extend
    try:
        try:
            size = wal.stat().st_size
        except FileNotFoundError:
            return False
        if size >= WAL_SIZE_BYTES:
            return False
        fd = os.open(wal, os.O_WRONLY)  # never O_CREAT: the file is SQLite's
        try:
            try:
                offset = size
                while offset < WAL_SIZE_BYTES:
                    offset += os.pwrite(fd, _ZEROS[:WAL_SIZE_BYTES - offset], offset)
                os.fsync(fd)  # the blocks and the new size reach the disk now, once
            except OSError:
                os.ftruncate(fd, size)  # only our zeros go; SQLite's frames are below `size`
                return False
        finally:
            os.close(fd)
        return True
    finally:
        conn.execute("ROLLBACK")


def bind_identity(conn: sqlite3.Connection, device_id: str, public_key_b64: str) -> None:
    """The first open records the device identity; later opens must present the same one,
    or the chain would mix two signers."""
    meta = {key: value for key, value in conn.execute("SELECT key, value FROM meta")}
    if "device_id" not in meta:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)",
                         [("device_id", device_id), ("public_key", public_key_b64)])
        conn.execute("COMMIT")
    elif meta["device_id"] != device_id or meta.get("public_key") != public_key_b64:
        raise IdentityMismatch("this log belongs to another device identity")


class IdentityMismatch(Exception):
    """The log was started by another device identity (key or device id)."""


def number_new_chain_after(conn: sqlite3.Connection, seq: int) -> None:
    """Make an empty log's first event seq + 1 (with the genesis prev_hash): the same anchor
    that compaction leaves, with no hash before it."""
    if seq < 0:
        raise NewChainRefused("restart_after must not be negative")
    has_events = conn.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None
    anchored = conn.execute("SELECT 1 FROM meta WHERE key = 'anchor_seq'").fetchone() is not None
    if has_events or anchored:
        raise NewChainRefused("restart_after is only for a new, empty log")
    conn.execute("INSERT INTO meta(key, value) VALUES ('anchor_seq', ?)", (str(seq),))


class NewChainRefused(Exception):
    """`restart_after` was given for a log that already holds a chain (or a negative seq)."""
