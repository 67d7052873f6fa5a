"""Server side of device request signing: who sent it, is it fresh, is it new."""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware.protocol.decoded import Decoded
from firmware.protocol.request_signing import (HEADER_DEVICE, HEADER_NONCE, HEADER_SIGNATURE,
                                               HEADER_TIME, verify_request)
from fleet.storage import Store

DEFAULT_SKEW_WINDOW_S = 300  # a signed request is valid this long either side of server time
NONCE_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,128}")
# Every failure that depends on the device's record (is it registered, is its key usable, did
# the signature verify, was the nonce used) gets this one answer, so that nobody can probe
# which device ids exist; the precise reason goes to the server log only.
AUTH_FAILED = "AUTH_FAILED"
AUTH_FAILED_DETAIL = "request not authenticated"


class AuthError(Exception):
    """`code`/`detail` are the answer; `reason` and `device_id` are for the server log only."""

    def __init__(self, code: str, detail: str, reason: str | None = None,
                 device_id: str | None = None) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail
        self.reason = reason or code
        self.device_id = device_id


def _opaque(reason: str, device_id: str) -> AuthError:
    return AuthError(AUTH_FAILED, AUTH_FAILED_DETAIL, reason, device_id)


@dataclass(frozen=True)
class Caller:
    device_id: str
    public_key: Ed25519PublicKey


@dataclass(frozen=True)
class RequestHeaders:
    """The signing headers, present and well-formed, with a timestamp inside the window."""

    device_id: str
    timestamp: str
    moment: datetime
    nonce: str
    signature: str


@dataclass(frozen=True)
class SignedHeaders:
    """What the headers alone establish: a known device, a fresh timestamp, an unused nonce."""

    device_id: str
    public_key: Ed25519PublicKey
    timestamp: str
    moment: datetime
    nonce: str
    signature: str


def check_request(headers: Mapping[str, str], now: datetime,
                  window_s: int = DEFAULT_SKEW_WINDOW_S) -> RequestHeaders:
    """The checks that need neither the body nor the store (cheap: run them first, inline).
    They keep their precise codes (a kiosk with a wrong clock needs to know); the checks that
    depend on the device's record (check_device, authenticate) all answer AUTH_FAILED."""
    values = {name: headers.get(name) for name in
              (HEADER_DEVICE, HEADER_TIME, HEADER_NONCE, HEADER_SIGNATURE)}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise AuthError("AUTH_MISSING", f"missing header(s): {', '.join(missing)}")
    device_id, timestamp = values[HEADER_DEVICE] or "", values[HEADER_TIME] or ""
    nonce, signature = values[HEADER_NONCE] or "", values[HEADER_SIGNATURE] or ""
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
    return RequestHeaders(device_id, timestamp, moment, nonce, signature)


def check_device(store: Store, request: RequestHeaders, now: datetime) -> SignedHeaders:
    """The checks against the store: device registered, key usable, nonce not used. Needs no
    body, so the body of a request that cannot be authenticated is never read."""
    device_id, nonce = request.device_id, request.nonce
    public_key_b64 = store.device_key(device_id)
    if public_key_b64 is None:
        raise _opaque("AUTH_UNKNOWN_DEVICE", device_id)
    try:
        public_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
    except (binascii.Error, ValueError):
        raise _opaque("AUTH_BAD_DEVICE_KEY", device_id) from None
    if store.nonce_used(device_id, nonce, int(now.timestamp())):
        raise _opaque("AUTH_REPLAYED_NONCE", device_id)
    return SignedHeaders(device_id, public_key, request.timestamp, request.moment, nonce,
                         request.signature)


def authenticate(store: Store, headers: Mapping[str, str], method: str, path: str, body: bytes,
                 now: datetime, window_s: int = DEFAULT_SKEW_WINDOW_S,
                 status: Mapping[str, Decoded] | None = None,
                 prechecked: SignedHeaders | None = None) -> Caller:
    """Check headers, device, freshness and signature, then burn the nonce and note the device
    as seen (with what `status` says of it) in one transaction. Raises AuthError.

    `prechecked` is what `check_device` found for these headers before the body was read (the
    admission middleware): the store is then not asked again; the timestamp is checked again
    (the body may have taken a while) and `use_nonce` stays the authority on the nonce and on
    a device revoked meanwhile."""
    request = check_request(headers, now, window_s)
    signed = (prechecked if prechecked is not None
              and (prechecked.device_id, prechecked.nonce, prechecked.timestamp,
                   prechecked.signature) == (request.device_id, request.nonce,
                                             request.timestamp, request.signature)
              else check_device(store, request, now))
    if not verify_request(signed.public_key, method, path, body, signed.timestamp, signed.nonce,
                          signed.signature):
        raise _opaque("AUTH_BAD_SIGNATURE", signed.device_id)
    # Only a correctly signed request may burn a nonce. It is remembered until its timestamp
    # leaves the window, after which the timestamp check alone refuses a replay.
    expires = int(signed.moment.astimezone(timezone.utc).timestamp()) + window_s + 1
    if not store.use_nonce(signed.device_id, signed.nonce, expires, int(now.timestamp()), now,
                           dict(status or {})):
        # (the log's reason only: a device revoked while its body was read is also refused)
        revoked = store.device_key(signed.device_id) is None
        raise _opaque("AUTH_UNKNOWN_DEVICE" if revoked else "AUTH_REPLAYED_NONCE",
                      signed.device_id)
    return Caller(signed.device_id, signed.public_key)
