"""Sign status codes and status records (demo, tests, benchmarks): the inverse of the verifier."""
from __future__ import annotations

from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from firmware.credentials.base45 import b45encode
from firmware.credentials.status.code import (
    CODE_CONTENT_TYPE,
    CONTENT_TYPE_HEADER,
    PREFIX,
    RECORD_CONTENT_TYPE,
    StatusCodeClaims,
    encode_code_claims,
)
from firmware.credentials.status.records import (
    COLOURS,
    StatusIssuerKey,
    StatusRecord,
    StatusRecordCache,
    encode_record,
)
from firmware.credentials.status.trust import StatusTrust
from firmware.credentials.trust import TrustStore
from firmware.demo.issuers.cose import PrivateKey, encode_sign1


def issue_status_code(key: PrivateKey, *, kid: bytes, issuer: str, subject: bytes,
                      issued_at: int) -> str:
    """Sign a status code (fleet server, demo, tests): ES256 for a P-256 key, EdDSA for Ed25519."""
    payload = encode_code_claims(StatusCodeClaims(issuer, subject, issued_at))
    cose = encode_sign1(payload, key, kid=kid,
                        extra_protected={CONTENT_TYPE_HEADER: CODE_CONTENT_TYPE})
    return PREFIX + b45encode(cose)


def sign_status_record(record: StatusRecord, key: PrivateKey, *, kid: bytes) -> bytes:
    """Sign a record for distribution by sync (fleet server, demo, tests)."""
    if record.colour not in COLOURS:
        raise ValueError(f"colour must be one of {COLOURS}")
    return encode_sign1(encode_record(record), key, kid=kid,
                        extra_protected={CONTENT_TYPE_HEADER: RECORD_CONTENT_TYPE})


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
