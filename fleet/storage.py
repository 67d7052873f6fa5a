"""The fleet store: devices, enrolment tokens, events, nonces, incidents and trust envelopes.

One class over `fleet.db` back ends; SQL is written once (portable subset, `?` placeholders).
Schema changes are numbered migrations recorded in `schema_migrations`.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterator, Union

from firmware.protocol.decoded import Decoded
from firmware.protocol.event_codec import Event
from firmware.protocol.events import canonical_json
from firmware.protocol.timestamps import rfc3339, utc_now
from fleet.dashboard.schema import MIGRATION_3_SQL, migration_3_data, record_trust_history
from fleet.db import DatabaseMissing, DbValue, Tx, open_database

# Each migration: (version, steps). A step is SQL (`{serial}` becomes the dialect's
# auto-increment key) or a function of the transaction (data that SQL alone cannot move).
Step = Union[str, Callable[[Tx], None]]
MIGRATIONS: list[tuple[int, list[Step]]] = [
    (1, [
        """CREATE TABLE devices (
               device_id TEXT PRIMARY KEY,
               public_key TEXT NOT NULL,
               registered_at TEXT NOT NULL)""",
        """CREATE TABLE enrolment_tokens (
               token_hash TEXT PRIMARY KEY,
               created_at BIGINT NOT NULL,
               expires_at BIGINT NOT NULL,
               used_at BIGINT,
               used_by TEXT)""",
        """CREATE TABLE events (
               device_id TEXT NOT NULL REFERENCES devices(device_id),
               seq BIGINT NOT NULL,
               ts TEXT NOT NULL,
               kind TEXT NOT NULL,
               body TEXT NOT NULL,
               prev_hash TEXT NOT NULL,
               hash TEXT NOT NULL,
               sig TEXT NOT NULL,
               received_at TEXT NOT NULL,
               PRIMARY KEY (device_id, seq))""",
        """CREATE TABLE nonces (
               device_id TEXT NOT NULL,
               nonce TEXT NOT NULL,
               expires_at BIGINT NOT NULL,
               PRIMARY KEY (device_id, nonce))""",
        "CREATE INDEX nonces_expiry ON nonces (expires_at)",
        """CREATE TABLE incidents (
               id {serial},
               device_id TEXT NOT NULL,
               seq BIGINT,
               reason TEXT NOT NULL,
               detail TEXT NOT NULL,
               at TEXT NOT NULL)""",
        """CREATE TABLE trust_items (
               name TEXT PRIMARY KEY,
               version BIGINT NOT NULL,
               etag TEXT NOT NULL,
               envelope TEXT NOT NULL,
               published_at TEXT NOT NULL)""",
    ]),
    # What `devices list` shows: when a device last made a signed request and what it said of
    # itself then (the X-Healthgate-Status header); a revoked device is refused from then on.
    (2, [
        "ALTER TABLE devices ADD COLUMN last_seen TEXT",
        "ALTER TABLE devices ADD COLUMN software TEXT",
        "ALTER TABLE devices ADD COLUMN trust_age_s BIGINT",
        "ALTER TABLE devices ADD COLUMN pending BIGINT",
        "ALTER TABLE devices ADD COLUMN revoked_at TEXT",
    ]),
    # the dashboard: per-device status, hourly decision counts, operators, publishing history
    (3, [*MIGRATION_3_SQL, migration_3_data]),
]
REVOKED_TOKEN = "(revoked)"  # used_by of a revoked token; no device id has parentheses
TOKEN_ID_CHARS = 12  # a token is listed by this much of its hash: the token itself is secret
MIN_TOKEN_ID_CHARS = 8  # the shortest id prefix `token revoke` accepts

SERIAL = {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
          "postgresql": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"}


def token_digest(token: str) -> str:
    """Tokens are stored hashed: a stolen database does not enrol devices."""
    return hashlib.sha256(token.encode()).hexdigest()


class _Refused(Exception):
    """Roll back a write half done (a registration, an accepted request); `outcome` is the
    answer to give."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


@dataclass(frozen=True)
class Device:
    device_id: str
    public_key: str  # base64 raw Ed25519
    registered_at: str
    event_count: int = 0
    max_seq: int | None = None
    last_seen: str | None = None
    software: str | None = None
    trust_age_s: int | None = None
    pending: int | None = None
    revoked_at: str | None = None


@dataclass(frozen=True)
class Token:
    token_id: str  # the first TOKEN_ID_CHARS of its hash
    created_at: int
    expires_at: int
    used_at: int | None
    used_by: str | None

    def state(self, now: int) -> str:
        if self.used_by == REVOKED_TOKEN:
            return "revoked"
        if self.used_at is not None:
            return f"used by {self.used_by}"
        return "expired" if self.expires_at < now else "unused"


@dataclass(frozen=True)
class TrustItem:
    name: str
    version: int
    etag: str
    envelope: bytes  # canonical JSON, served byte for byte


class Store:
    """All persistent state of the fleet server."""

    def __init__(self, url: str, create: bool = True) -> None:
        """Open (with `create`, create and migrate) the store at `url`. Without `create`, as
        the admin commands open it, a database that does not exist or holds no fleet schema
        raises DatabaseMissing: an empty new database would only hide a wrong --db."""
        self.db = open_database(url, create=create)
        self.dialect = self.db.dialect
        self.description = self.db.description
        try:
            if not create and not self._has_schema():
                raise DatabaseMissing(self.db.description)
            self._migrate()
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    def transaction(self) -> AbstractContextManager[Tx]:
        return self.db.transaction()

    # -- schema -------------------------------------------------------------------------------
    def _has_schema(self) -> bool:
        query = ("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
                 if self.dialect == "sqlite" else
                 "SELECT 1 FROM information_schema.tables WHERE table_name = 'schema_migrations' "
                 "AND table_schema = current_schema()")
        with self.db.transaction(readonly=True) as tx:
            return tx.execute(query).fetchone() is not None

    def _migrate(self) -> None:
        with self.db.transaction() as tx:
            if tx.dialect == "postgresql":
                # Two servers starting together must not both migrate.
                tx.execute("SELECT pg_advisory_xact_lock(72616)")
            tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                       "(version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)")
            done = {row[0] for row in tx.execute("SELECT version FROM schema_migrations")}
            for version, statements in MIGRATIONS:
                if version in done:
                    continue
                for statement in statements:
                    if callable(statement):
                        statement(tx)
                    else:
                        tx.execute(statement.replace("{serial}", SERIAL[tx.dialect]))
                tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                           (version, rfc3339(utc_now())))

    def schema_version(self) -> int:
        with self.db.transaction(readonly=True) as tx:
            row = tx.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    # -- enrolment ----------------------------------------------------------------------------
    def add_token(self, token: str, expires_at: datetime) -> None:
        now = utc_now()
        with self.db.transaction() as tx:
            tx.execute("INSERT INTO enrolment_tokens (token_hash, created_at, expires_at) "
                       "VALUES (?, ?, ?)",
                       (token_digest(token), int(now.timestamp()), int(expires_at.timestamp())))

    def register(self, token: str, device_id: str, public_key_b64: str, now: datetime) -> str:
        """Consume a one-time token and register the device. Returns "created", "exists"
        (same device and same key again: idempotent retry), "bad_token" or "conflict"."""
        try:
            with self.db.transaction() as tx:
                return self._register(tx, token_digest(token), device_id, public_key_b64, now)
        except _Refused as refused:  # raised after a write: the transaction rolled back
            return refused.outcome

    @staticmethod
    def _register(tx: Tx, digest: str, device_id: str, public_key_b64: str,
                  now: datetime) -> str:
        existing = tx.execute("SELECT public_key FROM devices WHERE device_id = ?",
                              (device_id,)).fetchone()
        row = tx.execute("SELECT expires_at, used_at, used_by FROM enrolment_tokens "
                         "WHERE token_hash = ?", (digest,)).fetchone()
        if row is not None and row[1] is not None and row[2] == device_id \
                and existing is not None and existing[0] == public_key_b64:
            return "exists"  # a retried registration whose answer was lost on the way
        if row is None or row[1] is not None or int(row[0]) < int(now.timestamp()):
            return "bad_token"
        if existing is not None:
            # The token is not burned: the technician can retry with the right device id.
            return "exists" if existing[0] == public_key_b64 else "conflict"
        inserted = tx.execute("INSERT INTO devices (device_id, public_key, registered_at) "
                              "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                              (device_id, public_key_b64, rfc3339(now))).rowcount
        if inserted != 1:
            raise _Refused("conflict")  # a concurrent registration of this id got there first
        # Conditional, so two concurrent registrations can never both spend one token.
        spent = tx.execute("UPDATE enrolment_tokens SET used_at = ?, used_by = ? "
                           "WHERE token_hash = ? AND used_at IS NULL",
                           (int(now.timestamp()), device_id, digest)).rowcount
        if spent != 1:
            raise _Refused("bad_token")
        return "created"

    def device_key(self, device_id: str) -> str | None:
        """The device's public key; None for an unknown or a revoked device (refused alike)."""
        with self.db.transaction(readonly=True) as tx:
            row = tx.execute("SELECT public_key FROM devices WHERE device_id = ? "
                             "AND revoked_at IS NULL", (device_id,)).fetchone()
        return None if row is None else str(row[0])

    def devices(self) -> list[Device]:
        """Every device; its event count and highest seq come from the dashboard's per-device
        counts (device_status, kept by ingest in the same transaction as the events, and
        filled from the events by migration 3), not from a scan of all events."""
        with self.db.transaction(readonly=True) as tx:
            rows = tx.execute(
                "SELECT d.device_id, d.public_key, d.registered_at, COALESCE(s.events, 0), "
                "s.max_seq, d.last_seen, d.software, d.trust_age_s, d.pending, d.revoked_at "
                "FROM devices d LEFT JOIN device_status s ON s.device_id = d.device_id "
                "ORDER BY d.device_id"
            ).fetchall()
        return [Device(r[0], r[1], r[2], int(r[3]), None if r[4] is None else int(r[4]),
                       r[5], r[6], None if r[7] is None else int(r[7]),
                       None if r[8] is None else int(r[8]), r[9])
                for r in rows]

    def revoke_device(self, device_id: str, now: datetime) -> bool:
        """Refuse every later request of the device (its events stay); False when unknown."""
        with self.db.transaction() as tx:
            known = tx.execute("SELECT revoked_at FROM devices WHERE device_id = ?",
                               (device_id,)).fetchone()
            if known is None:
                return False
            if known[0] is None:
                tx.execute("UPDATE devices SET revoked_at = ? WHERE device_id = ?",
                           (rfc3339(now), device_id))
            return True

    def tokens(self, newest_first: bool = False, limit: int | None = None) -> list[Token]:
        """Enrolment tokens by creation (`token list`; the dashboard: newest first, a page)."""
        order = "created_at DESC, token_hash DESC" if newest_first else "created_at, token_hash"
        with self.db.transaction(readonly=True) as tx:
            rows = tx.execute("SELECT token_hash, created_at, expires_at, used_at, used_by "
                              f"FROM enrolment_tokens ORDER BY {order}"
                              + ("" if limit is None else f" LIMIT {int(limit)}")).fetchall()
        return [Token(r[0][:TOKEN_ID_CHARS], int(r[1]), int(r[2]),
                      None if r[3] is None else int(r[3]), r[4]) for r in rows]

    def revoke_token(self, token_or_id: str, now: datetime) -> str:
        """Revoke an unused token given as the token or as its listed id. Returns "revoked",
        "unknown", "ambiguous" (an id prefix matching several) or "used"."""
        with self.db.transaction() as tx:
            digest = token_digest(token_or_id)
            rows = tx.execute("SELECT token_hash, used_at FROM enrolment_tokens "
                              "WHERE token_hash = ?", (digest,)).fetchall()
            if not rows and len(token_or_id) >= MIN_TOKEN_ID_CHARS \
                    and all(c in "0123456789abcdef" for c in token_or_id):
                rows = tx.execute("SELECT token_hash, used_at FROM enrolment_tokens "
                                  "WHERE token_hash LIKE ?", (token_or_id + "%",)).fetchall()
            if not rows:
                return "unknown"
            if len(rows) > 1:
                return "ambiguous"
            if rows[0][1] is not None:
                return "used"
            tx.execute("UPDATE enrolment_tokens SET used_at = ?, used_by = ? "
                       "WHERE token_hash = ?", (int(now.timestamp()), REVOKED_TOKEN, rows[0][0]))
            return "revoked"

    # -- replay protection --------------------------------------------------------------------
    def use_nonce(self, device_id: str, nonce: str, expires_at: int, now: int,
                  seen_at: datetime | None = None, status: dict[str, Decoded] | None = None) -> bool:
        """Remember a request nonce until `expires_at`; False when it was already used.

        With `seen_at` the same transaction records the accepted request on the device row:
        last seen then, and what the device said of itself (`status` keys `software`,
        `trust_age_s`, `pending`; a missing one keeps the previous value), as `devices list`
        shows it. A device revoked meanwhile is refused (False) and its nonce not kept."""
        try:
            with self.db.transaction() as tx:
                tx.execute("DELETE FROM nonces WHERE expires_at < ?", (now,))
                cursor = tx.execute("INSERT INTO nonces (device_id, nonce, expires_at) VALUES "
                                    "(?, ?, ?) ON CONFLICT DO NOTHING",
                                    (device_id, nonce, expires_at))
                if cursor.rowcount != 1:
                    return False
                if seen_at is not None:
                    status = status or {}
                    touched = tx.execute(
                        "UPDATE devices SET last_seen = ?, software = COALESCE(?, software), "
                        "trust_age_s = COALESCE(?, trust_age_s), pending = COALESCE(?, pending) "
                        "WHERE device_id = ? AND revoked_at IS NULL",
                        (rfc3339(seen_at), status.get("software"), status.get("trust_age_s"),
                         status.get("pending"), device_id)).rowcount
                    if touched != 1:
                        raise _Refused("revoked")
                return True
        except _Refused:  # rolled back: the nonce is not kept either
            return False

    def nonce_used(self, device_id: str, nonce: str, now: int) -> bool:
        """Read-only: was this nonce burnt and is it still remembered? (checked before a body
        is read; `use_nonce` stays the authority)."""
        with self.db.transaction(readonly=True) as tx:
            row = tx.execute("SELECT 1 FROM nonces WHERE device_id = ? AND nonce = ? "
                             "AND expires_at >= ?", (device_id, nonce, now)).fetchone()
        return row is not None

    # -- events -------------------------------------------------------------------------------
    def events(self, device_id: str) -> list[Event]:
        """Every stored event of a device, by sequence number."""
        with self.db.transaction(readonly=True) as tx:
            rows = tx.execute("SELECT device_id, seq, ts, kind, body, prev_hash, hash, sig "
                              "FROM events WHERE device_id = ? ORDER BY seq",
                              (device_id,)).fetchall()
        return [row_to_event(r) for r in rows]

    def incidents(self, device_id: str | None = None) -> list[dict[str, Decoded]]:
        sql = "SELECT device_id, seq, reason, detail, at FROM incidents"
        params: tuple[DbValue, ...] = ()
        if device_id is not None:
            sql, params = sql + " WHERE device_id = ?", (device_id,)
        with self.db.transaction(readonly=True) as tx:
            rows = tx.execute(sql + " ORDER BY id", params).fetchall()
        return [{"device_id": r[0], "seq": r[1], "reason": r[2], "detail": r[3], "at": r[4]}
                for r in rows]

    # -- trust data ---------------------------------------------------------------------------
    def put_trust(self, name: str, version: int, envelope: bytes, now: datetime,
                  published_by: str = "") -> TrustItem:
        """Store a signed envelope. A version that is not newer than the stored one is refused
        (ValueError), so two concurrent publishes cannot both win. Each publish is recorded in
        trust_history (who, when, which key) for the dashboard."""
        etag = '"' + hashlib.sha256(envelope).hexdigest()[:32] + '"'
        with self.db.transaction() as tx:
            stored = tx.execute(
                "INSERT INTO trust_items (name, version, etag, envelope, published_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "version = excluded.version, etag = excluded.etag, "
                "envelope = excluded.envelope, published_at = excluded.published_at "
                "WHERE trust_items.version < excluded.version",
                (name, version, etag, envelope.decode(), rfc3339(now))).rowcount
            if stored == 1:
                record_trust_history(tx, name, version, envelope, etag, rfc3339(now),
                                     published_by)
        if stored != 1:
            raise ValueError(f"{name}: version {version} is not newer than the published one")
        return TrustItem(name, version, etag, envelope)

    def trust(self, name: str) -> TrustItem | None:
        with self.db.transaction(readonly=True) as tx:
            row = tx.execute("SELECT name, version, etag, envelope FROM trust_items "
                             "WHERE name = ?", (name,)).fetchone()
        return None if row is None else TrustItem(row[0], int(row[1]), row[2], row[3].encode())

    def trust_items(self) -> Iterator[TrustItem]:
        with self.db.transaction(readonly=True) as tx:
            rows = tx.execute("SELECT name, version, etag, envelope FROM trust_items "
                              "ORDER BY name").fetchall()
        return iter([TrustItem(r[0], int(r[1]), r[2], r[3].encode()) for r in rows])


def row_to_event(row: DbValue) -> Event:
    return Event(device_id=row[0], seq=int(row[1]), ts=row[2], kind=row[3],
                 body=json.loads(row[4]), prev_hash=row[5], hash=row[6], sig=row[7])


def event_row(event: Event, received_at: str) -> tuple[DbValue, ...]:
    return (event.device_id, event.seq, event.ts, event.kind, canonical_json(event.body).decode(),
            event.prev_hash, event.hash, event.sig, received_at)


def record_incident(tx: Tx, device_id: str, seq: int | None, reason: str, detail: str,
                    at: str) -> None:
    tx.execute("INSERT INTO incidents (device_id, seq, reason, detail, at) VALUES (?, ?, ?, ?, ?)",
               (device_id, seq, reason, detail, at))
