"""Server side of device request signing: who sent it, is it fresh, is it new."""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware.sync.auth import (HEADER_DEVICE, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIME,
                                verify_request)
from fleet.storage import Store

DEFAULT_SKEW_WINDOW_S = 300  # a signed request is valid this long either side of server time
NONCE_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,128}")


class AuthError(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


@dataclass(frozen=True)
class Caller:
    device_id: str
    public_key: Ed25519PublicKey


def authenticate(store: Store, headers: Mapping[str, str], method: str, path: str, body: bytes,
                 now: datetime, window_s: int = DEFAULT_SKEW_WINDOW_S,
                 key_cache: Callable[[str], str | None] | None = None) -> Caller:
    """Check headers, device, freshness and signature, then burn the nonce. Raises AuthError."""
    values = {name: headers.get(name) for name in
              (HEADER_DEVICE, HEADER_TIME, HEADER_NONCE, HEADER_SIGNATURE)}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise AuthError("AUTH_MISSING", f"missing header(s): {', '.join(missing)}")
    device_id, timestamp = values[HEADER_DEVICE] or "", values[HEADER_TIME] or ""
    nonce, signature = values[HEADER_NONCE] or "", values[HEADER_SIGNATURE] or ""
    public_key_b64 = (key_cache or store.device_key)(device_id)
    if public_key_b64 is None:
        raise AuthError("AUTH_UNKNOWN_DEVICE", "device is not registered")
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        raise AuthError("AUTH_BAD_TIMESTAMP", "X-Timestamp is not RFC 3339") from None
    if moment.tzinfo is None:
        raise AuthError("AUTH_BAD_TIMESTAMP", "X-Timestamp has no time zone")
    if abs((now - moment).total_seconds()) > window_s:
        raise AuthError("AUTH_STALE_TIMESTAMP",
                        f"X-Timestamp is more than {window_s} s from server time; "
                        "check the device clock against GET /v1/time")
    if not NONCE_PATTERN.fullmatch(nonce):
        raise AuthError("AUTH_BAD_NONCE", "X-Nonce must be 8-128 characters [A-Za-z0-9_-]")
    try:
        public_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
    except (binascii.Error, ValueError):
        raise AuthError("AUTH_UNKNOWN_DEVICE", "stored device key unusable") from None
    if not verify_request(public_key, method, path, body, timestamp, nonce, signature):
        raise AuthError("AUTH_BAD_SIGNATURE", "request signature does not verify")
    # Only a correctly signed request may burn a nonce. It is remembered until its timestamp
    # leaves the window, after which the timestamp check alone refuses a replay.
    expires = int(moment.astimezone(timezone.utc).timestamp()) + window_s + 1
    if not store.use_nonce(device_id, nonce, expires, int(now.timestamp())):
        raise AuthError("AUTH_REPLAYED_NONCE", "this request was already seen")
    return Caller(device_id, public_key)
