"""Whole-log verifier: every hash, signature and chain link, naming the first broken link."""
from __future__ import annotations

import base64
import json
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware.protocol.decoded import Decoded
from firmware.protocol.event_codec import GENESIS_HASH, Event, check_event

CHUNK_ROWS = 2_000  # rows fetched per query, so a 100k-event log never sits in memory at once


@dataclass(frozen=True)
class VerifyReport:
    """Result of checking a log. `broken_seq`/`reason` name the first bad event when not ok."""

    ok: bool
    checked: int
    first_seq: int | None
    last_seq: int | None
    anchor_seq: int  # events up to here were compacted after upload; the chain starts after it
    broken_seq: int | None = None
    reason: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Decoded]:
        return asdict(self)

    def __str__(self) -> str:
        if self.ok:
            span = "empty" if self.first_seq is None else f"seq {self.first_seq}..{self.last_seq}"
            return (f"OK: {self.checked} events verified ({span}; "
                    f"compacted through seq {self.anchor_seq})")
        return f"BROKEN at seq {self.broken_seq}: {self.reason} ({self.detail})"


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    return {key: value for key, value in conn.execute("SELECT key, value FROM meta")}


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))


def row_to_event(device_id: str, row: tuple[Any, ...]) -> Event:  # Any: a sqlite3 row
    seq, ts, kind, body, prev_hash, digest, sig = row[:7]
    return Event(device_id=device_id, seq=seq, ts=ts, kind=kind, body=json.loads(body),
                 prev_hash=prev_hash, hash=digest, sig=sig)


def broken_tail(conn: sqlite3.Connection, device_id: str, public_key: Ed25519PublicKey,
                anchor_seq: int, anchor_hash: str) -> int | None:
    """The newest event's seq when it does not verify or does not link to the event before it
    (or to the anchor); None when it is sound or the log is empty. Reads two rows: cheap
    enough for every open, before the chain is extended from that event."""
    rows = conn.execute("SELECT seq, ts, kind, body, prev_hash, hash, sig FROM events "
                        "ORDER BY seq DESC LIMIT 2").fetchall()
    if not rows:
        return None
    newest = row_to_event(device_id, rows[0])
    expected_prev = (rows[1][5] if len(rows) == 2 and rows[1][0] == newest.seq - 1
                     else anchor_hash if newest.seq == anchor_seq + 1 else None)
    if check_event(newest, public_key) or (expected_prev is not None
                                           and newest.prev_hash != expected_prev):
        return newest.seq
    return None


def verify_connection(conn: sqlite3.Connection,
                      public_key: Ed25519PublicKey | None = None) -> VerifyReport:
    """Check the log in one read snapshot. Without `public_key` the key stored in the database
    is used, which proves integrity but not authorship (pass the device's key for that)."""
    conn.execute("BEGIN")  # one snapshot: appends running meanwhile do not disturb the walk
    try:
        meta = read_meta(conn)
        device_id = meta.get("device_id", "")
        anchor_seq = int(meta.get("anchor_seq", "0"))
        expected_prev = meta.get("anchor_hash", GENESIS_HASH)
        if public_key is None:
            try:
                public_key = public_key_from_b64(meta["public_key"])
            except (KeyError, ValueError) as exc:
                return VerifyReport(False, 0, None, None, anchor_seq, anchor_seq + 1,
                                    "EVENTLOG_NO_KEY", f"no usable public key in database: {exc}")
        expected_seq = anchor_seq + 1
        checked, first_seq, last_seq = 0, None, None
        while True:
            rows = conn.execute(
                "SELECT seq, ts, kind, body, prev_hash, hash, sig FROM events "
                "WHERE seq >= ? ORDER BY seq LIMIT ?", (expected_seq, CHUNK_ROWS)).fetchall()
            if not rows:
                break
            for row in rows:
                seq = row[0]
                first_seq = seq if first_seq is None else first_seq

                def broken(reason: str, detail: str, at: int = seq) -> VerifyReport:
                    return VerifyReport(False, checked, first_seq, last_seq, anchor_seq, at,
                                        reason, detail)

                if seq != expected_seq:
                    return broken("EVENT_SEQ_GAP", f"expected seq {expected_seq}, found {seq}",
                                  expected_seq)
                try:
                    event = row_to_event(device_id, row)
                except (ValueError, TypeError) as exc:
                    return broken("EVENT_BODY_UNREADABLE", str(exc))
                if event.prev_hash != expected_prev:
                    return broken("EVENT_CHAIN_BROKEN",
                                  "prev_hash does not match the previous event's hash")
                failure = check_event(event, public_key)
                if failure:
                    return broken(failure, "hash or signature does not match the content")
                expected_prev, expected_seq = event.hash, seq + 1
                checked, last_seq = checked + 1, seq
        return VerifyReport(True, checked, first_seq, last_seq, anchor_seq)
    finally:
        conn.execute("COMMIT")


def verify_file(path: Path, public_key: Ed25519PublicKey | None = None) -> VerifyReport:
    """Verify a log database file without opening it for writing."""
    if not path.is_file():
        raise FileNotFoundError(f"no event log at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=10)
    try:
        return verify_connection(conn, public_key)
    finally:
        conn.close()
