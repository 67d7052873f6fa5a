"""SMART Health Card wire codecs: numeric QR mode, chunk headers, base64url, raw DEFLATE, JWK, JWS."""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import zlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from firmware.protocol import finite_json
from firmware.protocol.codederror import CodedError
from firmware.protocol.decoded import Decoded

PREFIX = "shc:/"
# Ord(c) - 45 for every character of a compact JWS lies in 0..77 ('-' .. 'z').
_NUMERIC_OFFSET = 45
_MAX_PAIR = ord("z") - _NUMERIC_OFFSET
# Bounds: a JWS in one V22 QR is <= 1195 chars; chunked cards are a handful of those.
MAX_CHUNKS = 16
MAX_TEXT_CHARS = 2 * 1195 * MAX_CHUNKS + 64
MAX_JWS_CHARS = 1195 * MAX_CHUNKS
# FHIR bundles that fit in QR codes inflate to a few KB; 64 KiB is generous and bounded.
MAX_INFLATED_BYTES = 64 * 1024
# The claims JSON (after the signature verified): values (each object, array and scalar is one)
# and nesting (the claims object is level 0). A real card has a few hundred values about 12
# deep (vc.credentialSubject.fhirBundle.entry[].resource...coding[]); 64 KiB of JSON could hold
# ~32,000 values, which nothing downstream should have to walk.
MAX_CLAIMS_NODES = 8192
MAX_CLAIMS_DEPTH = 32

_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]*$")
# ASCII digits only ("\d" would also take Arabic-Indic or full-width digits), and a chunk number
# without leading zeros: one card, one text. The body's digits are checked by numeric_to_jws.
_CHUNK_NUMBER_RE = re.compile(r"[1-9][0-9]{0,2}")


class ShcFormatError(CodedError, ValueError):
    """A malformed SHC at one stage; `code` is the reason code to report."""


@dataclass(frozen=True)
class Chunk:
    """One scanned `shc:/` QR text: its 1-based index, the total count and its numeric body."""

    index: int
    total: int
    digits: str


def parse_chunk(text: str) -> Chunk:
    """Split `shc:/[C/N/]digits` into its parts; a single-QR card is chunk 1 of 1.

    `shc:/1/1/...` is accepted as a single-QR card, as the SMART dev tools do (with a warning);
    C and N are ASCII numbers without leading zeros, 1 <= C <= N <= MAX_CHUNKS.
    """
    if len(text) > MAX_TEXT_CHARS:
        raise ShcFormatError("SHC_TOO_LARGE", f"{len(text)} chars")
    text = text.strip()
    if text[: len(PREFIX)].lower() != PREFIX:
        raise ShcFormatError("SHC_NUMERIC_INVALID", "not shc:/[C/N/]digits")
    parts = text[len(PREFIX):].split("/")
    if len(parts) == 1:
        return Chunk(1, 1, _digits(parts[0]))
    if len(parts) != 3:
        raise ShcFormatError("SHC_CHUNK_INVALID", "a chunk header is C/N/")
    index, total = _chunk_number(parts[0]), _chunk_number(parts[1])
    if not 1 <= index <= total <= MAX_CHUNKS:
        raise ShcFormatError("SHC_CHUNK_INVALID", f"chunk {index}/{total}")
    return Chunk(index, total, _digits(parts[2]))


def _chunk_number(text: str) -> int:
    if not _CHUNK_NUMBER_RE.fullmatch(text):
        raise ShcFormatError("SHC_CHUNK_INVALID", "chunk number not ASCII 1-999, no leading 0")
    return int(text)


def _digits(text: str) -> str:
    if not (text.isascii() and (text.isdigit() or not text)):
        raise ShcFormatError("SHC_NUMERIC_INVALID", "not shc:/[C/N/]digits")
    return text


def numeric_to_jws(digits: str) -> str:
    """Decode the numeric QR body: each pair of digits is Ord(c) - 45."""
    if len(digits) % 2 or not digits.isdigit() or not digits.isascii():
        raise ShcFormatError("SHC_NUMERIC_INVALID", "odd length or non-digit")
    out = []
    for i in range(0, len(digits), 2):
        value = int(digits[i : i + 2])
        if value > _MAX_PAIR:
            raise ShcFormatError("SHC_NUMERIC_INVALID", f"pair {value} out of range")
        out.append(chr(value + _NUMERIC_OFFSET))
    return "".join(out)


def jws_to_numeric(jws: str) -> str:
    """Encode a compact JWS in SHC numeric mode (two digits per character)."""
    return "".join(f"{ord(c) - _NUMERIC_OFFSET:02d}" for c in jws)


def jws_to_qr_texts(jws: str, max_chunk_chars: int = 1191) -> list[str]:
    """The `shc:/` texts for a JWS, split into balanced chunks when it is too long for one QR."""
    if len(jws) <= 1195:
        return [PREFIX + jws_to_numeric(jws)]
    count = -(-len(jws) // max_chunk_chars)
    size = -(-len(jws) // count)
    parts = [jws[i : i + size] for i in range(0, len(jws), size)]
    return [f"{PREFIX}{i}/{len(parts)}/{jws_to_numeric(p)}" for i, p in enumerate(parts, 1)]


def b64url_decode(text: str) -> bytes:
    """Strict unpadded base64url (RFC 4648 section 5) decoding."""
    if not _B64URL_RE.match(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc
    # Refuse non-canonical encodings (non-zero unused bits): otherwise one signed card would have
    # several texts, and a JWS-hash credential id could be varied at will.
    if b64url_encode(data) != text:
        raise ValueError("non-canonical base64url")
    return data


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def inflate_raw(data: bytes, max_out: int = MAX_INFLATED_BYTES) -> bytes:
    """Raw DEFLATE (no zlib header) with a hard cap on output: a bomb fails, never allocates."""
    inflater = zlib.decompressobj(-15)
    try:
        # Ask for one byte more than allowed: getting it proves the output is too large.
        out = inflater.decompress(data, max_out + 1)
    except zlib.error as exc:
        raise ShcFormatError("SHC_INFLATE_FAILED", str(exc)) from None
    if len(out) > max_out:
        raise ShcFormatError("SHC_PAYLOAD_TOO_LARGE", f"> {max_out} bytes")
    if not inflater.eof:
        raise ShcFormatError("SHC_INFLATE_FAILED", "truncated stream")
    if inflater.unused_data:  # bytes after the end of the DEFLATE stream: not part of the card
        raise ShcFormatError("SHC_INFLATE_FAILED", "bytes after the end of the stream")
    return out


def deflate_raw(data: bytes) -> bytes:
    """Raw DEFLATE, as issuers compress SHC payloads."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    return deflater.compress(data) + deflater.flush()


def jwk_thumbprint(jwk: dict[str, Decoded]) -> str:
    """RFC 7638 SHA-256 thumbprint of an EC public JWK, base64url: the SHC `kid`."""
    members = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def public_key_from_jwk(jwk: dict[str, Decoded]) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from an EC JWK; raises ValueError on anything else (or a private key)."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or "d" in jwk:
        raise ValueError("not a public P-256 EC JWK")
    x, y = b64url_decode(str(jwk.get("x", ""))), b64url_decode(str(jwk.get("y", "")))
    # RFC 7518 wants full 32-byte coordinates, but some deployed issuers drop a leading zero
    # byte; the integer value is the same and the point is still validated on the curve.
    if not (30 <= len(x) <= 32 and 30 <= len(y) <= 32):
        raise ValueError("bad P-256 coordinate length")
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
    )
    return numbers.public_key()  # validates that the point is on the curve


def jwk_from_public_key(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The SHC-style public JWK of a P-256 key, with kid = its RFC 7638 thumbprint."""
    numbers = key.public_numbers()
    jwk: dict[str, str] = {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url_encode(numbers.x.to_bytes(32, "big")),
        "y": b64url_encode(numbers.y.to_bytes(32, "big")),
    }
    jwk.update({"kid": jwk_thumbprint(jwk), "use": "sig", "alg": "ES256"})
    return jwk


@dataclass(frozen=True)
class CompactJws:
    """The three parts of a compact JWS, with the signing input kept as it was received."""

    header: dict[str, Decoded]
    payload_raw: bytes
    signature: bytes
    signing_input: bytes


def parse_compact_jws(jws: str) -> CompactJws:
    """Split and decode `header.payload.signature`; raises ShcFormatError(SHC_JWS_MALFORMED)."""
    if len(jws) > MAX_JWS_CHARS:
        raise ShcFormatError("SHC_TOO_LARGE", f"{len(jws)} chars")
    parts = jws.split(".")
    if len(parts) != 3:
        raise ShcFormatError("SHC_JWS_MALFORMED", "not three parts")
    try:
        header = finite_json.loads(b64url_decode(parts[0]))
        payload_raw = b64url_decode(parts[1])
        signature = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ShcFormatError("SHC_JWS_MALFORMED", "bad base64url or header JSON") from None
    if not isinstance(header, dict):
        raise ShcFormatError("SHC_JWS_MALFORMED", "header not an object")
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    return CompactJws(header, payload_raw, signature, signing_input)
