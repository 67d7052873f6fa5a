"""The one COSE_Sign1 codec (RFC 8152): bounded decode, ES256/PS256/EdDSA verification; DCC, NZCP, status."""
from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from firmware.credentials.es256 import es256_verify
from firmware.protocol import cbor as bounded_cbor
from firmware.protocol.codederror import CodedError
from firmware.protocol.decoded import Decoded

COSE_SIGN1_TAG = 18
CWT_TAG = 61
ALG_ES256 = -7
ALG_EDDSA = -8
ALG_PS256 = -37
ALG_NAMES = {ALG_ES256: "ES256", ALG_EDDSA: "EdDSA", ALG_PS256: "PS256"}
HEADER_ALG = 1
HEADER_KID = 4

# A QR code holds at most ~3 KB of binary; anything larger is not a scanned credential.
MAX_COSE_BYTES = 8192
# The message is [protected bstr, unprotected map, payload bstr, signature bstr] inside at most
# two tags; the EU test data needs at most 10 items. The payload is a byte string here (one
# node): it is walked by its format's own decoder, after the signature check.
MAX_COSE_NODES = 64
MAX_COSE_DEPTH = 4
# A protected header is a small map of labels to ints/bytes/text (alg, kid, content type).
MAX_HEADER_NODES = 32
MAX_HEADER_DEPTH = 2

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey


class CoseError(CodedError, ValueError):
    """The bytes are not a well-formed COSE_Sign1 message (`code` names the stage).

    `code` "refused" means a construct that is never decoded (value sharing, more nodes or depth
    than the bounds); callers report their format's *_CBOR_REFUSED reason for it.
    """


@dataclass(frozen=True)
class Sign1:
    """A decoded COSE_Sign1: the raw protected bytes are kept because the signature covers them."""

    protected_raw: bytes
    protected: dict[Decoded, Decoded]
    unprotected: dict[Decoded, Decoded]
    payload: bytes
    signature: bytes
    tagged: bool
    # Set only by decode_sign1(unprotected_alg=True), for the DCC (see there).
    unprotected_alg: bool = False

    def header(self, label: Decoded) -> Decoded:
        """A header value from the protected header, falling back to the unprotected one."""
        if label in self.protected:
            return self.protected[label]
        return self.unprotected.get(label)

    @property
    def alg(self) -> Decoded:
        """`alg` from the protected header (it must be signed), unless decoded leniently."""
        return self.header(HEADER_ALG) if self.unprotected_alg else self.protected.get(HEADER_ALG)

    @property
    def kid(self) -> bytes | None:
        """`kid` (a byte string, RFC 8152) from the protected header, else the unprotected one."""
        kid = self.header(HEADER_KID)
        return kid if isinstance(kid, bytes) else None


def decode_sign1(data: bytes, *, require_tag: bool = False, allow_cwt_tag: bool = False,
                 unprotected_alg: bool = False) -> Sign1:
    """Parse COSE_Sign1 bytes; raises CoseError.

    Tag 18 is optional unless `require_tag`. `allow_cwt_tag` also accepts the CWT tag 61 around
    the message (RFC 8392; some DCC issuers send both). `unprotected_alg` lets `alg` come from
    the unprotected header when the protected one has none: the EU DCC test data expects such a
    message to verify (common CO20); the signature still decides.
    """
    if len(data) > MAX_COSE_BYTES:
        raise CoseError("too_large", f"{len(data)} bytes")
    tags = {COSE_SIGN1_TAG, CWT_TAG} if allow_cwt_tag else {COSE_SIGN1_TAG}
    obj = _bounded_loads(data, "cbor", MAX_COSE_BYTES, tags, MAX_COSE_NODES, MAX_COSE_DEPTH)
    if allow_cwt_tag and isinstance(obj, cbor2.CBORTag) and obj.tag == CWT_TAG:
        obj = obj.value
    tagged = False
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag != COSE_SIGN1_TAG:
            raise CoseError("tag", f"tag {obj.tag}")
        obj, tagged = obj.value, True
    if require_tag and not tagged:
        raise CoseError("tag", "untagged")
    # cbor2 returns tuples and frozendicts for containers nested in a tag.
    if not isinstance(obj, (list, tuple)) or len(obj) != 4:
        raise CoseError("structure", "not a 4-element array")
    protected_raw, unprotected, payload, signature = obj
    if not isinstance(protected_raw, bytes) or not isinstance(payload, bytes):
        raise CoseError("structure", "protected/payload not bytes")
    if not isinstance(signature, bytes) or not isinstance(unprotected, Mapping):
        raise CoseError("structure", "signature/unprotected wrong type")
    if protected_raw:
        protected = _bounded_loads(protected_raw, "header", MAX_COSE_BYTES, (),
                                   MAX_HEADER_NODES, MAX_HEADER_DEPTH)
        if not isinstance(protected, Mapping):
            raise CoseError("header", "protected header not a map")
    else:
        protected = {}
    return Sign1(protected_raw, dict(protected), dict(unprotected), payload, signature, tagged,
                 unprotected_alg)


def _bounded_loads(data: bytes, code: str, max_bytes: int, tags: Collection[int], max_nodes: int,
                   max_depth: int) -> Decoded:
    """Bounded CBOR decode; CoseError `code` when damaged (trailing bytes included), "refused"
    for a construct we never decode."""
    try:
        return bounded_cbor.loads(data, max_bytes=max_bytes, allowed_tags=tags,
                                  max_nodes=max_nodes, max_depth=max_depth)
    except bounded_cbor.CborRefused as exc:
        if exc.problem == "tag" and code == "cbor":  # e.g. tag 98 (COSE_Sign): not a Sign1
            raise CoseError("tag", str(exc)) from None
        if exc.structural:  # damaged or trailing bytes: the stage's own code
            raise CoseError(code, str(exc)) from None
        raise CoseError("refused", str(exc)) from None
    except ValueError as exc:
        raise CoseError(code, str(exc)) from None


def sig_structure(protected_raw: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """The Sig_structure that COSE_Sign1 signs: ["Signature1", protected, aad, payload]."""
    return cbor2.dumps(["Signature1", protected_raw, external_aad, payload])


def verify_signature(msg: Sign1, key: PublicKey, *, allow_high_s: bool = False) -> bool:
    """True when `msg` carries a valid signature by `key` under `msg.alg`.

    The key type must match the algorithm: an RSA key never verifies an ES256 message. Callers
    still refuse the algorithms their format does not allow before calling this. An ES256
    signature with a high `s` is refused unless `allow_high_s` (see es256.py).
    """
    to_be_signed = sig_structure(msg.protected_raw, msg.payload)
    try:
        if msg.alg == ALG_ES256 and isinstance(key, ec.EllipticCurvePublicKey):
            return es256_verify(key, to_be_signed, msg.signature, allow_high_s=allow_high_s)
        if msg.alg == ALG_EDDSA and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(msg.signature, to_be_signed)
            return True
        if msg.alg == ALG_PS256 and isinstance(key, rsa.RSAPublicKey):
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
            key.verify(msg.signature, to_be_signed, pss, hashes.SHA256())
            return True
    except (InvalidSignature, ValueError):
        return False
    return False
