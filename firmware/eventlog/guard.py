"""The kiosk's append guard: the shared event schema's decision, in the log's reason codes.

What an event may hold is decided by `firmware/protocol/events.py`, which the fleet's ingest
calls too, so the kiosk never logs what the fleet would refuse and the other way round. This
module keeps the log's own names (EVENTLOG_* codes, BodyRejected, check_body, prepare).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from firmware.protocol import events as schema
from firmware.protocol.decoded import Decoded
from firmware.protocol.events import (  # re-exported: the log's existing names
    FORBIDDEN_FRAGMENTS,
    FORBIDDEN_KEYS,
    FORBIDDEN_VALUE,
    KIND_PATTERN,
    MAX_BODY_DEPTH as MAX_DEPTH,
    MAX_EVENT_BODY_BYTES as MAX_BODY_BYTES,
    EventRejected,
    is_plainly_clean,
)

__all__ = ["FORBIDDEN_FRAGMENTS", "FORBIDDEN_KEYS", "FORBIDDEN_VALUE", "KIND_PATTERN",
           "MAX_BODY_BYTES", "MAX_DEPTH", "BodyRejected", "EventRejected", "Prepared",
           "check_body", "check_kind", "check_time", "is_plainly_clean", "prepare"]

# The schema's reasons as the log's stable codes (firmware/kiosk/loop.py treats BAD_BODY,
# FORBIDDEN_FIELD and BAD_KIND as refused for good; a bad time is the clock's fault and passes).
KIOSK_CODES = {
    schema.UNKNOWN_KIND: "EVENTLOG_BAD_KIND",
    schema.PERSONAL_DATA: "EVENTLOG_FORBIDDEN_FIELD",
    schema.BAD_TIME: "EVENTLOG_BAD_TIME",
}
DEFAULT_CODE = "EVENTLOG_BAD_BODY"  # not finite, too deep, too large, a bad field


class BodyRejected(EventRejected):
    """The body may not be logged; `code` is the log's stable code, `reason` the schema's, the
    message names the key path (never the value)."""

    def __init__(self, code: str, message: str, reason: str = schema.BAD_FIELD) -> None:
        super().__init__(reason, message)
        self.code = code

    @classmethod
    def of(cls, rejected: EventRejected) -> "BodyRejected":
        return cls(KIOSK_CODES.get(rejected.reason, DEFAULT_CODE), str(rejected),
                   rejected.reason)


def check_kind(kind: object) -> None:
    try:
        schema.check_kind(kind)
    except EventRejected as rejected:
        raise BodyRejected.of(rejected) from None


def check_body(body: object, path: str = "body", depth: int = 0) -> None:
    """Raise BodyRejected for a forbidden key or value, or for values JSON cannot carry exactly
    (the schema's careful walk, whatever the kind)."""
    try:
        schema.check_values(body, path, depth)
    except EventRejected as rejected:
        raise BodyRejected.of(rejected) from None


def check_time(ts: str) -> None:
    """The time the log is about to stamp on an event (the fleet checks the same)."""
    try:
        schema.check_time(ts)
    except EventRejected as rejected:
        raise BodyRejected.of(rejected) from None


@dataclass(frozen=True)
class Prepared:
    """A body that may be logged, ready to sign and store once its seq is known."""

    kind: str
    body: dict[str, Decoded]  # parsed back from `text`: exactly what is signed and returned
    text: str  # canonical JSON of the body


def prepare(kind: object, body: object) -> Prepared:
    """Check kind and body against the shared schema and encode the body: all of an append
    that needs no lock. Raises BodyRejected with the reason code."""
    try:
        text = schema.check_body(kind, body)
    except EventRejected as rejected:
        raise BodyRejected.of(rejected) from None
    # What is stored is exactly what is signed and returned (tuples become lists etc.).
    return Prepared(str(kind), json.loads(text), text)
