"""Base45 (RFC 9285) codec: the alphanumeric-QR-friendly encoding of the compressed DCC."""
from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}


class Base45Error(ValueError):
    """The text is not valid base45 (bad character, bad length, or a chunk out of range)."""


def b45decode(text: str) -> bytes:
    """Decode base45 text to bytes; raises Base45Error on any malformed input."""
    if not isinstance(text, str):
        raise Base45Error("base45 input must be text")
    if len(text) % 3 == 1:
        raise Base45Error("base45 length leaves a dangling character")
    try:
        values = [_VALUE[ch] for ch in text]
    except KeyError:
        raise Base45Error("character outside the base45 alphabet") from None
    out = bytearray()
    full = len(values) - len(values) % 3
    for i in range(0, full, 3):
        n = values[i] + values[i + 1] * 45 + values[i + 2] * 2025
        if n > 0xFFFF:  # three characters encode at most two bytes
            raise Base45Error("base45 triple out of range")
        out += n.to_bytes(2, "big")
    if full != len(values):
        n = values[full] + values[full + 1] * 45
        if n > 0xFF:
            raise Base45Error("base45 pair out of range")
        out.append(n)
    return bytes(out)


def b45encode(data: bytes) -> str:
    """Encode bytes as base45 text."""
    chars: list[str] = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        n, c = divmod(n, 45)
        e, d = divmod(n, 45)
        chars += (ALPHABET[c], ALPHABET[d], ALPHABET[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        chars += (ALPHABET[c], ALPHABET[d])
    return "".join(chars)
