"""Issue synthetic SMART Health Cards with a throwaway issuer key (demo, tests, benchmarks)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from firmware.credentials.shc_codec import jwk_from_public_key, jws_to_qr_texts, sign_compact_jws
from firmware.credentials.shc_trust import ShcTrust
from firmware.credentials.trust import TrustStore

DEMO_ISSUER = "https://issuer.healthgate.invalid/shc"


@dataclass
class DemoIssuer:
    """A throwaway SHC issuer: its private key, its JWK and its iss URL."""

    key: ec.EllipticCurvePrivateKey
    iss: str = DEMO_ISSUER

    @property
    def jwk(self) -> dict[str, Any]:
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
                doses: int = 1) -> dict[str, Any]:
    """JWT claims of a synthetic immunization card (fictitious patient)."""
    entries: list[dict[str, Any]] = [{
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
    vc: dict[str, Any] = {
        "type": ["https://smarthealth.cards#health-card"],
        "credentialSubject": {"fhirVersion": "4.0.1", "fhirBundle": {
            "resourceType": "Bundle", "type": "collection", "entry": entries}},
    }
    if rid is not None:
        vc["rid"] = rid
    claims: dict[str, Any] = {"iss": iss, "nbf": nbf, "vc": vc}
    if exp is not None:
        claims["exp"] = exp
    return claims


def issue_card(issuer: DemoIssuer, claims: dict[str, Any]) -> list[str]:
    """Sign the claims and return the `shc:/` QR texts (several when the JWS needs chunks)."""
    return jws_to_qr_texts(sign_compact_jws(claims, issuer.key))


def sample_cards() -> list[tuple[str, TrustStore, datetime]]:
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
