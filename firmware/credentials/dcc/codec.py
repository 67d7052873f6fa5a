"""Pure HC1 decoding steps (bytes in, values out): bounded ZLIB, CWT claims, JSON conversion."""
from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone

from firmware.protocol import cbor as bounded_cbor
from firmware.protocol.decoded import Decoded
from firmware.protocol.numericdate import NumericDateError, numeric_date

PREFIX = "HC1:"
# Real DCC payloads decompress to a few kilobytes; anything far larger is a bomb.
MAX_DECOMPRESSED_BYTES = 64 * 1024
CLAIM_ISS, CLAIM_EXP, CLAIM_IAT, CLAIM_HCERT = 1, 4, 6, -260
HCERT_EU_DCC_V1 = 1
# Nesting of the converted DCC (the schema's deepest path is 3 containers below the DCC).
MAX_DEPTH = 16
# The CWT claims CBOR: the EU test data's largest payload has 86 data items and 4 of them are
# tag-0 dates; 1 (epoch) and 1004 (RFC 8943 full-date) are the other date tags issuers use.
MAX_CLAIMS_BYTES = 8192  # the signed payload sits in a COSE message of at most MAX_COSE_BYTES
MAX_CLAIMS_NODES = 1024
MAX_CLAIMS_DEPTH = 16
CLAIMS_TAGS = frozenset({0, 1, 1004})
# Values the JSON conversion may visit (each dict, list and scalar is one): the schema, the
# rules and revocation walk only what it returns, so this bounds their work as well.
MAX_JSON_NODES = 1024


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
    dcc: Decoded
    # Why a present iat/exp is not a NumericDate (NaN, infinite, negative, huge, not a number);
    # iat/exp are then None, and the expiry stage reports DCC_CLAIMS_INVALID.
    time_problem: str | None = None


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
    if inflater.unused_data:  # bytes outside the compressed (and checksummed) stream
        extra = len(inflater.unused_data)
        raise DecodeError("DCC_ZLIB_INVALID", f"{extra} byte(s) after the ZLIB stream")
    return out


def decode_claims(payload: bytes) -> Claims:
    """Decode the CWT claims and the DCC inside them (claim -260, key 1)."""
    try:
        cwt = bounded_cbor.loads(payload, max_bytes=MAX_CLAIMS_BYTES, allowed_tags=CLAIMS_TAGS,
                                 max_nodes=MAX_CLAIMS_NODES, max_depth=MAX_CLAIMS_DEPTH)
    except bounded_cbor.CborRefused as exc:
        code = "DCC_CBOR_INVALID" if exc.structural else "DCC_CBOR_REFUSED"
        raise DecodeError(code, f"payload refused: {exc}") from None
    except ValueError as exc:
        raise DecodeError("DCC_CBOR_INVALID", f"payload is not CBOR: {exc}") from None
    if not isinstance(cwt, Mapping):
        raise DecodeError("DCC_CBOR_INVALID", "CWT claims are not a map")
    hcert = cwt.get(CLAIM_HCERT)
    if not isinstance(hcert, Mapping) or not isinstance(hcert.get(HCERT_EU_DCC_V1), Mapping):
        raise DecodeError("DCC_CBOR_INVALID", "no EU DCC (claim -260/1) in the CWT")
    try:
        dcc = to_json(hcert[HCERT_EU_DCC_V1])
    except JsonBudgetError as exc:
        raise DecodeError("DCC_CBOR_REFUSED", str(exc)) from None
    except ValueError as exc:
        raise DecodeError("DCC_CBOR_INVALID", str(exc)) from None
    iss = cwt.get(CLAIM_ISS)
    problems: list[str] = []
    iat = _number(cwt.get(CLAIM_IAT), "iat", problems)
    exp = _number(cwt.get(CLAIM_EXP), "exp", problems)
    return Claims(iss if isinstance(iss, str) else None, iat, exp, dcc,
                  "; ".join(problems) or None)


class JsonBudgetError(ValueError):
    """The value is larger than MAX_JSON_NODES or deeper than MAX_DEPTH."""


def to_json(value: Decoded, max_nodes: int = MAX_JSON_NODES) -> Decoded:
    """The DCC as JSON types: tagged dates become ISO strings; bytes and odd keys are refused.

    Every value visited costs one node of `max_nodes`: the decoder refuses value sharing, but
    the budget keeps this walk bounded whatever graph it is given (JsonBudgetError).
    """
    budget = [max_nodes]
    return _convert(value, 0, budget)


def _convert(value: Decoded, depth: int, budget: list[int]) -> Decoded:
    if depth > MAX_DEPTH:
        raise JsonBudgetError(f"DCC nests deeper than {MAX_DEPTH}")
    budget[0] -= 1
    if budget[0] < 0:
        raise JsonBudgetError(f"DCC has more than {MAX_JSON_NODES} values")
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise ValueError("DCC map keys must be text")
        return {k: _convert(v, depth + 1, budget) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_convert(v, depth + 1, budget) for v in value]
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return stamp.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ValueError(f"DCC holds a {type(value).__name__}, not a JSON value")


def _number(value: Decoded, name: str, problems: list[str]) -> float | None:
    """A NumericDate claim, None when absent; a present but unusable one is noted in `problems`."""
    if value is None:
        return None
    try:
        return numeric_date(value, name)
    except NumericDateError as exc:
        problems.append(str(exc))
        return None
