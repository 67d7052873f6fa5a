"""NZ COVID Pass (`NZCP:/1/`) verification against trusted issuers and cached did:web documents."""
from __future__ import annotations

from datetime import datetime, timezone

from firmware.credentials.cose_sign1 import ALG_ES256, verify_signature
from firmware.credentials.nzcp.codec import (
    CLAIM_ISS,
    NzcpFormatError,
    base32_decode,
    claims_to_json,
    decode_claims,
    split_text,
)
from firmware.credentials.nzcp.trust import NzcpTrust
from firmware.credentials.staged import Deny, StageState, cose_stage, run_stages
from firmware.credentials.trust import TrustStore
from firmware.credentials.verdict import Verdict

__all__ = ["verify_nzcp"]


def verify_nzcp(text: str, trust: TrustStore, at: datetime) -> Verdict:
    """Verify one `NZCP:/1/...` text at time `at` (spec, Steps to verify a New Zealand COVID Pass)."""
    nzcp_trust = trust.nzcp if isinstance(trust, TrustStore) else None
    return run_stages("nzcp", lambda checks, state: _run(text, nzcp_trust, at, checks, state))


def _run(text: str, nzcp_trust: NzcpTrust | None, at: datetime, checks: dict[str, bool | None],
         state: StageState) -> None:
    checks["prefix"] = isinstance(text, str) and text[:6].upper() == "NZCP:/"
    if not checks["prefix"]:
        raise Deny("NZCP_PREFIX")
    try:
        _, body = split_text(text)
    except NzcpFormatError as exc:
        checks["prefix"] = False
        raise Deny(exc.code) from None
    try:
        raw = base32_decode(body)
    except NzcpFormatError as exc:
        checks["base45"] = False
        raise Deny(exc.code) from None
    checks["base45"] = True

    msg = cose_stage(raw, checks, "NZCP")
    kid = msg.protected.get(4)
    kid = kid.decode("utf-8", "replace") if isinstance(kid, bytes) else kid
    checks["cose"] = isinstance(kid, str) and bool(kid) and msg.protected.get(1) is not None
    if not checks["cose"]:
        raise Deny("NZCP_HEADER_INVALID")  # kid and alg MUST be in the protected header
    if msg.alg != ALG_ES256:
        raise Deny("NZCP_ALG_UNSUPPORTED")

    try:
        claims = decode_claims(msg.payload)
    except NzcpFormatError as exc:
        checks["cbor"] = False
        raise Deny(exc.code) from None
    checks["cbor"] = True
    iss = claims.get(CLAIM_ISS)
    state["extras"] = {"issuer": iss if isinstance(iss, str) else None, "kid": kid}

    # Trust the issuer before resolving its keys (spec, Issuer Identifier).
    if not isinstance(nzcp_trust, NzcpTrust) or not isinstance(iss, str) or (
        iss not in nzcp_trust.trusted_issuers
    ):
        checks["signature"] = False
        raise Deny("NZCP_ISSUER_UNTRUSTED")
    if iss not in nzcp_trust.documents:
        checks["signature"] = False
        raise Deny("NZCP_DID_UNAVAILABLE")
    ref = f"{iss}#{kid}"
    key = nzcp_trust.keys.get(ref)
    if key is None:
        checks["signature"] = False
        raise Deny("NZCP_KEY_INVALID" if ref in nzcp_trust.invalid_keys else "NZCP_KEY_NOT_FOUND")
    # High s allowed: the spec's own valid example has one; the pass is identified by its jti.
    checks["signature"] = verify_signature(msg, key, allow_high_s=True)
    if not checks["signature"]:
        raise Deny("NZCP_SIGNATURE_INVALID")

    try:
        payload = claims_to_json(claims)
    except NzcpFormatError as exc:
        checks["schema"] = False
        raise Deny(exc.code) from None
    checks["schema"] = True
    state["payload"], state["credential_id"] = payload, payload["jti"]

    now = (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp()
    checks["expiry"] = payload["nbf"] <= now < payload["exp"]
    if now < payload["nbf"]:
        raise Deny("NZCP_NOT_ACTIVE")
    if now >= payload["exp"]:
        raise Deny("NZCP_EXPIRED")
