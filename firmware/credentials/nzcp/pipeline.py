"""NZ COVID Pass (`NZCP:/1/`) verification against trusted issuers and cached did:web documents."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from firmware.credentials.cose_sign1 import ALG_ES256, CoseError, decode_sign1, verify_signature
from firmware.credentials.nzcp_codec import (
    CLAIM_ISS,
    NzcpFormatError,
    base32_decode,
    claims_to_json,
    decode_claims,
    split_text,
)
from firmware.credentials.shc_codec import public_key_from_jwk
from firmware.credentials.staged import Deny, run_stages
from firmware.credentials.trust import TrustStore
from firmware.credentials.trust_json import read_trust_json
from firmware.credentials.verdict import Verdict

__all__ = ["NzcpTrust", "verify_nzcp", "load_trust", "did_web_url", "bench_samples"]

log = logging.getLogger(__name__)

ISSUERS_FILE = "nzcp-issuers.json"
# The production trusted issuer named by the NZCP specification.
PRODUCTION_ISSUERS = ("did:web:nzcp.identity.health.nz",)
# JWK members that RFC 7518 classes as private: a DID document must never publish them.
_PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@dataclass
class NzcpTrust:
    """Trusted issuer DIDs and their cached DID documents' assertion keys.

    `keys` maps an absolute key reference (`did:web:...#key-1`) to its P-256 key; `invalid_keys`
    holds references that are authorised but whose JWK was refused, to report them precisely.
    """

    trusted_issuers: set[str] = field(default_factory=set)
    documents: set[str] = field(default_factory=set)
    keys: dict[str, ec.EllipticCurvePublicKey] = field(default_factory=dict)
    invalid_keys: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    def add_did_document(self, doc: Any) -> None:
        """Index the assertionMethod keys of one did:web document (spec, DID Document)."""
        if not isinstance(doc, dict) or not str(doc.get("id", "")).startswith("did:web:"):
            self.problems.append("DID document without a did:web id")
            return
        did = doc["id"]
        asserted = doc.get("assertionMethod")
        asserted = set(a for a in asserted if isinstance(a, str)) if isinstance(asserted, list) else set()
        self.documents.add(did)
        methods = doc.get("verificationMethod")
        for method in methods if isinstance(methods, list) else []:
            ref = method.get("id") if isinstance(method, dict) else None
            if not isinstance(ref, str) or ref not in asserted:
                continue
            if not ref.startswith(did + "#"):
                continue  # a document may only vouch for its own keys
            try:
                self.keys[ref] = _assertion_key(method)
            except ValueError as exc:
                self.invalid_keys.add(ref)
                self.problems.append(f"{ref}: {exc}")


def _assertion_key(method: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    if method.get("type") != "JsonWebKey2020":
        raise ValueError("verification method is not JsonWebKey2020")
    jwk = method.get("publicKeyJwk")
    if not isinstance(jwk, dict) or _PRIVATE_JWK_MEMBERS & set(jwk):
        raise ValueError("publicKeyJwk missing or carries private members")
    return public_key_from_jwk(jwk)


def did_web_url(did: str) -> str:
    """Where a did:web document lives (for the sync client; never fetched at scan time)."""
    if not did.startswith("did:web:"):
        raise ValueError("not a did:web DID")
    parts = [p.replace("%3A", ":") for p in did[len("did:web:"):].split(":")]
    if len(parts) == 1:
        return f"https://{parts[0]}/.well-known/did.json"
    return "https://" + "/".join(parts) + "/did.json"


def load_trust(directory: str | Path, pinned_keys: Any = None) -> NzcpTrust | None:
    """Read `nzcp-issuers.json`: {"trusted_issuers": [did, ...], "did_documents": [doc, ...]}."""
    path = Path(directory) / ISSUERS_FILE
    if not path.is_file():
        return None
    doc = read_trust_json(path, pinned_keys)  # raw JSON or a checked fleet envelope's content
    if not isinstance(doc, dict):
        raise ValueError(f"{ISSUERS_FILE}: expected an object")
    issuers, documents = doc.get("trusted_issuers"), doc.get("did_documents")
    if not isinstance(issuers, list):
        raise ValueError(f"{ISSUERS_FILE}: trusted_issuers must be a list of DIDs")
    if not isinstance(documents, list):
        raise ValueError(f"{ISSUERS_FILE}: did_documents must be a list")
    # An entry that is not a DID names no issuer: skipped (trusting fewer), the others kept.
    trust = NzcpTrust(trusted_issuers={i for i in issuers if isinstance(i, str)})
    if len(trust.trusted_issuers) < len(issuers):
        trust.problems.append("trusted_issuers entries that are not strings were skipped")
    for document in documents:
        trust.add_did_document(document)
    for problem in trust.problems:
        log.warning("NZCP trust: %s", problem)
    return trust


def verify_nzcp(text: str, trust: TrustStore, at: datetime) -> Verdict:
    """Verify one `NZCP:/1/...` text at time `at` (spec, Steps to verify a New Zealand COVID Pass)."""
    nzcp_trust = trust.nzcp if isinstance(trust, TrustStore) else None
    return run_stages("nzcp", lambda checks, state: _run(text, nzcp_trust, at, checks, state))


def _run(text: str, nzcp_trust: Any, at: datetime, checks: dict[str, bool | None],
         state: dict[str, Any]) -> None:
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

    try:
        msg = decode_sign1(raw, require_tag=True)
    except CoseError as exc:
        checks["cose"] = False
        raise Deny("NZCP_CBOR_REFUSED" if exc.code == "refused" else "NZCP_COSE_INVALID") from None
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


def bench_samples() -> list[tuple[str, TrustStore, datetime]]:
    """A freshly signed pass with a throwaway issuer DID, for bench/verify.py."""
    from firmware.credentials.nzcp_codec import issue_pass
    from firmware.credentials.shc_codec import jwk_from_public_key

    key = ec.generate_private_key(ec.SECP256R1())
    did = "did:web:issuer.healthgate.invalid"
    jwk = {k: v for k, v in jwk_from_public_key(key.public_key()).items() if k in ("kty", "crv", "x", "y")}
    trust = NzcpTrust(trusted_issuers={did})
    trust.add_did_document({
        "id": did, "assertionMethod": [f"{did}#key-1"],
        "verificationMethod": [{"id": f"{did}#key-1", "controller": did,
                                "type": "JsonWebKey2020", "publicKeyJwk": jwk}],
    })
    at = datetime(2025, 6, 1, tzinfo=timezone.utc)
    text = issue_pass(key, iss=did, kid="key-1", nbf=int(at.timestamp()) - 86400,
                      exp=int(at.timestamp()) + 86400 * 365,
                      jti="urn:uuid:7d1a3c52-3f0e-4b8e-9a56-2f1c7d9e0b11",
                      subject={"givenName": "Pat", "familyName": "Example", "dob": "1970-01-01"})
    return [(text, TrustStore(nzcp=trust), at)]
