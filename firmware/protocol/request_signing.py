"""Device request signing for the fleet API: Ed25519 over method, path, time, nonce and body."""
from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import datetime, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware.protocol.timestamps import rfc3339

HEADER_DEVICE = "X-Device-Id"
HEADER_TIME = "X-Timestamp"
HEADER_NONCE = "X-Nonce"
HEADER_SIGNATURE = "X-Signature"


def request_message(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The bytes a device signs for one request (path without scheme/host, with query)."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join([method.upper(), path, timestamp, nonce, digest]).encode()


def sign_request(key: Ed25519PrivateKey, device_id: str, method: str, path: str, body: bytes,
                 now: datetime | None = None) -> dict[str, str]:
    """Headers that authenticate one request from a device."""
    timestamp = rfc3339(now or datetime.now(timezone.utc))
    nonce = secrets.token_hex(16)
    signature = key.sign(request_message(method, path, timestamp, nonce, body))
    return {HEADER_DEVICE: device_id, HEADER_TIME: timestamp, HEADER_NONCE: nonce,
            HEADER_SIGNATURE: base64.b64encode(signature).decode()}


def verify_request(public_key: Ed25519PublicKey, method: str, path: str, body: bytes,
                   timestamp: str, nonce: str, signature_b64: str) -> bool:
    """True when the signature over the request is the device's. Freshness and nonce reuse are
    the server's job (it knows the window and remembers nonces)."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(signature, request_message(method, path, timestamp, nonce, body))
    except (InvalidSignature, ValueError):
        return False
    return True
