"""COSE_Sign1 (RFC 8152) for DCCs: parse the structure, pick alg and kid, verify ES256/PS256."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

COSE_SIGN1_TAG = 18
CWT_TAG = 61
HEADER_ALG, HEADER_KID = 1, 4
ES256, PS256 = -7, -37
SUPPORTED_ALGS = {ES256: "ES256", PS256: "PS256"}
MAX_NESTED_TAGS = 2  # CWT tag around COSE_Sign1 tag, as some issuers do


class CoseError(ValueError):
    """The bytes are not a well-formed COSE_Sign1 message."""


@dataclass(frozen=True)
class Sign1:
    """A parsed COSE_Sign1: raw protected header bytes, both headers, payload, signature."""

    protected_raw: bytes
    protected: dict[Any, Any]  # decoded from protected_raw
    unprotected: dict[Any, Any]
    payload: bytes
    signature: bytes

    def header(self, label: int) -> Any:
        """A header value from the protected header, falling back to the unprotected one."""
        if label in self.protected:
            return self.protected[label]
        return self.unprotected.get(label)

    @property
    def alg(self) -> Any:
        return self.header(HEADER_ALG)

    @property
    def kid(self) -> bytes | None:
        value = self.header(HEADER_KID)
        return bytes(value) if isinstance(value, (bytes, bytearray)) else None

    def to_be_signed(self) -> bytes:
        """The Sig_structure that the signature covers (context "Signature1", empty aad)."""
        return cbor2.dumps(["Signature1", self.protected_raw, b"", self.payload])


def parse_sign1(data: bytes) -> Sign1:
    """Parse COSE_Sign1 bytes: tagged 18, untagged, or wrapped once more in the CWT tag 61."""
    try:
        obj = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types, incl. for depth and bad lengths
        raise CoseError(f"not CBOR: {type(exc).__name__}") from None
    for _ in range(MAX_NESTED_TAGS + 1):
        if not isinstance(obj, cbor2.CBORTag):
            break
        if obj.tag not in (COSE_SIGN1_TAG, CWT_TAG):
            raise CoseError(f"unexpected CBOR tag {obj.tag}")
        obj = obj.value
    if not isinstance(obj, (list, tuple)) or len(obj) != 4:
        raise CoseError("COSE_Sign1 must be an array of four items")
    protected_raw, unprotected, payload, signature = obj
    if not isinstance(protected_raw, bytes):
        raise CoseError("protected header must be a byte string")
    if not isinstance(unprotected, Mapping):
        raise CoseError("unprotected header must be a map")
    if not isinstance(payload, bytes):
        raise CoseError("payload must be an attached byte string")
    if not isinstance(signature, bytes):
        raise CoseError("signature must be a byte string")
    if protected_raw:
        try:
            protected = cbor2.loads(protected_raw)
        except Exception:
            raise CoseError("protected header is not CBOR") from None
        if not isinstance(protected, Mapping):
            raise CoseError("protected header must encode a map")
    else:
        protected = {}
    return Sign1(protected_raw, dict(protected), dict(unprotected), payload, signature)


def verify_signature(message: Sign1, public_key: Any) -> bool:
    """True when the signature verifies with `public_key` under the message's algorithm.

    The key type must match the algorithm: an RSA key never verifies an ES256 message.
    """
    data = message.to_be_signed()
    alg = message.alg
    try:
        if alg == ES256 and isinstance(public_key, ec.EllipticCurvePublicKey):
            if public_key.curve.name != "secp256r1" or len(message.signature) != 64:
                return False
            r = int.from_bytes(message.signature[:32], "big")
            s = int.from_bytes(message.signature[32:], "big")
            public_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
            return True
        if alg == PS256 and isinstance(public_key, rsa.RSAPublicKey):
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
            public_key.verify(message.signature, data, pss, hashes.SHA256())
            return True
    except (InvalidSignature, ValueError):
        return False
    return False
