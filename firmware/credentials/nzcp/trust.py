"""NZ COVID Pass trust: the trusted issuer DIDs and the assertion keys of their cached DID documents."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from firmware.credentials.shc.codec import public_key_from_jwk
from firmware.credentials.trust_json import read_trust_json
from firmware.protocol.decoded import Decoded
from firmware.protocol.envelope import PinnedKeys

__all__ = ["NzcpTrust", "load_trust", "did_web_url", "ISSUERS_FILE", "PRODUCTION_ISSUERS"]

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

    def add_did_document(self, doc: Decoded) -> None:
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


def _assertion_key(method: dict[str, Decoded]) -> ec.EllipticCurvePublicKey:
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


def load_trust(directory: str | Path, pinned_keys: PinnedKeys = None) -> NzcpTrust | None:
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
