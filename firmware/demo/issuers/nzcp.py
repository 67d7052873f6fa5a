"""Issue NZ COVID Passes with a throwaway key (demo, tests, benchmarks): the inverse of the verifier."""
from __future__ import annotations

from datetime import datetime, timezone

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.credentials.nzcp.codec import (
    CLAIM_CTI,
    CLAIM_EXP,
    CLAIM_ISS,
    CLAIM_NBF,
    PASS_TYPE,
    PREFIX,
    SUPPORTED_VERSION,
    VC_CONTEXT,
    base32_encode,
    jti_to_cti,
)
from firmware.credentials.nzcp.trust import NzcpTrust
from firmware.credentials.shc.codec import jwk_from_public_key
from firmware.credentials.trust import TrustStore
from firmware.demo.issuers.cose import encode_sign1


def issue_pass(key: ec.EllipticCurvePrivateKey, *, iss: str, kid: str, nbf: int, exp: int,
               jti: str, subject: dict[str, str]) -> str:
    """Sign a PublicCovidPass and return its `NZCP:/1/...` text (tests, demo, benchmarks)."""
    vc = {"@context": [VC_CONTEXT, "https://nzcp.covid19.health.nz/contexts/v1"],
          "version": "1.0.0", "type": ["VerifiableCredential", PASS_TYPE],
          "credentialSubject": subject}
    claims = {CLAIM_ISS: iss, CLAIM_NBF: nbf, CLAIM_EXP: exp, "vc": vc, CLAIM_CTI: jti_to_cti(jti)}
    cose = encode_sign1(cbor2.dumps(claims), key, kid=kid.encode("utf-8"))
    return f"{PREFIX}{SUPPORTED_VERSION}/{base32_encode(cose)}"


def bench_samples() -> list[tuple[str, TrustStore, datetime]]:
    """A freshly signed pass with a throwaway issuer DID, for bench/verify.py."""
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
