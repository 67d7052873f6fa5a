"""Ed25519 public keys as the wire carries them: base64 of the raw 32 bytes, and their short id."""
from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def public_key_b64(key: Ed25519PrivateKey) -> str:
    """The public half of `key` as devices register it and operators pin it."""
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def public_key_from_b64(value: str) -> Ed25519PublicKey:
    """A pinned fleet key as provisioning stores it: base64 of the raw 32 bytes."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError("fleet public key is not base64") from error
    if len(raw) != 32:
        raise ValueError("fleet public key must be 32 raw bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short id of a fleet key: hex SHA-256 of the raw public key, first 16 characters."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]
