"""Signed freshness statements: the fleet's signed word that a kiosk's copy of a trust item is current.

A `304 Not Modified` carries no signature, so on its own it cannot tell a kiosk that its copy
is still current: anyone on the path could replay one. The fleet therefore answers every trust
request (200 and 304) with the header `X-Trust-Freshness`, a base64url canonical JSON object

  {"name", "version", "sha256" (hex, of the exact envelope bytes), "checked_at" (RFC 3339),
   "key_id", "sig"}

with `sig` = base64 Ed25519 by the fleet key over canonical_json of the other fields. The kiosk
takes an item's confirmation time from it (or, without a valid one, from the envelope's signed
`issued_at`), never from its own clock at the moment an unsigned answer arrived. A replayed
statement carries the time it was made, so replaying one gains nothing.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from datetime import datetime, timezone
from typing import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware.protocol.decoded import Decoded
from firmware.protocol.events import canonical_json
from firmware.protocol.timestamps import rfc3339

FRESHNESS_HEADER = "X-Trust-Freshness"
STATEMENT_FIELDS = ("name", "version", "sha256", "checked_at", "key_id")
# A statement is ~300 characters; a longer header is not parsed at all (hostile input bound).
MAX_STATEMENT_CHARS = 2048


def statement_signing_bytes(statement: Mapping[str, Decoded]) -> bytes:
    return canonical_json({field: statement[field] for field in STATEMENT_FIELDS})


def sign_statement(key: Ed25519PrivateKey, key_id: str, name: str, version: int,
                   envelope: bytes, checked_at: datetime) -> str:
    """The header value stating that `envelope` is item `name`'s current copy at `checked_at`."""
    statement: dict[str, Decoded] = {"name": name, "version": version,
                                 "sha256": hashlib.sha256(envelope).hexdigest(),
                                 "checked_at": rfc3339(checked_at), "key_id": key_id}
    statement["sig"] = base64.b64encode(key.sign(statement_signing_bytes(statement))).decode()
    return base64.urlsafe_b64encode(canonical_json(statement)).decode("ascii").rstrip("=")


def verify_statement(header: str | None, pinned: Mapping[str, Ed25519PublicKey], name: str,
                     version: int, envelope: bytes) -> datetime | None:
    """When the fleet confirmed that `envelope` (version `version` of `name`) is current, from
    a statement signed by a pinned key (`pinned`: key id -> key); None when there is no valid
    statement for exactly these bytes."""
    if not header or len(header) > MAX_STATEMENT_CHARS:
        return None
    try:
        statement = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        return None
    if not isinstance(statement, dict) or not isinstance(statement.get("sig"), str) \
            or any(field not in statement for field in STATEMENT_FIELDS):
        return None
    key = pinned.get(statement["key_id"]) if isinstance(statement["key_id"], str) else None
    if key is None:
        return None
    try:
        key.verify(base64.b64decode(statement["sig"], validate=True),
                   statement_signing_bytes(statement))
    except (InvalidSignature, binascii.Error, ValueError, UnicodeEncodeError):
        return None
    if statement["name"] != name or statement["version"] != version \
            or statement["sha256"] != hashlib.sha256(envelope).hexdigest():
        return None  # a genuine statement, but about other bytes
    return parse_time(statement["checked_at"])


def parse_time(value: Decoded) -> datetime | None:
    """An aware UTC datetime from RFC 3339 text; None when unreadable or not finite."""
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
    return stamp if math.isfinite(stamp.timestamp()) else None


def confirmed_at(header: str | None, pinned: Mapping[str, Ed25519PublicKey],
                 envelope: Mapping[str, Decoded], raw: bytes, now: datetime) -> tuple[datetime, str]:
    """(when the copy `raw` counts as last confirmed, "statement" or "issued_at").

    The signed statement's time when there is one (a server that predates statements sends
    none), else the envelope's signed `issued_at`; never later than the kiosk's `now`, so a
    fleet clock ahead of the kiosk's cannot make data look younger than it is.
    """
    stated = verify_statement(header, pinned, str(envelope["name"]), int(envelope["version"]), raw)
    source = "statement"
    if stated is None:
        stated, source = parse_time(envelope.get("issued_at")), "issued_at"
    if stated is None:  # cannot happen for a verified envelope; fail towards "old"
        return datetime.fromtimestamp(0, timezone.utc), source
    return min(stated, now), source
