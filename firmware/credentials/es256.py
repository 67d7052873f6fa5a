"""ES256 in the raw 64-byte r||s form that COSE and JWS both use (RFC 7518 section 3.4).

ECDSA is malleable: when (r, s) verifies, so does (r, n - s). Our issuers therefore always sign
with the low `s` (s <= n/2, as Bitcoin's BIP 62 and libsecp256k1 do; firmware/demo/issuers/cose.py),
`es256_verify` refuses a high `s` unless the caller opts in, and `canonical_signature` maps
either form to the low one for anything that hashes or compares a signature.
"""
from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

SIGNATURE_BYTES = 64
COORDINATE_BYTES = 32
# The order n of the P-256 base point (FIPS 186-4, D.1.2.3; SEC 2, 2.4.2).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
# The largest canonical ("low") s; s in (P256_ORDER_HALF, n) is the malleable twin of n - s.
P256_ORDER_HALF = P256_ORDER // 2
NON_CANONICAL_DETAIL = "non-canonical (high-s) ECDSA signature"


def _split(signature: bytes) -> tuple[int, int]:
    return (int.from_bytes(signature[:COORDINATE_BYTES], "big"),
            int.from_bytes(signature[COORDINATE_BYTES:], "big"))


def _join(r: int, s: int) -> bytes:
    return r.to_bytes(COORDINATE_BYTES, "big") + s.to_bytes(COORDINATE_BYTES, "big")


def is_high_s(signature: bytes) -> bool:
    """True when `signature` is a 64-byte r||s whose s lies above n/2 (the malleable twin)."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    return _split(signature)[1] > P256_ORDER_HALF


def canonical_signature(signature: bytes) -> bytes:
    """The low-s form of a 64-byte r||s signature (unchanged when already low, or not 64 bytes).

    Both forms verify for the same message and key, so whatever identifies a credential by its
    signature must use this form, or one credential would have two identities.
    """
    if not is_high_s(signature):
        return signature
    r, s = _split(signature)
    return _join(r, P256_ORDER - s)


def es256_verify(key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes, *,
                 allow_high_s: bool = False) -> bool:
    """True when `signature` (r||s) is valid for `data` under the P-256 `key`; never raises.

    A high `s` is refused unless `allow_high_s`: only formats whose issuers are not ours and
    really sign with a high `s` (EU DCC, SHC, NZCP: about half of their field signatures) allow
    it, and they identify a credential by its payload or its canonical signature.
    """
    if not isinstance(key.curve, ec.SECP256R1) or len(signature) != SIGNATURE_BYTES:
        return False
    if not allow_high_s and is_high_s(signature):
        return False
    r, s = _split(signature)
    try:
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True
