"""ES256 in the raw 64-byte r||s form that COSE and JWS both use (RFC 7518 section 3.4)."""
from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

SIGNATURE_BYTES = 64


def es256_sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """Sign `data` with a P-256 key; the signature is r||s, 32 big-endian bytes each."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def es256_verify(key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> bool:
    """True when `signature` (r||s) is valid for `data` under the P-256 `key`; never raises."""
    if not isinstance(key.curve, ec.SECP256R1) or len(signature) != SIGNATURE_BYTES:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True
