"""Pure codec for signed, hash-chained events: canonical bytes, hash, signature, verification."""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from json.encoder import encode_basestring

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware.protocol.decoded import Decoded
from firmware.protocol.events import canonical_json

GENESIS_HASH = "0" * 64  # prev_hash of a device's first event
# Kind of the first event of a log created anew by a kiosk that kept its key but lost its log:
# a second chain start that the fleet accepts (see fleet/ingest.py).
LOG_RESTARTED_KIND = "log_restarted"


@dataclass(frozen=True)
class Event:
    """One signed event as stored on the kiosk and sent on the wire."""

    device_id: str
    seq: int
    ts: str  # RFC 3339 UTC, e.g. "2026-11-26T08:00:00.123Z"
    kind: str
    body: dict[str, Decoded]
    prev_hash: str  # hex SHA-256 of the previous event's signed content, GENESIS_HASH first
    hash: str  # hex SHA-256 of signed_content()
    sig: str  # base64 Ed25519 signature over signed_content()

    def to_wire(self) -> dict[str, Decoded]:
        return {
            "device_id": self.device_id, "seq": self.seq, "ts": self.ts, "kind": self.kind,
            "body": self.body, "prev_hash": self.prev_hash, "hash": self.hash, "sig": self.sig,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Decoded]) -> "Event":
        """Parse a wire dict; raises ValueError naming the first bad field."""
        fields = {"device_id": str, "seq": int, "ts": str, "kind": str, "body": dict,
                  "prev_hash": str, "hash": str, "sig": str}
        for name, kind in fields.items():
            value = data.get(name)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"event field {name!r} missing or not {kind.__name__}")
        return cls(**{name: data[name] for name in fields})


def signed_content(device_id: str, seq: int, ts: str, kind: str, body: dict[str, Decoded],
                   prev_hash: str) -> bytes:
    """The exact bytes that are hashed and signed for an event."""
    return canonical_json({"device_id": device_id, "seq": seq, "ts": ts, "kind": kind,
                           "body": body, "prev_hash": prev_hash})


def signed_content_from_text(device_id: str, seq: int, ts: str, kind: str, body_text: str,
                             prev_hash: str) -> bytes:
    """signed_content() for a body already in canonical text: the same bytes, built without
    encoding the body a second time. The keys are written in sorted order, and JSON encodes a
    nested value exactly as it encodes that value alone, so the result is byte-identical
    (tests/test_eventlog_codec.py checks it against signed_content on arbitrary bodies)."""
    if type(seq) is not int:  # bool and int subclasses: let the encoder decide, as before
        return signed_content(device_id, seq, ts, kind, json.loads(body_text), prev_hash)
    quote = encode_basestring  # the encoder's own string escaping when ensure_ascii=False
    return (f'{{"body":{body_text},"device_id":{quote(device_id)},"kind":{quote(kind)},'
            f'"prev_hash":{quote(prev_hash)},"seq":{int.__repr__(seq)},"ts":{quote(ts)}}}'
            ).encode()


def make_event(key: Ed25519PrivateKey, device_id: str, seq: int, ts: str, kind: str,
               body: dict[str, Decoded], prev_hash: str, body_text: str | None = None) -> Event:
    """Sign and hash a new event. `body_text`, when given, must be canonical_json(body)
    decoded: then the body is not encoded again."""
    content = (signed_content(device_id, seq, ts, kind, body, prev_hash) if body_text is None
               else signed_content_from_text(device_id, seq, ts, kind, body_text, prev_hash))
    return Event(device_id=device_id, seq=seq, ts=ts, kind=kind, body=body, prev_hash=prev_hash,
                 hash=hashlib.sha256(content).hexdigest(),
                 sig=base64.b64encode(key.sign(content)).decode())


def check_event(event: Event, public_key: Ed25519PublicKey) -> str | None:
    """Check an event's own hash and signature. Returns None when good, else a reason code."""
    content = signed_content(event.device_id, event.seq, event.ts, event.kind, event.body,
                             event.prev_hash)
    if hashlib.sha256(content).hexdigest() != event.hash:
        return "EVENT_HASH_MISMATCH"
    try:
        public_key.verify(base64.b64decode(event.sig, validate=True), content)
    except (InvalidSignature, ValueError):
        return "EVENT_BAD_SIGNATURE"
    return None


def check_link(previous: Event, event: Event) -> str | None:
    """Check that `event` follows `previous` in one device's chain. None when good."""
    if event.device_id != previous.device_id:
        return "EVENT_WRONG_DEVICE"
    if event.seq != previous.seq + 1:
        return "EVENT_SEQ_GAP"
    if event.prev_hash != previous.hash:
        return "EVENT_CHAIN_BROKEN"
    return None
