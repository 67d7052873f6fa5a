"""Fleet signing key and the publishing of signed trust-data envelopes."""
from __future__ import annotations

import base64
import getpass
import json
import os
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.fsutil import ensure_private_dir
from firmware.protocol.decoded import Decoded
from firmware.protocol.envelope import (DEFAULT_TRUST_NAMES, TRUST_NAME_PATTERN,
                                        envelope_signing_bytes)
from firmware.protocol.events import canonical_json
from firmware.protocol.freshness import sign_statement
from firmware.protocol.keys import key_id
from firmware.protocol.timestamps import rfc3339, utc_now
from fleet.storage import Store, TrustItem

# The names the kiosk knows; other names matching TRUST_NAME_PATTERN may be published too.
KNOWN_TRUST_NAMES = DEFAULT_TRUST_NAMES


def generate_signing_key(path: Path) -> Ed25519PrivateKey:
    """Create a fleet signing key file (PKCS#8 PEM, mode 0600); refuses to overwrite."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    ensure_private_dir(path.parent)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    return key


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def build_envelope(key: Ed25519PrivateKey, name: str, version: int, content: Decoded,
                   issued_at: datetime) -> bytes:
    """Signed envelope bytes: {"name","version","issued_at","key_id","content","sig"}."""
    envelope: dict[str, Decoded] = {"name": name, "version": version, "issued_at": rfc3339(issued_at),
                                "key_id": key_id(key.public_key()), "content": content}
    envelope["sig"] = base64.b64encode(key.sign(envelope_signing_bytes(envelope))).decode()
    return canonical_json(envelope)


def freshness_header(key: Ed25519PrivateKey, item: TrustItem, checked_at: datetime) -> str:
    """The signed statement that `item`'s envelope is current at `checked_at`, sent with every
    trust answer (200 and 304) so kiosks can age their copy by it (firmware/protocol/freshness.py)."""
    return sign_statement(key, key_id(key.public_key()), item.name, item.version, item.envelope,
                          checked_at)


def publish(store: Store, key: Ed25519PrivateKey, name: str, content: Decoded,
            published_by: str | None = None) -> TrustItem:
    """Sign `content` as the next version of trust item `name` and store it for serving;
    `published_by` (default: the operating-system user) goes into the publishing history."""
    if not TRUST_NAME_PATTERN.fullmatch(name):
        raise ValueError(f"trust item name {name!r} must match {TRUST_NAME_PATTERN.pattern}")
    canonical_json(content)  # fail here, not at serving time, on content JSON cannot carry
    current = store.trust(name)
    version = 1 if current is None else current.version + 1
    now = utc_now()
    if published_by is None:
        try:
            published_by = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (a container): still publish
            published_by = "unknown"
    return store.put_trust(name, version, build_envelope(key, name, version, content, now), now,
                           published_by)


def load_content_file(path: Path) -> Decoded:
    """Read the JSON content an operator publishes; ValueError with the file name if bad."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read JSON from {path}: {error}") from error
