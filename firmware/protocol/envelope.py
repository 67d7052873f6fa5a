"""Signed trust envelopes: the names kiosks fetch, the signed bytes, and the pinned-key check.

Envelope (canonical JSON, see docs/fleet-api.md):
  {"name", "version", "issued_at", "key_id", "content", "sig"}
with `sig` = base64 Ed25519 over canonical_json of every other field, by a fleet key that the
kiosk pinned at provisioning. The fleet server signs with the same bytes. The signature is
checked before the content is used, and the name must be the one asked for.
"""
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware.protocol import finite_json
from firmware.protocol.codederror import CodedError
from firmware.protocol.decoded import Decoded
from firmware.protocol.events import canonical_json
from firmware.protocol.keys import key_id
from firmware.protocol.numericdate import NumericDateError, iso_time

DEFAULT_TRUST_NAMES = ("dcc-signers", "dcc-rules", "dcc-valuesets", "dcc-revocation",
                       "shc-issuers", "nzcp-issuers", "status-records")
TRUST_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
ENVELOPE_SIGNED_FIELDS = ("name", "version", "issued_at", "key_id", "content")
# The fleet keys a kiosk pinned at provisioning, as the trust loaders take them (None: no key
# pinned, so every envelope is refused).
PinnedKeys = Sequence[Ed25519PublicKey] | None


class EnvelopeError(CodedError):
    """An envelope refused; `code` is a stable reason code (TRUST_BAD_SIGNATURE...)."""


def envelope_signing_bytes(envelope: dict[str, Decoded]) -> bytes:
    return canonical_json({field: envelope[field] for field in ENVELOPE_SIGNED_FIELDS})


def verify_envelope(raw: bytes, pinned: Sequence[Ed25519PublicKey],
                    expected_name: str | None = None) -> dict[str, Decoded]:
    """Check an envelope against the pinned keys; returns it parsed, or raises EnvelopeError."""
    try:
        envelope = finite_json.loads(raw)  # no NaN/Infinity literals, no 1e400
    except ValueError as error:
        raise EnvelopeError("TRUST_MALFORMED", "envelope is not JSON") from error
    if not isinstance(envelope, dict) or not isinstance(envelope.get("sig"), str) \
            or any(field not in envelope for field in ENVELOPE_SIGNED_FIELDS):
        raise EnvelopeError("TRUST_MALFORMED", "envelope fields missing")
    keys = {key_id(key): key for key in pinned}
    key = keys.get(envelope["key_id"]) if isinstance(envelope["key_id"], str) else None
    if key is None:
        raise EnvelopeError("TRUST_UNKNOWN_KEY", "signed by a key that is not pinned")
    try:
        key.verify(base64.b64decode(envelope["sig"], validate=True),
                   envelope_signing_bytes(envelope))
    except (InvalidSignature, binascii.Error, ValueError, UnicodeEncodeError) as error:
        raise EnvelopeError("TRUST_BAD_SIGNATURE", "envelope signature invalid") from error
    # Only now, with the signature good, are the fields trusted enough to look at.
    version = envelope["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1 \
            or not isinstance(envelope["name"], str) or not isinstance(envelope["issued_at"], str):
        raise EnvelopeError("TRUST_MALFORMED", "envelope field types")
    try:
        iso_time(envelope["issued_at"], "issued_at")
    except NumericDateError:
        raise EnvelopeError("TRUST_MALFORMED", "envelope issued_at is not a time") from None
    if expected_name is not None and envelope["name"] != expected_name:
        raise EnvelopeError("TRUST_WRONG_NAME", f"asked for {expected_name}")
    return envelope
