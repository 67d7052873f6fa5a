"""Pure HC1 decoding steps (bytes in, values out): bounded ZLIB, CWT claims, JSON conversion."""
from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

import cbor2

PREFIX = "HC1:"
# Real DCC payloads decompress to a few kilobytes; anything far larger is a bomb.
MAX_DECOMPRESSED_BYTES = 64 * 1024
CLAIM_ISS, CLAIM_EXP, CLAIM_IAT, CLAIM_HCERT = 1, 4, 6, -260
HCERT_EU_DCC_V1 = 1
MAX_DEPTH = 16


class DecodeError(ValueError):
    """A decoding step failed; `code` is the stable reason code, `detail` says why."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Claims:
    """The CWT claims of a DCC, with the DCC itself converted to JSON-compatible values."""

    iss: str | None
    iat: float | None
    exp: float | None
    dcc: Any


def inflate(compressed: bytes, limit: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """ZLIB-decompress with a hard output bound, so a decompression bomb costs nothing."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(compressed, limit + 1)
    except zlib.error as exc:
        raise DecodeError("DCC_ZLIB_INVALID", f"not ZLIB data: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise DecodeError("DCC_TOO_LARGE", f"decompresses past {limit} bytes")
    if not inflater.eof:
        raise DecodeError("DCC_ZLIB_INVALID", "ZLIB stream is truncated")
    return out


def decode_claims(payload: bytes) -> Claims:
    """Decode the CWT claims and the DCC inside them (claim -260, key 1)."""
    try:
        cwt = cbor2.loads(payload)
    except Exception as exc:  # cbor2 raises several types
        raise DecodeError("DCC_CBOR_INVALID", f"payload is not CBOR: {type(exc).__name__}") from None
    if not isinstance(cwt, Mapping):
        raise DecodeError("DCC_CBOR_INVALID", "CWT claims are not a map")
    hcert = cwt.get(CLAIM_HCERT)
    if not isinstance(hcert, Mapping) or not isinstance(hcert.get(HCERT_EU_DCC_V1), Mapping):
        raise DecodeError("DCC_CBOR_INVALID", "no EU DCC (claim -260/1) in the CWT")
    try:
        dcc = to_json(hcert[HCERT_EU_DCC_V1])
    except ValueError as exc:
        raise DecodeError("DCC_CBOR_INVALID", str(exc)) from None
    iss = cwt.get(CLAIM_ISS)
    return Claims(iss if isinstance(iss, str) else None, _number(cwt.get(CLAIM_IAT)),
                  _number(cwt.get(CLAIM_EXP)), dcc)


def to_json(value: Any, depth: int = 0) -> Any:
    """The DCC as JSON types: tagged dates become ISO strings; bytes and odd keys are refused."""
    if depth > MAX_DEPTH:
        raise ValueError("DCC nests too deeply")
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise ValueError("DCC map keys must be text")
        return {k: to_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v, depth + 1) for v in value]
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return stamp.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ValueError(f"DCC holds a {type(value).__name__}, not a JSON value")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value
