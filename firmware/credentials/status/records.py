"""Signed status records (subject -> colour, validity, enrolled face template ref) and their local cache."""
from __future__ import annotations

import base64
import logging
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import cbor2

from firmware.credentials.cose_sign1 import (
    ALG_EDDSA,
    ALG_ES256,
    CoseError,
    PublicKey,
    decode_sign1,
    verify_signature,
)
from firmware.credentials.status.code import (
    MAX_SUBJECT_BYTES,
    MIN_SUBJECT_BYTES,
    RECORD_CONTENT_TYPE,
    StatusFormatError,
    content_type,
    decode_payload,
    int_time,
)
from firmware.fsutil import create_private_file
from firmware.protocol.decoded import Decoded

log = logging.getLogger(__name__)

COLOURS = ("green", "amber", "red")
RECORD_VERSION = 1
# Record payload map keys.
(R_VERSION, R_ISSUER, R_SUBJECT, R_COLOUR, R_ISSUED_AT, R_VALID_UNTIL,
 R_FACE_KEY_ID, R_FACE_TEMPLATE, R_CODES_NOT_BEFORE) = range(1, 10)
MAX_RECORD_BYTES = 16 * 1024  # an encrypted face template is ~1 KB; records are small
MAX_TEMPLATE_BYTES = 8 * 1024


@dataclass(frozen=True)
class StatusIssuerKey:
    """A public key trusted to sign status codes and records for one issuer name."""

    issuer: str
    public_key: PublicKey


@dataclass(frozen=True)
class StatusRecord:
    """The current status of one subject, as the fleet server signed it.

    `face_template` is an opaque encrypted blob (the vision module decrypts it with the key named
    by `face_key_id`); this module only carries it. `codes_not_before` revokes status codes
    issued before it (a reissued code replaces a lost one).
    """

    issuer: str
    subject: bytes
    colour: str
    issued_at: int
    valid_until: int
    face_key_id: str | None = None
    face_template: bytes | None = field(default=None, repr=False)
    codes_not_before: int | None = None


def encode_record(record: StatusRecord) -> bytes:
    """The CBOR payload of a record (what an issuer signs; firmware.demo.issuers.status)."""
    doc: dict[int, int | str | bytes | None] = {
        R_VERSION: RECORD_VERSION, R_ISSUER: record.issuer, R_SUBJECT: record.subject,
        R_COLOUR: record.colour, R_ISSUED_AT: record.issued_at, R_VALID_UNTIL: record.valid_until,
    }
    if record.face_template is not None:
        doc[R_FACE_KEY_ID], doc[R_FACE_TEMPLATE] = record.face_key_id, record.face_template
    if record.codes_not_before is not None:
        doc[R_CODES_NOT_BEFORE] = record.codes_not_before
    return cbor2.dumps(doc)


def _int_field(doc: Mapping[Decoded, Decoded], key: int, name: str, optional: bool = False) -> int | None:
    value = doc.get(key)
    if value is None and optional:
        return None
    return int_time(value, name, "STATUS_RECORD_INVALID")


def _decode_record(payload: bytes) -> StatusRecord:
    doc = decode_payload(payload, "STATUS_RECORD_INVALID", MAX_RECORD_BYTES)
    if not isinstance(doc, Mapping) or doc.get(R_VERSION) != RECORD_VERSION:
        raise StatusFormatError("STATUS_RECORD_INVALID", "not a version 1 record")
    issuer, subject, colour = doc.get(R_ISSUER), doc.get(R_SUBJECT), doc.get(R_COLOUR)
    if not isinstance(issuer, str) or not isinstance(subject, bytes):
        raise StatusFormatError("STATUS_RECORD_INVALID", "issuer/subject")
    if not MIN_SUBJECT_BYTES <= len(subject) <= MAX_SUBJECT_BYTES or colour not in COLOURS:
        raise StatusFormatError("STATUS_RECORD_INVALID", "subject/colour")
    key_id, template = doc.get(R_FACE_KEY_ID), doc.get(R_FACE_TEMPLATE)
    if template is not None and (not isinstance(template, bytes) or not isinstance(key_id, str)
                                 or len(template) > MAX_TEMPLATE_BYTES):
        raise StatusFormatError("STATUS_RECORD_INVALID", "face template")
    return StatusRecord(
        issuer=issuer, subject=subject, colour=colour,
        issued_at=_int_field(doc, R_ISSUED_AT, "issued_at") or 0,
        valid_until=_int_field(doc, R_VALID_UNTIL, "valid_until") or 0,
        face_key_id=key_id if template is not None else None,
        face_template=template,
        codes_not_before=_int_field(doc, R_CODES_NOT_BEFORE, "codes_not_before", optional=True),
    )


def verify_status_record(blob: bytes, keys: Mapping[bytes, StatusIssuerKey]) -> StatusRecord:
    """Check a record's signature by a trusted key of its own issuer; raises StatusFormatError."""
    if not isinstance(blob, bytes) or len(blob) > MAX_RECORD_BYTES:
        raise StatusFormatError("STATUS_RECORD_INVALID", "size")
    try:
        msg = decode_sign1(blob, require_tag=True)
    except CoseError as exc:
        code = "STATUS_CBOR_REFUSED" if exc.code == "refused" else "STATUS_RECORD_INVALID"
        raise StatusFormatError(code, "COSE") from None
    if content_type(msg.protected) != RECORD_CONTENT_TYPE or msg.alg not in (ALG_ES256, ALG_EDDSA):
        raise StatusFormatError("STATUS_RECORD_INVALID", "content type or alg")
    trusted = keys.get(msg.kid or b"")
    if trusted is None or not verify_signature(msg, trusted.public_key):
        raise StatusFormatError("STATUS_RECORD_SIGNATURE", "unknown key or bad signature")
    record = _decode_record(msg.payload)
    if record.issuer != trusted.issuer:
        raise StatusFormatError("STATUS_RECORD_SIGNATURE", "record of another issuer")
    return record


def records_content(blobs: Iterable[bytes], *, complete: bool = True) -> dict[str, list[str] | bool]:
    """The content the fleet server publishes as trust item "status-records"."""
    return {"records": [base64.b64encode(b).decode("ascii") for b in blobs], "complete": complete}


@dataclass
class SyncReport:
    """What one sync did: records stored, refused (bad signature/format) and kept (older)."""

    stored: int = 0
    refused: int = 0
    kept_newer: int = 0
    removed: int = 0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS status_records (
    issuer TEXT NOT NULL, subject BLOB NOT NULL, issued_at INTEGER NOT NULL, blob BLOB NOT NULL,
    PRIMARY KEY (issuer, subject));
CREATE TABLE IF NOT EXISTS status_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StatusRecordCache:
    """Verified status records, in memory for lookups and in SQLite (WAL) for persistence.

    Every record is verified on load and on update; an update is one transaction (all or
    nothing), and the in-memory view is swapped only after it commits. `path=None` keeps the
    cache in memory only (benchmarks, tests). `synced_at` is when the last sync was applied.
    """

    def __init__(self, keys: Mapping[bytes, StatusIssuerKey], path: str | Path | None = None) -> None:
        self._keys = dict(keys)
        self._path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._records: dict[tuple[str, bytes], tuple[StatusRecord, bytes]] = {}
        self.synced_at: datetime | None = None
        self.rejected_on_load = 0
        if self._path is not None and self._path.exists():
            self._load()

    def __len__(self) -> int:
        return len(self._records)

    def lookup(self, issuer: str, subject: bytes) -> StatusRecord | None:
        """The cached record of one subject, or None."""
        entry = self._records.get((issuer, subject))
        return entry[0] if entry else None

    def records(self) -> list[StatusRecord]:
        """Every cached record (e.g. to count the templates sealed with one key)."""
        return [entry[0] for entry in self._records.values()]

    def _connect(self) -> sqlite3.Connection:
        assert self._path is not None
        create_private_file(self._path)  # owner-only; SQLite gives -wal/-shm the same mode
        conn = sqlite3.connect(self._path, timeout=5.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)
        return conn

    def _load(self) -> None:
        assert self._path is not None
        try:
            with closing(self._connect()) as conn:
                rows = conn.execute("SELECT blob FROM status_records").fetchall()
                meta = dict(conn.execute("SELECT name, value FROM status_meta").fetchall())
        except sqlite3.DatabaseError as exc:
            # A damaged file must not stop the kiosk: set it aside and start empty (and so
            # stale) until the next sync rewrites it.
            aside = self._path.with_name(self._path.name + ".corrupt")
            log.error("status cache unreadable (%s); moved to %s", exc, aside.name)
            self._path.replace(aside)
            for suffix in ("-wal", "-shm"):  # journal files of the damaged database go too
                self._path.with_name(self._path.name + suffix).unlink(missing_ok=True)
            return
        records: dict[tuple[str, bytes], tuple[StatusRecord, bytes]] = {}
        for (blob,) in rows:
            try:
                record = verify_status_record(bytes(blob), self._keys)
            except StatusFormatError:
                self.rejected_on_load += 1  # tampered or signed by a key no longer trusted
                continue
            records[(record.issuer, record.subject)] = (record, bytes(blob))
        if self.rejected_on_load:
            log.warning("status cache: %d stored records failed verification", self.rejected_on_load)
        self._records = records
        try:
            self.synced_at = datetime.fromisoformat(meta["synced_at"]) if "synced_at" in meta else None
        except (TypeError, ValueError):
            self.synced_at = None  # unreadable sync time: the cache counts as stale

    def apply_sync(self, blobs: Iterable[bytes], synced_at: datetime, *,
                   replace_all: bool = False, hold_time_on_refusal: bool = False) -> SyncReport:
        """Apply signed records from the fleet server atomically.

        A record replaces a cached one only when it is at least as new (no rollback to an older
        status). With `replace_all`, the batch is the complete set: other records are removed.
        With `hold_time_on_refusal`, a partial batch with a refused record keeps the cache's
        sync time: the refused one may be a subject's newer status, so the held records must
        not look freshly confirmed (docs/credentials.md, "Bad trust data").
        """
        if synced_at.tzinfo is None:
            synced_at = synced_at.replace(tzinfo=timezone.utc)
        report = SyncReport()
        incoming: dict[tuple[str, bytes], tuple[StatusRecord, bytes]] = {}
        for blob in blobs:
            try:
                record = verify_status_record(blob, self._keys)
            except StatusFormatError:
                report.refused += 1
                continue
            key = (record.issuer, record.subject)
            if key in incoming and incoming[key][0].issued_at > record.issued_at:
                continue
            incoming[key] = (record, blob)
        with self._lock:
            merged = {} if replace_all else dict(self._records)
            for key, (record, blob) in incoming.items():
                current = self._records.get(key)
                if current is not None and current[0].issued_at > record.issued_at:
                    report.kept_newer += 1
                    merged[key] = current
                    continue
                merged[key] = (record, blob)
                report.stored += 1
            report.removed = len(set(self._records) - set(merged))
            if hold_time_on_refusal and report.refused and not replace_all:
                synced_at = self.synced_at or datetime.fromtimestamp(0, timezone.utc)
            if self._path is not None:
                self._persist(merged, synced_at)
            self._records, self.synced_at = merged, synced_at
        return report

    def _persist(self, records: dict[tuple[str, bytes], tuple[StatusRecord, bytes]],
                 synced_at: datetime) -> None:
        """Rewrite the table in one transaction: a crash leaves the old or the new set, never a mix."""
        with closing(self._connect()) as conn, conn:
            conn.execute("DELETE FROM status_records")
            conn.executemany(
                "INSERT INTO status_records (issuer, subject, issued_at, blob) VALUES (?, ?, ?, ?)",
                [(r.issuer, r.subject, r.issued_at, blob) for r, blob in records.values()],
            )
            conn.execute("INSERT OR REPLACE INTO status_meta (name, value) VALUES ('synced_at', ?)",
                         (synced_at.isoformat(),))
