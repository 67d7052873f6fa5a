"""Sign COSE_Sign1 messages and ES256 signatures (demo, tests, benchmarks); the verifiers only verify."""
from __future__ import annotations

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from firmware.credentials.cose_sign1 import (
    ALG_EDDSA,
    ALG_ES256,
    ALG_PS256,
    COSE_SIGN1_TAG,
    HEADER_ALG,
    HEADER_KID,
    PublicKey,
    sig_structure,
)
from firmware.credentials.es256 import COORDINATE_BYTES, canonical_signature
from firmware.protocol.decoded import Decoded

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PSS_SALT_BYTES = 32  # what we sign with; verification accepts any salt length (PSS.AUTO)


def es256_sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """Sign `data` with a P-256 key; the signature is r||s, 32 big-endian bytes each, low s."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return canonical_signature(r.to_bytes(COORDINATE_BYTES, "big") + s.to_bytes(COORDINATE_BYTES, "big"))


def alg_for_key(key: PrivateKey | PublicKey) -> int:
    """The COSE alg number for a key type (ES256 for P-256, EdDSA for Ed25519, PS256 for RSA)."""
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return ALG_EDDSA
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return ALG_PS256
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and isinstance(
        key.curve, ec.SECP256R1
    ):
        return ALG_ES256
    raise ValueError("only P-256, Ed25519 and RSA keys are supported")


def encode_sign1(
    payload: bytes,
    key: PrivateKey,
    *,
    kid: bytes | str | None,
    tagged: bool = True,
    kid_unprotected: bool = False,
    extra_protected: dict[Decoded, Decoded] | None = None,
) -> bytes:
    """Sign `payload` as a COSE_Sign1 (alg from the key type; kid in the protected header unless
    `kid_unprotected`, left out when None; a text kid is written as its UTF-8 bytes)."""
    alg = alg_for_key(key)
    header: dict[Decoded, Decoded] = {HEADER_ALG: alg}
    unprotected: dict[Decoded, Decoded] = {}
    if kid is not None:
        kid_bytes = kid.encode("utf-8") if isinstance(kid, str) else kid
        (unprotected if kid_unprotected else header)[HEADER_KID] = kid_bytes
    header.update(extra_protected or {})
    protected_raw = cbor2.dumps(header)
    to_be_signed = sig_structure(protected_raw, payload)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(to_be_signed)
    elif isinstance(key, rsa.RSAPrivateKey):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_BYTES)
        signature = key.sign(to_be_signed, pss, hashes.SHA256())
    else:
        signature = es256_sign(key, to_be_signed)
    body = [protected_raw, unprotected, payload, signature]
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, body) if tagged else body)
