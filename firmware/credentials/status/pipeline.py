"""Status code (`HG1:`) verification: the code's signature, then the subject's cached signed record."""
from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from firmware.credentials.cose_sign1 import (
    ALG_EDDSA,
    ALG_ES256,
    CoseError,
    decode_sign1,
    verify_signature,
)
from firmware.credentials.es256 import NON_CANONICAL_DETAIL, is_high_s
from firmware.credentials.staged import Checks, Deny, run_stages
from firmware.credentials.status_code import (
    CODE_CONTENT_TYPE,
    StatusFormatError,
    content_type,
    decode_code_claims,
    issue_status_code,
    split_code,
)
from firmware.credentials.status_records import (
    StatusIssuerKey,
    StatusRecord,
    StatusRecordCache,
    sign_status_record,
)
from firmware.credentials.trust import TrustStore
from firmware.credentials.trust_json import read_trust_json, synced_at
from firmware.credentials.verdict import Verdict

log = logging.getLogger(__name__)

__all__ = ["StatusTrust", "verify_status", "verify_member", "load_trust", "bench_samples",
           "issue_status_code", "sign_status_record", "StatusRecord"]

ISSUERS_FILE = "status-issuers.json"
RECORDS_FILE = "status-records.sqlite"
RECORDS_SYNC_FILE = "status-records.json"
DEFAULT_MAX_CACHE_AGE = timedelta(hours=24)
# A code "issued" further in the future than this is refused (clock skew between server and kiosk).
CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class StatusTrust:
    """Keys trusted for status codes and records, the record cache and its maximum age."""

    keys: dict[bytes, StatusIssuerKey] = field(default_factory=dict)
    cache: StatusRecordCache | None = None
    max_cache_age: timedelta = DEFAULT_MAX_CACHE_AGE
    code_max_age: timedelta | None = None
    problems: list[str] = field(default_factory=list)  # what loading skipped, for the operator


def load_trust(directory: str | Path, pinned_keys: Any = None) -> StatusTrust | None:
    """Read `status-issuers.json` and open `status-records.sqlite`; None without the issuers file.

    status-issuers.json: {"max_cache_age_seconds": 86400, "code_max_age_seconds": null,
    "keys": [{"issuer": "...", "kid": "<base64url>", "public_key_pem": "-----BEGIN..."}]}
    """
    base = Path(directory)
    path = base / ISSUERS_FILE
    if not path.is_file():
        return None
    doc = read_trust_json(path, pinned_keys)  # raw JSON or a checked fleet envelope's content
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError(f"{ISSUERS_FILE}: expected an object with a keys list")
    keys: dict[bytes, StatusIssuerKey] = {}
    problems: list[str] = []
    for index, entry in enumerate(doc["keys"]):
        try:  # a bad key is skipped alone: its issuer's codes are denied, the others are not
            kid, key = _parse_key(entry, index)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # binascii.Error: ValueError
            problems.append(f"skipped: {exc}")
            continue
        keys[kid] = key
    trust = StatusTrust(keys=keys, problems=problems)
    trust.max_cache_age = timedelta(seconds=_seconds(doc, "max_cache_age_seconds", 86400))
    code_age = doc.get("code_max_age_seconds")
    trust.code_max_age = None if code_age is None else timedelta(seconds=_seconds(doc, "code_max_age_seconds", 0))
    trust.cache = StatusRecordCache(keys, base / RECORDS_FILE)
    trust.problems += _apply_synced_records(base, trust.cache, pinned_keys)
    return trust


def _apply_synced_records(base: Path, cache: StatusRecordCache, pinned_keys: Any) -> list[str]:
    """Fold the synced `status-records.json` (fleet item "status-records") into the cache.

    Its content is {"records": [base64 COSE record, ...], "complete": true|false}; every record
    is verified by the cache. The sync time is when the fleet last confirmed the item; a
    partial sync with a refused record keeps the old sync time (the cache then turns stale
    rather than vouch for records that a refused one may supersede). Returns the problems.
    """
    path = base / RECORDS_SYNC_FILE
    if not path.is_file():
        return []
    try:
        content = read_trust_json(path, pinned_keys)
    except ValueError as exc:  # also an envelope that fails its check
        log.warning("%s", exc)
        content = None
    records = content.get("records") if isinstance(content, dict) else None
    if not isinstance(content, dict) or not isinstance(records, list):
        # Keep the verified cache as it is (it turns stale by itself); never fail the trust load.
        log.warning("%s: expected an object with a records list; ignored", RECORDS_SYNC_FILE)
        return [f"{RECORDS_SYNC_FILE} ignored: unusable (the cache turns stale)"]
    when = synced_at(base, RECORDS_SYNC_FILE.removesuffix(".json"))
    if when is None or (cache.synced_at is not None and when <= cache.synced_at):
        return []  # nothing newer than what the cache already holds
    complete = content.get("complete") is True
    # An undecodable item counts as a refused record (b"" never verifies).
    blobs = [_b64(item) or b"" for item in records]
    report = cache.apply_sync(blobs, when, replace_all=complete, hold_time_on_refusal=True)
    if not report.refused:
        return []
    log.warning("status records: %d of %d refused", report.refused, len(records))
    held = "" if complete else "; the cache's sync time is kept, so it turns stale"
    return [f"{RECORDS_SYNC_FILE}: {report.refused} of {len(records)} records refused{held}"]


def _b64(item: Any) -> bytes | None:
    if not isinstance(item, str):
        return None
    try:
        return base64.b64decode(item, validate=True)
    except ValueError:
        return None


def _seconds(doc: dict[str, Any], name: str, default: int) -> int:
    value = doc.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{ISSUERS_FILE}: {name} must be a positive integer")
    return value


def _parse_key(entry: Any, index: int) -> tuple[bytes, StatusIssuerKey]:
    where = f"{ISSUERS_FILE}: keys[{index}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be an object")
    issuer, kid_text, pem = entry.get("issuer"), entry.get("kid"), entry.get("public_key_pem")
    if not isinstance(issuer, str) or not isinstance(kid_text, str) or not isinstance(pem, str):
        raise ValueError(f"{where} needs issuer, kid and public_key_pem strings")
    kid = base64.urlsafe_b64decode(kid_text + "=" * (-len(kid_text) % 4))
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return kid, StatusIssuerKey(issuer, key)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return kid, StatusIssuerKey(issuer, key)
    raise ValueError(f"{where}: only P-256 (ES256) and Ed25519 (EdDSA) keys are supported")


def verify_status(text: str, trust: TrustStore, at: datetime) -> Verdict:
    """Verify a status code, then decide from the subject's cached record (green and fresh only)."""
    status_trust = trust.status if isinstance(trust, TrustStore) else None
    return run_stages("status", lambda checks, state: _run(text, status_trust, at, checks, state))


def verify_member(issuer: str, subject: bytes, trust: TrustStore, at: datetime) -> Verdict:
    """The verdict of an enrolled member recognised by face (1:N "face pass", no code shown):
    the member's cached record decides exactly as it does for their status code."""
    status_trust = trust.status if isinstance(trust, TrustStore) else None
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)

    def stages(checks: Checks, state: dict[str, Any]) -> None:
        state["payload"], state["credential_id"] = {"issuer": issuer}, subject.hex()
        if not isinstance(status_trust, StatusTrust):
            raise Deny("STATUS_CACHE_STALE")
        cache = status_trust.cache
        if cache is None or cache.synced_at is None or at - cache.synced_at > status_trust.max_cache_age:
            checks["expiry"] = False
            raise Deny("STATUS_CACHE_STALE")
        record = cache.lookup(issuer, subject)
        if record is None:
            checks["revocation"] = False
            raise Deny("STATUS_NO_RECORD")
        # no code was shown, so no code can be superseded: only the record's own state counts
        _decide(record, record.codes_not_before or 0, at.timestamp(), checks, state)

    return run_stages("status", stages)


def _run(text: str, status_trust: Any, at: datetime, checks: dict[str, bool | None],
         state: dict[str, Any]) -> None:
    checks["prefix"] = isinstance(text, str) and text[:4].upper() == "HG1:"
    try:
        raw = split_code(text)
    except StatusFormatError as exc:
        if exc.code != "STATUS_PREFIX":
            checks["base45"] = False
        raise Deny(exc.code) from None
    checks["base45"] = True

    try:
        msg = decode_sign1(raw, require_tag=True)
    except CoseError as exc:
        checks["cose"] = False
        refused = exc.code == "refused"  # value sharing or a bound passed
        raise Deny("STATUS_CBOR_REFUSED" if refused else "STATUS_COSE_INVALID") from None
    checks["cose"] = content_type(msg.protected) == CODE_CONTENT_TYPE
    if not checks["cose"]:
        raise Deny("STATUS_COSE_INVALID")  # e.g. a status record presented as a code
    if msg.alg not in (ALG_ES256, ALG_EDDSA):
        checks["cose"] = False
        raise Deny("STATUS_ALG_UNSUPPORTED")

    keys = status_trust.keys if isinstance(status_trust, StatusTrust) else {}
    trusted = keys.get(msg.kid or b"")
    if trusted is None:
        checks["signature"] = False
        raise Deny("STATUS_KEY_UNKNOWN")
    # We are the only issuer and always sign with a low s, so the default (high s refused) holds.
    checks["signature"] = verify_signature(msg, trusted.public_key)
    if not checks["signature"]:
        if msg.alg == ALG_ES256 and is_high_s(msg.signature):
            state["extras"]["detail"] = NON_CANONICAL_DETAIL
        raise Deny("STATUS_SIGNATURE_INVALID")

    try:
        claims = decode_code_claims(msg.payload)
    except StatusFormatError as exc:
        checks["cbor"] = exc.code not in ("STATUS_PAYLOAD_INVALID", "STATUS_CBOR_REFUSED")
        checks["schema"] = False
        raise Deny(exc.code) from None
    checks["cbor"] = True
    state["credential_id"] = claims.subject.hex()
    state["payload"] = {"issuer": claims.issuer, "issued_at": claims.issued_at,
                        "version": claims.version}
    checks["schema"] = claims.issuer == trusted.issuer
    if not checks["schema"]:
        raise Deny("STATUS_ISSUER_MISMATCH")

    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    now = at.timestamp()
    if claims.issued_at > now + CLOCK_SKEW.total_seconds():
        checks["expiry"] = False
        raise Deny("STATUS_CODE_NOT_YET_VALID")
    if status_trust.code_max_age is not None and (
        now - claims.issued_at > status_trust.code_max_age.total_seconds()
    ):
        checks["expiry"] = False
        raise Deny("STATUS_CODE_EXPIRED")

    cache = status_trust.cache
    if cache is None or cache.synced_at is None or at - cache.synced_at > status_trust.max_cache_age:
        checks["expiry"] = False
        raise Deny("STATUS_CACHE_STALE")
    record = cache.lookup(claims.issuer, claims.subject)
    if record is None:
        checks["revocation"] = False
        raise Deny("STATUS_NO_RECORD")
    _decide(record, claims.issued_at, now, checks, state)


def _decide(record: StatusRecord, code_issued_at: int, now: float,
            checks: dict[str, bool | None], state: dict[str, Any]) -> None:
    """The record's verdict: superseded code, expired record, then the colour."""
    state["payload"].update({"colour": record.colour, "valid_until": record.valid_until,
                             "record_issued_at": record.issued_at})
    if record.face_template is not None:
        state["extras"].update({"face_template": record.face_template,
                                "face_key_id": record.face_key_id})
    checks["revocation"] = record.codes_not_before is None or code_issued_at >= record.codes_not_before
    if not checks["revocation"]:
        raise Deny("STATUS_CODE_REVOKED")
    checks["expiry"] = now < record.valid_until
    if not checks["expiry"]:
        raise Deny("STATUS_RECORD_EXPIRED")
    checks["rules"] = record.colour == "green"
    if record.colour == "amber":
        raise Deny("STATUS_AMBER")
    if record.colour != "green":
        raise Deny("STATUS_RED")


def bench_samples() -> list[tuple[str, TrustStore, datetime]]:
    """An ES256 and an EdDSA code, each with a fresh green record in an in-memory cache."""
    at = datetime(2025, 6, 1, tzinfo=timezone.utc)
    now = int(at.timestamp())
    samples = []
    for private_key in (ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()):
        kid = b"bench-" + (b"es" if isinstance(private_key, ec.EllipticCurvePrivateKey) else b"ed")
        keys = {kid: StatusIssuerKey("hg-bench", private_key.public_key())}
        cache = StatusRecordCache(keys)
        subject = bytes(range(16))
        record = StatusRecord("hg-bench", subject, "green", issued_at=now - 60, valid_until=now + 3600)
        cache.apply_sync([sign_status_record(record, private_key, kid=kid)], synced_at=at)
        text = issue_status_code(private_key, kid=kid, issuer="hg-bench", subject=subject,
                                 issued_at=now - 86400)
        samples.append((text, TrustStore(status=StatusTrust(keys=keys, cache=cache)), at))
    return samples
