"""Status code (`HG1:`) verification: the code's signature, then the subject's cached signed record."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from firmware.credentials.cose_sign1 import ALG_EDDSA, ALG_ES256, verify_signature
from firmware.credentials.es256 import NON_CANONICAL_DETAIL, is_high_s
from firmware.credentials.staged import Checks, Deny, StageState, cose_stage, run_stages
from firmware.credentials.status.code import (
    CODE_CONTENT_TYPE,
    StatusFormatError,
    content_type,
    decode_code_claims,
    split_code,
)
from firmware.credentials.status.records import StatusRecord
from firmware.credentials.status.trust import StatusTrust
from firmware.credentials.trust import TrustStore
from firmware.credentials.verdict import Verdict

__all__ = ["verify_status", "verify_member", "CLOCK_SKEW"]

# A code "issued" further in the future than this is refused (clock skew between server and kiosk).
CLOCK_SKEW = timedelta(minutes=5)


def verify_status(text: str, trust: TrustStore, at: datetime) -> Verdict:
    """Verify a status code, then decide from the subject's cached record (green and fresh only)."""
    status_trust = trust.status if isinstance(trust, TrustStore) else None
    return run_stages("status", lambda checks, state: _run(text, status_trust, at, checks, state))


def verify_member(issuer: str, subject: bytes, trust: TrustStore, at: datetime) -> Verdict:
    """The verdict of an enrolled member recognised by face (1:N "face pass", no code shown):
    the member's cached record decides exactly as it does for their status code."""
    status_trust = trust.status if isinstance(trust, TrustStore) else None
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)

    def stages(checks: Checks, state: StageState) -> None:
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


def _run(text: str, status_trust: StatusTrust | None, at: datetime, checks: Checks,
         state: StageState) -> None:
    checks["prefix"] = isinstance(text, str) and text[:4].upper() == "HG1:"
    try:
        raw = split_code(text)
    except StatusFormatError as exc:
        if exc.code != "STATUS_PREFIX":
            checks["base45"] = False
        raise Deny(exc.code) from None
    checks["base45"] = True

    msg = cose_stage(raw, checks, "STATUS")
    checks["cose"] = content_type(msg.protected) == CODE_CONTENT_TYPE
    if not checks["cose"]:
        raise Deny("STATUS_COSE_INVALID")  # e.g. a status record presented as a code
    if msg.alg not in (ALG_ES256, ALG_EDDSA):
        checks["cose"] = False
        raise Deny("STATUS_ALG_UNSUPPORTED")

    trusted = status_trust.keys.get(msg.kid or b"") if isinstance(status_trust, StatusTrust) else None
    if trusted is None or not isinstance(status_trust, StatusTrust):
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
            checks: Checks, state: StageState) -> None:
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
