"""Issue synthetic SMART Health Cards with a throwaway issuer key (demo, tests, benchmarks)."""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric import ec

from firmware.credentials.shc.codec import (
    b64url_encode,
    deflate_raw,
    jwk_from_public_key,
    jwk_thumbprint,
    jws_to_qr_texts,
)
from firmware.credentials.shc.trust import ShcTrust
from firmware.credentials.trust import TrustStore
from firmware.demo.issuers.cose import es256_sign
from firmware.protocol.decoded import Decoded

DEMO_ISSUER = "https://issuer.healthgate.invalid/shc"


@dataclass
class DemoIssuer:
    """A throwaway SHC issuer: its private key, its JWK and its iss URL."""

    key: ec.EllipticCurvePrivateKey
    iss: str = DEMO_ISSUER

    @property
    def jwk(self) -> dict[str, Decoded]:
        return jwk_from_public_key(self.key.public_key())

    def trust(self, crl_version: int | None = None) -> ShcTrust:
        """An ShcTrust that trusts exactly this issuer."""
        jwk = self.jwk
        if crl_version is not None:
            jwk["crlVersion"] = crl_version
        trust = ShcTrust()
        trust.add_jwks(self.iss, {"keys": [jwk]}, "Demo issuer")
        return trust


def new_issuer(iss: str = DEMO_ISSUER) -> DemoIssuer:
    """A fresh P-256 issuer key."""
    return DemoIssuer(ec.generate_private_key(ec.SECP256R1()), iss)


def card_claims(iss: str, nbf: float, *, exp: float | None = None, rid: str | None = None,
                doses: int = 1) -> dict[str, Decoded]:
    """JWT claims of a synthetic immunization card (fictitious patient)."""
    entries: list[dict[str, Decoded]] = [{
        "fullUrl": "resource:0",
        "resource": {"resourceType": "Patient", "name": [{"family": "Example", "given": ["Pat"]}],
                     "birthDate": "1970-01-01"},
    }]
    for dose in range(doses):
        entries.append({
            "fullUrl": f"resource:{dose + 1}",
            "resource": {"resourceType": "Immunization", "status": "completed",
                         "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx",
                                                     "code": "207"}]},
                         "patient": {"reference": "resource:0"},
                         "occurrenceDateTime": f"2021-0{1 + dose % 9}-01",
                         "lotNumber": f"{dose:07d}"},
        })
    vc: dict[str, Decoded] = {
        "type": ["https://smarthealth.cards#health-card"],
        "credentialSubject": {"fhirVersion": "4.0.1", "fhirBundle": {
            "resourceType": "Bundle", "type": "collection", "entry": entries}},
    }
    if rid is not None:
        vc["rid"] = rid
    claims: dict[str, Decoded] = {"iss": iss, "nbf": nbf, "vc": vc}
    if exp is not None:
        claims["exp"] = exp
    return claims


def sign_compact_jws(payload: dict[str, Decoded], key: ec.EllipticCurvePrivateKey) -> str:
    """Issue an SHC JWS: minified JSON, raw DEFLATE, ES256, kid = thumbprint (demo and tests)."""
    kid = jwk_thumbprint(jwk_from_public_key(key.public_key()))
    header = {"zip": "DEF", "alg": "ES256", "kid": kid}
    head = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
    body_json = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    body = b64url_encode(deflate_raw(body_json))
    signing_input = f"{head}.{body}".encode()
    return f"{head}.{body}.{b64url_encode(es256_sign(key, signing_input))}"


def derive_rid(secret_key: bytes, kid: str, user_id: str) -> str:
    """The spec's recommended revocation id: base64url(HMAC-SHA-256(secret || kid, user_id)[:8])."""
    mac = hmac.new(secret_key + kid.encode("utf-8"), user_id.encode("utf-8"), hashlib.sha256)
    return b64url_encode(mac.digest()[:8])


def issue_card(issuer: DemoIssuer, claims: dict[str, Decoded]) -> list[str]:
    """Sign the claims and return the `shc:/` QR texts (several when the JWS needs chunks)."""
    return jws_to_qr_texts(sign_compact_jws(claims, issuer.key))


def bench_samples() -> list[tuple[str, TrustStore, datetime]]:
    """One single-QR card and one large (assembled) card, with the trust that accepts them."""
    issuer = new_issuer()
    store = TrustStore(shc=issuer.trust())
    at = datetime(2025, 6, 1, tzinfo=timezone.utc)
    nbf = datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()
    small = issue_card(issuer, card_claims(issuer.iss, nbf, rid="c2FtcGxlMDE"))
    # Sixty doses make a JWS longer than one QR holds, so it travels as two chunks.
    large_claims = card_claims(issuer.iss, nbf, doses=60)
    large_texts = issue_card(issuer, large_claims)
    digits = "".join(t.split("/")[-1] for t in large_texts)
    return [(small[0], store, at), ("shc:/" + digits, store, at)]
