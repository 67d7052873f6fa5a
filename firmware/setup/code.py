"""Provisioning codes (`HGP1:`): build, and check against the pinned fleet key before reading.

Text: `HGP1:` + base64url(payload) + `.` + base64url(signature), no padding. The payload is
canonical JSON {"v": 1, "id", "url", "token", "fp", "exp"}; the signature is Ed25519 by the
fleet signing key (the key kiosks pin) over b"HGP1:" + payload, so no other signed object of
the fleet (an envelope, a freshness statement) can pass for a code. See docs/provisioning.md.
"""
from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware.protocol import finite_json
from firmware.protocol.codederror import CodedError
from firmware.protocol.events import canonical_json
from firmware.protocol.keys import key_id

PREFIX = "HGP1:"
MAX_CODE_CHARS = 1024  # a real code is ~300; anything longer is refused before decoding
MAX_FIELD_CHARS = 256  # url and token
FORMAT_VERSION = 1
CODE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


class ProvisionCodeError(CodedError):
    """A refused code; `code` is a stable reason code (firmware/credentials/reasons.py)."""


@dataclass(frozen=True)
class ProvisionCode:
    """A checked code: every field came from a payload signed by the pinned fleet key."""

    code_id: str
    fleet_url: str
    token: str
    fingerprint: str
    expires_at: int  # NumericDate (seconds since the epoch, UTC)


def is_provision_code(text: str) -> bool:
    return text[:len(PREFIX)].upper() == PREFIX


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64url(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def build_code(key: Ed25519PrivateKey, code_id: str, fleet_url: str, token: str,
               expires_at: datetime) -> str:
    """The signed code text for a QR (the fleet side)."""
    payload = canonical_json({"v": FORMAT_VERSION, "id": code_id, "url": fleet_url,
                              "token": token, "fp": key_id(key.public_key()),
                              "exp": int(expires_at.timestamp())})
    signature = key.sign(PREFIX.encode() + payload)
    return f"{PREFIX}{_b64url(payload)}.{_b64url(signature)}"


def check_code(text: str, pinned: Ed25519PublicKey | None, now: datetime) -> ProvisionCode:
    """The code's fields, or ProvisionCodeError. Order: size, signature, then fields."""
    if pinned is None:
        raise ProvisionCodeError("PROVISION_NO_FLEET_KEY", "no fleet key pinned on this kiosk")
    if len(text) > MAX_CODE_CHARS:
        raise ProvisionCodeError("PROVISION_CODE_TOO_LARGE", f"{len(text)} characters")
    if not is_provision_code(text):
        raise ProvisionCodeError("PROVISION_CODE_MALFORMED", "not an HGP1: code")
    body, dot, sig_text = text[len(PREFIX):].partition(".")
    try:
        payload, signature = _unb64url(body), _unb64url(sig_text)
    except (ValueError, binascii.Error):
        raise ProvisionCodeError("PROVISION_CODE_MALFORMED", "not base64url") from None
    if not dot or len(signature) != 64:
        raise ProvisionCodeError("PROVISION_CODE_MALFORMED", "no signature")
    try:
        pinned.verify(signature, PREFIX.encode() + payload)
    except InvalidSignature:
        raise ProvisionCodeError("PROVISION_CODE_FORGED", "not signed by the pinned fleet key") \
            from None
    # Signed by our fleet: only now is the payload interpreted.
    return _fields(payload, pinned, now)


def _fields(payload: bytes, pinned: Ed25519PublicKey, now: datetime) -> ProvisionCode:
    try:
        fields = finite_json.loads(payload)
    except ValueError:
        raise ProvisionCodeError("PROVISION_CODE_MALFORMED", "payload is not JSON") from None
    if not isinstance(fields, dict) or fields.get("v") != FORMAT_VERSION:
        raise ProvisionCodeError("PROVISION_CODE_MALFORMED", "unknown payload version")
    code_id, url, token, fp, exp = (fields.get(name) for name in ("id", "url", "token", "fp", "exp"))
    if not (isinstance(code_id, str) and CODE_ID_PATTERN.fullmatch(code_id)
            and isinstance(url, str) and 0 < len(url) <= MAX_FIELD_CHARS
            and isinstance(token, str) and 0 < len(token) <= MAX_FIELD_CHARS
            and isinstance(fp, str)):
        raise ProvisionCodeError("PROVISION_CODE_MALFORMED", "field types")
    if not isinstance(exp, int) or isinstance(exp, bool) or not math.isfinite(exp) \
            or not 0 < exp < 2 ** 40:
        raise ProvisionCodeError("PROVISION_CODE_MALFORMED", "exp is not a NumericDate")
    if fp != key_id(pinned):
        raise ProvisionCodeError("PROVISION_CODE_WRONG_FLEET", "fingerprint is not the pinned key's")
    try:
        parts = urlsplit(url)
        host = parts.hostname if parts.scheme in ("http", "https") else None
    except ValueError:
        host = None
    if not host:
        raise ProvisionCodeError("PROVISION_CODE_MALFORMED", "fleet URL")
    if now.timestamp() >= exp:
        raise ProvisionCodeError("PROVISION_CODE_EXPIRED", f"expired at {exp}")
    return ProvisionCode(code_id, url, token, fp, exp)
