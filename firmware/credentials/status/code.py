"""The product's own status code: `HG1:` + base45(COSE_Sign1) over a small CBOR map: its codec."""
from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import cbor2

from firmware.credentials.base45 import Base45Error, b45decode
from firmware.credentials.cose_sign1 import MAX_COSE_BYTES
from firmware.protocol import cbor as bounded_cbor
from firmware.protocol.codederror import CodedError
from firmware.protocol.decoded import Decoded
from firmware.protocol.numericdate import NumericDateError, int_numeric_date

PREFIX = "HG1:"
VERSION = 1
# COSE content type (protected header 3): keeps a status code and a status record apart, so a
# signature made for one can never be replayed as the other.
CONTENT_TYPE_HEADER = 3
CODE_CONTENT_TYPE = "hg1-code"
RECORD_CONTENT_TYPE = "hg1-record"

# Claim keys of the code payload map.
KEY_VERSION, KEY_ISSUER, KEY_SUBJECT, KEY_ISSUED_AT = 1, 2, 3, 4
SUBJECT_BYTES = 16
MIN_SUBJECT_BYTES, MAX_SUBJECT_BYTES = 8, 32
MAX_TEXT_CHARS = 1024  # a status code is ~150 characters; anything much longer is not one
# Payload CBOR of a code or a record: a flat map of at most 9 entries, no tags.
MAX_PAYLOAD_NODES = 64
MAX_PAYLOAD_DEPTH = 2
PAYLOAD_TAGS: frozenset[int] = frozenset()


class StatusFormatError(CodedError, ValueError):
    """A malformed status code or record; `code` is the reason code to report."""


@dataclass(frozen=True)
class StatusCodeClaims:
    """What a status code says: who issued it, for which subject pseudonym, and when."""

    issuer: str
    subject: bytes
    issued_at: int
    version: int = VERSION


def new_subject_pseudonym() -> bytes:
    """A random subject pseudonym (the fleet server keeps the mapping to a person, never the kiosk)."""
    return secrets.token_bytes(SUBJECT_BYTES)


def encode_code_claims(claims: StatusCodeClaims) -> bytes:
    """The CBOR payload of a status code."""
    return cbor2.dumps({KEY_VERSION: claims.version, KEY_ISSUER: claims.issuer,
                        KEY_SUBJECT: claims.subject, KEY_ISSUED_AT: claims.issued_at})


def decode_code_claims(payload: bytes) -> StatusCodeClaims:
    """Parse and check the payload map of a status code."""
    doc = decode_payload(payload, "STATUS_PAYLOAD_INVALID")
    if not isinstance(doc, Mapping):
        raise StatusFormatError("STATUS_PAYLOAD_INVALID", "not a map")
    version = doc.get(KEY_VERSION)
    if version != VERSION or isinstance(version, bool):
        raise StatusFormatError("STATUS_VERSION_UNSUPPORTED", f"version {version!r}")
    issuer, subject, issued_at = doc.get(KEY_ISSUER), doc.get(KEY_SUBJECT), doc.get(KEY_ISSUED_AT)
    if not isinstance(issuer, str) or not 0 < len(issuer) <= 64:
        raise StatusFormatError("STATUS_PAYLOAD_INVALID", "issuer")
    if not isinstance(subject, bytes) or not MIN_SUBJECT_BYTES <= len(subject) <= MAX_SUBJECT_BYTES:
        raise StatusFormatError("STATUS_PAYLOAD_INVALID", "subject")
    issued_at = int_time(issued_at, "issued_at", "STATUS_PAYLOAD_INVALID")
    return StatusCodeClaims(issuer, subject, issued_at, version)


def decode_payload(payload: bytes, invalid_code: str, max_bytes: int = MAX_COSE_BYTES) -> Decoded:
    """Bounded CBOR of a code or record payload: `invalid_code` when damaged, STATUS_CBOR_REFUSED
    for value sharing or a bound passed."""
    try:
        return bounded_cbor.loads(payload, max_bytes=max_bytes, allowed_tags=PAYLOAD_TAGS,
                                  max_nodes=MAX_PAYLOAD_NODES, max_depth=MAX_PAYLOAD_DEPTH)
    except bounded_cbor.CborRefused as exc:
        raise StatusFormatError(invalid_code if exc.structural else "STATUS_CBOR_REFUSED",
                                str(exc)) from None
    except ValueError:
        raise StatusFormatError(invalid_code, "not CBOR") from None


def int_time(value: Decoded, name: str, invalid_code: str) -> int:
    """An integer NumericDate (seconds), else StatusFormatError `invalid_code` naming the field."""
    try:
        return int_numeric_date(value, name)
    except NumericDateError:
        raise StatusFormatError(invalid_code, name) from None


def split_code(text: str) -> bytes:
    """`HG1:<base45>` -> COSE bytes."""
    if not isinstance(text, str) or text[: len(PREFIX)].upper() != PREFIX:
        raise StatusFormatError("STATUS_PREFIX")
    if len(text) > MAX_TEXT_CHARS:
        raise StatusFormatError("STATUS_BASE45_INVALID", "too long")
    try:
        return b45decode(text[len(PREFIX):])
    except Base45Error:
        raise StatusFormatError("STATUS_BASE45_INVALID") from None


def content_type(protected: Mapping[Decoded, Decoded]) -> Decoded:
    """The signed content type of a status COSE message."""
    return protected.get(CONTENT_TYPE_HEADER)
