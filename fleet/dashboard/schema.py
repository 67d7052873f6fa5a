"""Dashboard tables (migration 3) and their upkeep: per-device status and hourly decision counts.

Counts are kept up to date inside the ingest transaction, so pages never scan the events table:
with 10 million events a device list is one join over one row per device.
"""
from __future__ import annotations

import json
import logging
import secrets
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from firmware.protocol.decoded import Decoded
from firmware.protocol.event_codec import Event
from fleet.db import Tx

if TYPE_CHECKING:
    from fleet.storage import Store

SESSION_KEY_SETTING = "dashboard_session_key"
BACKFILL_CHUNK = 5000  # events read per step when an existing database is migrated
MAX_SHOWN_CHARS = 200  # any text kept for display is cut to this (a fault problem already is)

MIGRATION_3_SQL = [
    """CREATE TABLE device_status (
           device_id TEXT PRIMARY KEY REFERENCES devices(device_id),
           last_seen TEXT,
           last_event_ts TEXT,
           events BIGINT NOT NULL DEFAULT 0,
           min_seq BIGINT,
           max_seq BIGINT,
           parts TEXT NOT NULL DEFAULT '{}',
           firmware TEXT,
           firmware_seq BIGINT,
           trust_fetched_at TEXT)""",
    """CREATE TABLE decision_hours (
           device_id TEXT NOT NULL,
           hour TEXT NOT NULL,
           decision TEXT NOT NULL,
           reason TEXT NOT NULL,
           count BIGINT NOT NULL,
           PRIMARY KEY (device_id, hour, decision, reason))""",
    "CREATE INDEX decision_hours_hour ON decision_hours (hour)",
    "CREATE INDEX incidents_device ON incidents (device_id)",
    """CREATE TABLE operators (
           name TEXT PRIMARY KEY,
           password_hash TEXT NOT NULL,
           created_at TEXT NOT NULL)""",
    """CREATE TABLE trust_history (
           id {serial},
           name TEXT NOT NULL,
           version BIGINT NOT NULL,
           key_id TEXT NOT NULL,
           etag TEXT NOT NULL,
           published_at TEXT NOT NULL,
           published_by TEXT NOT NULL)""",
    "CREATE INDEX trust_history_name ON trust_history (name, version)",
    """CREATE TABLE settings (
           name TEXT PRIMARY KEY,
           value TEXT NOT NULL)""",
]


def migration_3_data(tx: Tx) -> None:
    """Fill the new tables from what an existing database already holds."""
    tx.execute("INSERT INTO settings (name, value) VALUES (?, ?)",
               (SESSION_KEY_SETTING, secrets.token_hex(32)))
    for name, version, etag, envelope, published_at in tx.execute(
            "SELECT name, version, etag, envelope, published_at FROM trust_items").fetchall():
        tx.execute("INSERT INTO trust_history (name, version, key_id, etag, published_at, "
                   "published_by) VALUES (?, ?, ?, ?, ?, ?)",
                   (name, version, envelope_key_id(envelope), etag, published_at,
                    "(before history)"))
    devices = [row[0] for row in tx.execute("SELECT device_id FROM devices").fetchall()]
    for device_id in devices:
        after = -1
        while True:
            rows = tx.execute("SELECT device_id, seq, ts, kind, body, prev_hash, hash, sig, "
                              "received_at FROM events WHERE device_id = ? AND seq > ? "
                              "ORDER BY seq LIMIT ?", (device_id, after, BACKFILL_CHUNK)).fetchall()
            if not rows:
                break
            for received_at in sorted({r[8] for r in rows}):
                batch = [Event(device_id=r[0], seq=int(r[1]), ts=r[2], kind=r[3],
                               body=json.loads(r[4]), prev_hash=r[5], hash=r[6], sig=r[7])
                         for r in rows if r[8] == received_at]
                update_aggregates(tx, device_id, batch, received_at)
            after = int(rows[-1][1])


def update_aggregates(tx: Tx, device_id: str, events: Iterable[Event], received_at: str) -> None:
    """Fold newly stored events into device_status and decision_hours (caller holds the
    device's lock: ingest runs this in its own transaction, after the rows are inserted)."""
    events = list(events)
    if not events:
        return
    row = tx.execute("SELECT last_seen, last_event_ts, events, min_seq, max_seq, parts, "
                     "firmware, firmware_seq FROM device_status WHERE device_id = ?",
                     (device_id,)).fetchone()
    last_seen, last_ts, count, min_seq, max_seq, parts_text, firmware, firmware_seq = (
        row if row is not None else (None, None, 0, None, None, "{}", None, None))
    parts: dict[str, Decoded] = json.loads(parts_text or "{}")
    hours: Counter[tuple[str, str, str]] = Counter()
    for event in events:
        count = int(count) + 1
        min_seq = event.seq if min_seq is None else min(int(min_seq), event.seq)
        max_seq = event.seq if max_seq is None else max(int(max_seq), event.seq)
        last_ts = event.ts if last_ts is None else max(str(last_ts), event.ts)
        body = event.body if isinstance(event.body, dict) else {}
        if event.kind == "decision":
            decision = str(body.get("decision", ""))[:16]
            reason = str(body.get("reason") or "")[:64]
            hours[(event.ts[:13], decision, reason)] += 1
        elif event.kind in ("fault", "recovered"):
            part = str(body.get("part", ""))[:32]
            known = parts.get(part)
            if known is None or int(known["seq"]) < event.seq:  # events arrive in any order
                parts[part] = {"seq": event.seq, "ts": event.ts, "fault": event.kind == "fault",
                               "problem": str(body.get("problem", ""))[:MAX_SHOWN_CHARS]}
        elif event.kind == "boot" and body.get("firmware") is not None:
            if firmware_seq is None or int(firmware_seq) < event.seq:
                firmware, firmware_seq = str(body["firmware"])[:64], event.seq
    last_seen = received_at if last_seen is None else max(str(last_seen), received_at)
    tx.execute("INSERT INTO device_status (device_id, last_seen, last_event_ts, events, min_seq, "
               "max_seq, parts, firmware, firmware_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (device_id) DO UPDATE SET last_seen = excluded.last_seen, "
               "last_event_ts = excluded.last_event_ts, events = excluded.events, "
               "min_seq = excluded.min_seq, max_seq = excluded.max_seq, parts = excluded.parts, "
               "firmware = excluded.firmware, firmware_seq = excluded.firmware_seq",
               (device_id, last_seen, last_ts, count, min_seq, max_seq,
                json.dumps(parts, sort_keys=True), firmware, firmware_seq))
    if hours:
        tx.executemany("INSERT INTO decision_hours (device_id, hour, decision, reason, count) "
                       "VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id, hour, decision, reason) "
                       "DO UPDATE SET count = decision_hours.count + excluded.count",
                       [(device_id, hour, decision, reason, n)
                        for (hour, decision, reason), n in sorted(hours.items())])


def note_trust_fetch(store: Store, device_id: str, at: str) -> None:
    """The device was just served trust data (200 or 304): its copy is current as of `at`.
    Called by the trust endpoint; a failure is logged, never the API's answer."""
    try:
        _note_trust_fetch(store, device_id, at)
    except Exception:
        logging.getLogger("healthgate.fleet").exception("noting a trust fetch")


def _note_trust_fetch(store: Store, device_id: str, at: str) -> None:
    with store.db.transaction() as tx:
        if tx.execute("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)).fetchone() is None:
            return
        tx.execute("INSERT INTO device_status (device_id, trust_fetched_at) VALUES (?, ?) "
                   "ON CONFLICT (device_id) DO UPDATE SET trust_fetched_at = excluded.trust_fetched_at",
                   (device_id, at))


def record_trust_history(tx: Tx, name: str, version: int, envelope: bytes, etag: str,
                         published_at: str, published_by: str) -> None:
    tx.execute("INSERT INTO trust_history (name, version, key_id, etag, published_at, "
               "published_by) VALUES (?, ?, ?, ?, ?, ?)",
               (name, version, envelope_key_id(envelope), etag, published_at, published_by[:64]))


def envelope_key_id(envelope: bytes | str) -> str:
    """The signing key id an envelope names, for the history; "" when it names none (the
    store serves whatever bytes were published, even ones no kiosk would accept)."""
    try:
        data = json.loads(envelope)
    except (ValueError, UnicodeDecodeError):
        return ""
    return str(data.get("key_id", ""))[:64] if isinstance(data, dict) else ""
