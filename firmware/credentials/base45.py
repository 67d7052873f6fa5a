"""Base45 (RFC 9285) codec: the alphanumeric-QR-friendly text of HC1 (DCC) and HG1 (status) codes."""
from __future__ import annotations

import numpy as np

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
# The longest text decoded at all: a DCC text is refused past 8,192 characters with its prefix
# (status codes past 1,024); this bound holds whoever calls, and costs one comparison.
MAX_INPUT_CHARS = 8192
_TABLE = np.full(256, 255, dtype=np.uint8)
_TABLE[np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)] = np.arange(45, dtype=np.uint8)


class Base45Error(ValueError):
    """The text is not valid base45 (bad character, bad length, or a chunk out of range)."""


def b45decode(text: str) -> bytes:
    """Decode base45 text to bytes; raises Base45Error on any malformed input."""
    if not isinstance(text, str):
        raise Base45Error("base45 input must be text")
    if len(text) > MAX_INPUT_CHARS:
        raise Base45Error(f"longer than {MAX_INPUT_CHARS} characters")
    if len(text) % 3 == 1:
        raise Base45Error("base45 length leaves a dangling character")
    if not text.isascii():
        raise Base45Error("character outside the base45 alphabet")
    # Vectorised: map characters to values with a 256-entry table (255 = not in the alphabet).
    values = _TABLE[np.frombuffer(text.encode("ascii"), dtype=np.uint8)].astype(np.uint32)
    if values.size and int(values.max()) >= 45:
        raise Base45Error("character outside the base45 alphabet")
    full = len(values) - len(values) % 3
    triples = values[:full].reshape(-1, 3)
    numbers = triples[:, 0] + triples[:, 1] * 45 + triples[:, 2] * 2025
    if numbers.size and int(numbers.max()) > 0xFFFF:  # three characters encode two bytes at most
        raise Base45Error("base45 triple out of range")
    out = numbers.astype(">u2").tobytes()
    if full != len(values):
        n = int(values[full]) + int(values[full + 1]) * 45
        if n > 0xFF:
            raise Base45Error("base45 pair out of range")
        out += bytes((n,))
    return out


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
