"""Test helpers: hostile CBOR (shared-reference bombs) inside correctly signed credentials of each
CBOR format (DCC, NZCP, status code, status record, member gallery), and a memory probe."""
from __future__ import annotations

import os
import struct
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firmware.credentials import TrustStore, verify
from firmware.credentials.base45 import b45encode
from firmware.demo.issuers.cose import encode_sign1
from firmware.credentials.dcc.codec import CLAIM_EXP, CLAIM_HCERT, CLAIM_IAT, CLAIM_ISS
from firmware.demo.issuers.dcc import encode_hc1
from firmware.credentials.nzcp import NzcpTrust
from firmware.credentials.nzcp.codec import (
    CLAIM_CTI,
    CLAIM_NBF,
    PASS_TYPE,
    VC_CONTEXT,
    base32_encode,
    jti_to_cti,
)
from firmware.credentials.shc.codec import jwk_from_public_key
from firmware.credentials.status import StatusTrust
from firmware.credentials.status.code import (
    CODE_CONTENT_TYPE,
    CONTENT_TYPE_HEADER,
    RECORD_CONTENT_TYPE,
)
from firmware.credentials.status.records import StatusIssuerKey, StatusRecord, StatusRecordCache
from firmware.credentials.trust import dcc_kid
from firmware.vision import gallery
from tests.dcc_helpers import T0, make_cert, make_key, vaccination

# Peak allocation allowed while refusing one hostile input (issue 15).
MEMORY_BUDGET_BYTES = 5 * 1024 * 1024
_MARK = "\x00HOSTILE\x00"  # a text placeholder, replaced by raw CBOR bytes after encoding


def shared_list_bomb(fan_out: int, depth: int) -> bytes:
    """A list holding the same list `fan_out` times, `depth` deep, encoded with value sharing
    (tags 28/29): O(fan_out * depth) bytes that expand to fan_out**depth nodes as a tree."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value] * fan_out
    return cbor2.dumps(value, value_sharing=True)


def splice(document: Any, hostile: bytes) -> bytes:
    """CBOR of `document` with the single `_MARK` text replaced by the raw bytes `hostile`."""
    encoded = cbor2.dumps(document)
    marker = cbor2.dumps(_MARK)
    assert encoded.count(marker) == 1
    return encoded.replace(marker, hostile)


def peak_bytes(action: Callable[[], Any]) -> tuple[Any, int]:
    """Run `action` under tracemalloc; its result and the peak bytes allocated meanwhile."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


# -- DCC --------------------------------------------------------------------------------------
DCC_AT = T0 + timedelta(days=10)
_DCC_KEY = make_key("ec")
_DCC_DER = make_cert(_DCC_KEY)
DCC_TRUST = TrustStore.from_certificates([_DCC_DER])


def dcc_claims(dcc: Any = None, **overrides: Any) -> dict[Any, Any]:
    """CWT claims of a good vaccination DCC; keyword `iat`/`exp`/`iss` replace those claims."""
    claims: dict[Any, Any] = {CLAIM_ISS: "AT", CLAIM_IAT: int(T0.timestamp()),
                              CLAIM_EXP: int((T0 + timedelta(days=365)).timestamp()),
                              CLAIM_HCERT: {1: vaccination() if dcc is None else dcc}}
    names = {"iat": CLAIM_IAT, "exp": CLAIM_EXP, "iss": CLAIM_ISS}
    for name, value in overrides.items():
        claims[names[name]] = value
    return claims


def signed_dcc(payload: bytes, *, unprotected: bytes | None = None) -> str:
    """An `HC1:` text whose COSE signs `payload` with the trusted DSC (optionally with raw CBOR
    `unprotected` spliced in as the unprotected header's label 99)."""
    cose = encode_sign1(payload, _DCC_KEY, kid=dcc_kid(_DCC_DER))
    if unprotected is not None:
        protected, _, signed, signature = cbor2.loads(cose).value
        cose = splice(cbor2.CBORTag(18, [protected, {99: _MARK}, signed, signature]), unprotected)
    return encode_hc1(cose)


def dcc_with(hostile: bytes) -> str:
    """A correctly signed DCC whose vaccination entry list is `hostile`."""
    dcc = vaccination()
    dcc["v"] = _MARK
    return signed_dcc(splice(dcc_claims(dcc), hostile))


# -- NZCP -------------------------------------------------------------------------------------
NZCP_AT = datetime(2025, 6, 1, tzinfo=timezone.utc)
_NZCP_KEY = ec.generate_private_key(ec.SECP256R1())
_NZCP_DID = "did:web:issuer.healthgate.invalid"


def _nzcp_trust() -> TrustStore:
    jwk = {k: v for k, v in jwk_from_public_key(_NZCP_KEY.public_key()).items()
           if k in ("kty", "crv", "x", "y")}
    trust = NzcpTrust(trusted_issuers={_NZCP_DID})
    trust.add_did_document({
        "id": _NZCP_DID, "assertionMethod": [f"{_NZCP_DID}#key-1"],
        "verificationMethod": [{"id": f"{_NZCP_DID}#key-1", "controller": _NZCP_DID,
                                "type": "JsonWebKey2020", "publicKeyJwk": jwk}]})
    return TrustStore(nzcp=trust)


NZCP_TRUST = _nzcp_trust()


def nzcp_claims(**overrides: Any) -> dict[Any, Any]:
    """CWT claims of a good pass; keyword `nbf`/`exp`/`subject` replace those parts."""
    now = int(NZCP_AT.timestamp())
    subject = overrides.pop("subject", {"givenName": "Pat", "familyName": "Example",
                                        "dob": "1970-01-01"})
    claims: dict[Any, Any] = {
        1: _NZCP_DID, CLAIM_NBF: now - 86400, 4: now + 86400 * 365,
        CLAIM_CTI: jti_to_cti("urn:uuid:7d1a3c52-3f0e-4b8e-9a56-2f1c7d9e0b11"),
        "vc": {"@context": [VC_CONTEXT], "version": "1.0.0",
               "type": ["VerifiableCredential", PASS_TYPE], "credentialSubject": subject}}
    for name, value in overrides.items():
        claims[{"nbf": CLAIM_NBF, "exp": 4}[name]] = value
    return claims


def signed_nzcp(payload: bytes) -> str:
    cose = encode_sign1(payload, _NZCP_KEY, kid=b"key-1")
    return "NZCP:/1/" + base32_encode(cose)


def nzcp_with(hostile: bytes) -> str:
    """A correctly signed pass whose credentialSubject is `hostile`."""
    return signed_nzcp(splice(nzcp_claims(subject=_MARK), hostile))


# -- status codes and records -------------------------------------------------------------------
STATUS_AT = datetime(2025, 6, 1, tzinfo=timezone.utc)
STATUS_NOW = int(STATUS_AT.timestamp())
STATUS_KID = b"hg-test"
STATUS_ISSUER = "hg-test"
STATUS_SUBJECT = b"\x42" * 16
_STATUS_KEY = ec.generate_private_key(ec.SECP256R1())
STATUS_KEYS = {STATUS_KID: StatusIssuerKey(STATUS_ISSUER, _STATUS_KEY.public_key())}


def status_trust() -> TrustStore:
    """Trust with a fresh, green record for STATUS_SUBJECT."""
    from firmware.demo.issuers.status import sign_status_record

    cache = StatusRecordCache(STATUS_KEYS)
    record = StatusRecord(STATUS_ISSUER, STATUS_SUBJECT, "green", STATUS_NOW - 60, STATUS_NOW + 3600)
    cache.apply_sync([sign_status_record(record, _STATUS_KEY, kid=STATUS_KID)], STATUS_AT)
    return TrustStore(status=StatusTrust(keys=STATUS_KEYS, cache=cache))


def status_code_claims(**overrides: Any) -> dict[int, Any]:
    claims: dict[int, Any] = {1: 1, 2: STATUS_ISSUER, 3: STATUS_SUBJECT, 4: STATUS_NOW - 100}
    for name, value in overrides.items():
        claims[{"issued_at": 4}[name]] = value
    return claims


def signed_status_code(payload: bytes) -> str:
    cose = encode_sign1(payload, _STATUS_KEY, kid=STATUS_KID,
                        extra_protected={CONTENT_TYPE_HEADER: CODE_CONTENT_TYPE})
    return "HG1:" + b45encode(cose)


def status_code_with(hostile: bytes) -> str:
    claims = status_code_claims()
    claims[5] = _MARK
    return signed_status_code(splice(claims, hostile))


def status_record_claims(**overrides: Any) -> dict[int, Any]:
    claims: dict[int, Any] = {1: 1, 2: STATUS_ISSUER, 3: STATUS_SUBJECT, 4: "green",
                              5: STATUS_NOW - 60, 6: STATUS_NOW + 3600}
    for name, value in overrides.items():
        claims[{"issued_at": 5, "valid_until": 6, "codes_not_before": 9}[name]] = value
    return claims


def signed_status_record(payload: bytes) -> bytes:
    return encode_sign1(payload, _STATUS_KEY, kid=STATUS_KID,
                        extra_protected={CONTENT_TYPE_HEADER: RECORD_CONTENT_TYPE})


def status_record_with(hostile: bytes) -> bytes:
    claims = status_record_claims()
    claims[10] = _MARK
    return signed_status_record(splice(claims, hostile))


# -- member gallery ----------------------------------------------------------------------------
GALLERY_KEY = bytes(range(32))


def gallery_file(record_plain: bytes, key: bytes = GALLERY_KEY) -> bytes:
    """A gallery file (correctly encrypted and authenticated) with one record of plaintext
    `record_plain`, in the layout of firmware.vision.gallery."""
    import hashlib

    aead = AESGCM(key)
    salt = os.urandom(gallery.SALT_BYTES)
    nonce = os.urandom(gallery.NONCE_BYTES)
    blobs = [nonce + aead.encrypt(nonce, record_plain, gallery._aad(salt, 0))]
    manifest = cbor2.dumps({"n": 1, "h": hashlib.sha256(blobs[0]).digest()})
    nonce = os.urandom(gallery.NONCE_BYTES)
    blobs.append(nonce + aead.encrypt(nonce, manifest, gallery._aad(salt, 1)))
    return gallery.MAGIC + salt + b"".join(struct.pack(">I", len(b)) + b for b in blobs)


def gallery_with(hostile: bytes) -> bytes:
    template = struct.pack("<4f", 0.5, 0.5, 0.5, 0.5)
    return gallery_file(splice({"m": "member-1", "t": template, "x": _MARK}, hostile))


@dataclass(frozen=True)
class Outcome:
    """What one format made of one input: refused (and with which code) or accepted."""

    refused: bool
    code: str | None


def build_input(fmt: str, hostile: bytes) -> Any:
    """`hostile` CBOR inside a correctly signed (or, for the gallery, encrypted) input of `fmt`."""
    builders: dict[str, Callable[[bytes], Any]] = {
        "dcc": dcc_with,
        "dcc-unprotected": lambda h: signed_dcc(cbor2.dumps(dcc_claims()), unprotected=h),
        "nzcp": nzcp_with, "status-code": status_code_with,
        "status-record": status_record_with, "gallery": gallery_with}
    return builders[fmt](hostile)


def check_input(fmt: str, built: Any) -> Outcome:
    """Check one input of `fmt` as the kiosk does; a refusal is an Outcome, never an exception
    (a raise from the verifier propagates: that is a bug the test must see)."""
    from firmware.credentials.status.code import StatusFormatError
    from firmware.credentials.status.records import verify_status_record

    if fmt in ("dcc", "dcc-unprotected", "nzcp", "status-code"):
        trust, at = {"nzcp": (NZCP_TRUST, NZCP_AT), "status-code": (STATUS_TRUST, STATUS_AT)}.get(
            fmt, (DCC_TRUST, DCC_AT))
        verdict = verify(built, trust, at)
        return Outcome(not verdict.valid, verdict.failure)
    if fmt == "status-record":
        try:
            verify_status_record(built, STATUS_KEYS)
        except StatusFormatError as exc:
            return Outcome(True, exc.code)
        return Outcome(False, None)
    if fmt == "gallery":
        try:
            gallery.decode_gallery(built, GALLERY_KEY)
        except gallery.GalleryError:
            return Outcome(True, "GalleryError")
        return Outcome(False, None)
    raise ValueError(fmt)


def run_format(fmt: str, hostile: bytes) -> Outcome:
    """Put `hostile` CBOR into a correctly signed credential of `fmt` and check it."""
    return check_input(fmt, build_input(fmt, hostile))


STATUS_TRUST = status_trust()
# The reason each format gives for value sharing or a bound passed.
REFUSED_CODE = {"dcc": "DCC_CBOR_REFUSED", "dcc-unprotected": "DCC_CBOR_REFUSED",
                "nzcp": "NZCP_CBOR_REFUSED", "status-code": "STATUS_CBOR_REFUSED",
                "status-record": "STATUS_CBOR_REFUSED", "gallery": "GalleryError"}
FORMATS = tuple(REFUSED_CODE)


# -- hypothesis strategies ---------------------------------------------------------------------
def _header(major: int, argument: int) -> bytes:
    if argument < 24:
        return bytes([major << 5 | argument])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if argument < 1 << (8 * size):
            return bytes([major << 5 | info]) + argument.to_bytes(size, "big")
    raise ValueError("argument too large")


# Tags cbor2 gives a meaning to (and some it does not), value sharing and string references
# among them: what an attacker would try.
ATTACK_TAGS = (0, 1, 2, 3, 4, 5, 21, 22, 23, 24, 25, 28, 29, 30, 32, 35, 36, 37, 64, 100, 256,
               258, 260, 261, 1004, 55799)


def cbor_items(max_leaves: int = 25) -> Any:
    """Raw CBOR data items (bytes): scalars, arrays, maps, tags (any of ATTACK_TAGS or another
    number) and shared references to small indices, nested at random."""
    from hypothesis import strategies as st

    scalars = st.one_of(
        st.integers(-(2**64), 2**64 - 1).map(cbor2.dumps),
        st.floats(allow_nan=True, allow_infinity=True).map(cbor2.dumps),
        st.text(max_size=8).map(cbor2.dumps), st.binary(max_size=8).map(cbor2.dumps),
        st.sampled_from([b"\xf4", b"\xf5", b"\xf6", b"\xf7"]),
        st.integers(0, 7).map(lambda index: _header(6, 29) + _header(0, index)),
    )
    tags = st.one_of(st.sampled_from(ATTACK_TAGS), st.integers(0, 2**32))

    def extend(inner: Any) -> Any:
        arrays = st.lists(inner, max_size=5).map(lambda xs: _header(4, len(xs)) + b"".join(xs))
        maps = st.lists(st.tuples(inner, inner), max_size=3).map(
            lambda kvs: _header(5, len(kvs)) + b"".join(k + v for k, v in kvs))
        tagged = st.tuples(tags, inner).map(lambda tv: _header(6, tv[0]) + tv[1])
        return arrays | maps | tagged

    return st.recursive(scalars, extend, max_leaves=max_leaves)


def shared_reference_cbor() -> Any:
    """CBOR that always uses value sharing: a shareable (tag 28) list whose items are random
    items, shared references (tag 29) to it (a cycle) and to other indices, and copies of a
    random subtree: the shape of the bomb, with random fan-out, nesting and extra tags."""
    from hypothesis import strategies as st

    ref = st.integers(0, 4).map(lambda index: _header(6, 29) + _header(0, index))
    children = st.lists(cbor_items(12) | ref, min_size=1, max_size=8)

    def build(parts: tuple[list[bytes], int, int]) -> bytes:
        items, fan_out, depth = parts
        body = _header(6, 28) + _header(4, len(items) + 1) + b"".join(items) + _header(6, 29) + b"\x00"
        for _ in range(depth):  # [shareable(x), ref, ref, ...]: the bomb's nesting
            body = (_header(6, 28) + _header(4, fan_out) + body
                    + (_header(6, 29) + _header(0, 1)) * (fan_out - 1))
        return body

    return st.tuples(children, st.integers(2, 8), st.integers(0, 16)).map(build)
