"""SMART Health Card (`shc:/`) verification: numeric QR -> JWS ES256 -> DEFLATE -> claims -> CRL."""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from firmware.credentials.es256 import canonical_signature, es256_verify
from firmware.credentials.shc.codec import (
    MAX_CLAIMS_DEPTH,
    MAX_CLAIMS_NODES,
    CompactJws,
    ShcFormatError,
    b64url_encode,
    inflate_raw,
    numeric_to_jws,
    parse_chunk,
    parse_compact_jws,
)
from firmware.credentials.shc.trust import ShcKey, ShcTrust
from firmware.credentials.staged import Deny, StageState, run_stages
from firmware.credentials.trust import TrustStore
from firmware.credentials.verdict import Verdict
from firmware.protocol import finite_json
from firmware.protocol.decoded import Decoded
from firmware.protocol.numericdate import NumericDateError, numeric_date

__all__ = ["verify_shc", "HEALTH_CARD_TYPE"]

HEALTH_CARD_TYPE = "https://smarthealth.cards#health-card"


def verify_shc(text: str, trust: TrustStore, at: datetime) -> Verdict:
    """Verify one `shc:/` text (a single QR or an already assembled card) at time `at`."""
    shc_trust = trust.shc if isinstance(trust, TrustStore) else None
    return run_stages("shc", lambda checks, state: _run(text, shc_trust, at, checks, state))


def _run(text: str, shc_trust: ShcTrust | None, at: datetime, checks: dict[str, bool | None],
         state: StageState) -> None:
    """The staged pipeline; records each stage in `checks` and raises Deny on the first failure."""
    checks["prefix"] = isinstance(text, str) and text[:5].lower() == "shc:/"
    if not checks["prefix"]:
        raise Deny("SHC_PREFIX")
    try:
        chunk = parse_chunk(text)
        if chunk.total > 1:  # one chunk of several: the kiosk assembles them (shc_chunks)
            checks["base45"] = False
            raise Deny("SHC_CHUNKS_INCOMPLETE")
        jws = numeric_to_jws(chunk.digits)
    except ShcFormatError as exc:
        checks["base45"] = False
        raise Deny(exc.code) from None
    checks["base45"] = True

    try:
        parsed = parse_compact_jws(jws)
    except ShcFormatError as exc:
        # Unparsed, the signature has no canonical form: the id is the hash of the JWS as read.
        state["credential_id"] = "jws-sha256:" + b64url_encode(hashlib.sha256(jws.encode()).digest())
        checks["cose"] = False
        raise Deny(exc.code) from None
    state["credential_id"] = _jws_id(parsed)
    header = parsed.header
    checks["cose"] = header.get("alg") == "ES256" and header.get("zip") == "DEF"
    if header.get("alg") != "ES256":
        raise Deny("SHC_ALG_UNSUPPORTED")
    if header.get("zip") != "DEF":
        raise Deny("SHC_ZIP_UNSUPPORTED")
    kid = header.get("kid")

    if not isinstance(shc_trust, ShcTrust):
        raise Deny("SHC_ISSUER_UNTRUSTED")
    # kid is the key's thumbprint: every candidate holds the same key, listed by several issuers.
    candidates: list[ShcKey] = shc_trust.keys_by_kid.get(kid, []) if isinstance(kid, str) else []
    if not candidates:
        # Only to name the reason precisely: read the (bounded) payload's iss without trusting it.
        try:
            iss = _decode_claims(parsed.payload_raw, checks, state).get("iss")
        except Deny:
            iss = None  # an unreadable payload under an unknown key: just untrusted
        known = isinstance(iss, str) and shc_trust.knows_issuer(iss)
        checks["signature"] = False
        raise Deny("SHC_KEY_UNKNOWN" if known else "SHC_ISSUER_UNTRUSTED")
    # Signature before content: an unverified payload is at most read to name a deny reason.
    # High s allowed: the spec's own examples 00 and 02 have one; the card's id is canonical.
    if not es256_verify(candidates[0].public_key, parsed.signing_input, parsed.signature,
                        allow_high_s=True):
        checks["signature"] = False
        raise Deny("SHC_SIGNATURE_INVALID")
    checks["signature"] = True

    claims = _decode_claims(parsed.payload_raw, checks, state)
    iss = claims["iss"]
    key = next((k for k in candidates if k.iss == iss), None)
    state["extras"] = {"issuer": iss, "issuer_name": shc_trust.issuer_names.get(iss, iss), "kid": kid}
    if key is None:  # signed by a key that another issuer published
        checks["signature"] = False
        raise Deny("SHC_ISSUER_MISMATCH")

    now = _epoch(at)
    nbf, exp = claims["nbf"], claims.get("exp")
    checks["expiry"] = nbf <= now and (exp is None or now < exp)
    if nbf > now:
        raise Deny("SHC_NOT_YET_VALID")
    if exp is not None and now >= exp:
        raise Deny("SHC_EXPIRED")

    rid = claims["vc"].get("rid")
    # The CRL of this issuer for this key: another issuer listing the same key has its own.
    crl = shc_trust.crl_for(key.iss, key.kid)
    if (key.iss, key.kid) in shc_trust.crl_problems:
        checks["revocation"] = False  # its CRL was malformed: revoked cards may be in it
        raise Deny("SHC_CRL_UNAVAILABLE")
    if key.crl_version is not None and (crl is None or crl.ctr < key.crl_version):
        checks["revocation"] = False  # the issuer publishes a CRL we do not hold: fail safe
        raise Deny("SHC_CRL_UNAVAILABLE")
    checks["revocation"] = not (crl is not None and rid is not None and crl.revokes(rid, nbf))
    if not checks["revocation"]:
        raise Deny("SHC_REVOKED")


def _jws_id(parsed: CompactJws) -> str:
    """`jws-sha256:` + base64url SHA-256 of the JWS with its signature in low-s form.

    (r, s) and (r, n - s) both verify, so hashing the JWS as scanned would give one card two ids
    (and a second pass through the anti-sharing check); a low-s card's id is its JWS hash.
    """
    signature = b64url_encode(canonical_signature(parsed.signature))
    jws = parsed.signing_input + b"." + signature.encode("ascii")
    return "jws-sha256:" + b64url_encode(hashlib.sha256(jws).digest())


def _decode_claims(payload_raw: bytes, checks: dict[str, bool | None],
                   state: StageState) -> dict[str, Decoded]:
    """Inflate (bounded) and parse the JWT claims, then check the SHC claim structure."""
    try:
        inflated = inflate_raw(payload_raw)
    except ShcFormatError as exc:
        checks["zlib"] = False
        raise Deny(exc.code) from None
    checks["zlib"] = True
    try:
        # NaN/Infinity/1e400 are not JSON numbers (RFC 8259) and would slip through time
        # comparisons.
        claims = finite_json.loads(inflated.decode("utf-8"))
    except ValueError:
        checks["cbor"] = False
        raise Deny("SHC_PAYLOAD_INVALID") from None
    checks["cbor"] = isinstance(claims, dict)
    if not isinstance(claims, dict):
        raise Deny("SHC_PAYLOAD_INVALID")
    if not finite_json.within_budget(claims, MAX_CLAIMS_NODES, MAX_CLAIMS_DEPTH):
        checks["cbor"] = False
        raise Deny("SHC_PAYLOAD_TOO_LARGE")
    state["payload"] = claims
    problem = _claims_problem(claims)
    checks["schema"] = problem is None
    if problem is not None:
        raise Deny("SHC_PAYLOAD_INVALID")
    rid = claims["vc"].get("rid")
    if rid is not None:
        state["credential_id"] = "rid:" + rid
    return claims


def _claims_problem(claims: dict[str, Decoded]) -> str | None:
    """What is wrong with the claims structure, or None (SHC spec, JWS payload)."""
    if not isinstance(claims.get("iss"), str):
        return "iss"
    for name in ("nbf", "exp"):
        value = claims.get(name)
        if name == "nbf" or value is not None:
            try:
                numeric_date(value, name)
            except NumericDateError:
                return name
    vc = claims.get("vc")
    if not isinstance(vc, dict) or not isinstance(vc.get("type"), list):
        return "vc"
    if HEALTH_CARD_TYPE not in vc["type"]:
        return "vc.type"
    subject = vc.get("credentialSubject")
    if not isinstance(subject, dict) or not isinstance(subject.get("fhirBundle"), dict):
        return "vc.credentialSubject"
    rid = vc.get("rid")
    if rid is not None and (not isinstance(rid, str) or not 0 < len(rid) <= 24 or "." in rid):
        return "vc.rid"
    return None


def _epoch(at: datetime) -> float:
    """Seconds since the epoch; a naive datetime is taken as UTC."""
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp()
