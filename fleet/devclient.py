"""A minimal signed device client: build event chains and upload batches (tests, bench, smoke)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.protocol.decoded import Decoded
from firmware.protocol.event_codec import GENESIS_HASH, Event, make_event
from firmware.protocol.request_signing import sign_request

EVENTS_PATH = "/v1/events"


def make_chain(key: Ed25519PrivateKey, device_id: str, count: int, first_seq: int = 1,
               prev_hash: str = GENESIS_HASH, kind: str = "decision") -> list[Event]:
    """`count` correctly chained, signed events starting at `first_seq`."""
    start = datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc)
    events = []
    for offset in range(count):
        seq = first_seq + offset
        moment = start + timedelta(seconds=seq)
        ts = moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        body = {"decision": "granted" if seq % 3 else "denied", "reason": None if seq % 3
                else "DCC_EXPIRED", "format": "dcc"}
        event = make_event(key, device_id, seq, ts, kind, body, prev_hash)
        events.append(event)
        prev_hash = event.hash
    return events


def batch_body(events: list[Event]) -> bytes:
    return json.dumps({"events": [event.to_wire() for event in events]}).encode()


def signed_post(session: requests.Session, base_url: str, key: Ed25519PrivateKey,
                device_id: str, body: bytes, timeout_s: float = 10.0,
                now: datetime | None = None) -> requests.Response:
    """POST a raw body to /v1/events with fresh request-signature headers."""
    headers = sign_request(key, device_id, "POST", EVENTS_PATH, body, now=now)
    headers["Content-Type"] = "application/json"
    return session.post(base_url.rstrip("/") + EVENTS_PATH, data=body, headers=headers,
                        timeout=timeout_s)


def upload(session: requests.Session, base_url: str, key: Ed25519PrivateKey, device_id: str,
           events: list[Event], timeout_s: float = 10.0) -> dict[str, Decoded]:
    """Upload one batch; returns the server's JSON answer, raises for a non-200 status."""
    response = signed_post(session, base_url, key, device_id, batch_body(events), timeout_s)
    response.raise_for_status()
    answer: dict[str, Decoded] = response.json()
    return answer
