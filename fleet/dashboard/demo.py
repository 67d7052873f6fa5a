"""A demo fleet for the dashboard (tests, screenshots, `demo --serve`, the bench): real signed
chains ingested through the real ingest, with healthy, faulted, offline and flagged kiosks."""
from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.protocol.decoded import Decoded
from firmware.protocol.event_codec import GENESIS_HASH, Event, make_event
from fleet.ingest import ingest
from fleet.tokens import new_token

if TYPE_CHECKING:
    from fleet.storage import Store

REASONS = ("DCC_EXPIRED", "SIGNATURE_INVALID", "NO_FACE", "UNKNOWN_FORMAT")
DEMO_FIRMWARE = "0.1.0"


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def register(store: Store, device_id: str, now: datetime) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    token = new_token(16)
    store.add_token(token, now + timedelta(hours=1))
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    outcome = store.register(token, device_id, base64.b64encode(raw).decode(), now)
    if outcome != "created":
        raise RuntimeError(f"demo device {device_id}: {outcome}")
    return key


def chain(key: Ed25519PrivateKey, device_id: str, start: datetime, decisions: int,
          fault: str | None = None, recovered: bool = False, spacing_s: float = 300.0,
          firmware: str = DEMO_FIRMWARE) -> list[Event]:
    """boot, `decisions` decisions every `spacing_s`, then optionally a fault (and recovery)."""
    bodies: list[tuple[str, dict[str, Decoded]]] = [("boot", {"firmware": firmware})]
    for index in range(decisions):
        granted = index % 4 != 3
        bodies.append(("decision", {"decision": "granted" if granted else "denied",
                                    "reason": None if granted else REASONS[(index // 4) % len(REASONS)],
                                    "format": "dcc"}))
    if fault is not None:
        bodies.append(("fault", {"part": "camera", "problem": fault}))
        if recovered:
            bodies.append(("recovered", {"part": "camera"}))
    events, prev = [], GENESIS_HASH
    for seq, (kind, body) in enumerate(bodies, start=1):
        moment = start + timedelta(seconds=spacing_s * (seq - 1))
        event = make_event(key, device_id, seq, _ts(moment), kind, body, prev)
        events.append(event)
        prev = event.hash
    return events


def seed_demo_fleet(store: Store, now: datetime | None = None,
                    names: dict[str, str] | None = None) -> dict[str, str]:
    """Register and fill a small fleet; returns device id -> what it shows. `names` may rename
    the roles (tests use hostile names)."""
    now = now or datetime.now(timezone.utc)
    roles = {"healthy": "shop-12-door", "faulted": "shop-7-entrance", "offline": "mall-3-west",
             "flagged": "depot-1-gate", **(names or {})}
    start = now - timedelta(hours=6)
    plans = {"healthy": dict(decisions=60), "faulted": dict(decisions=40, fault="fake camera: device disconnected"),
             "offline": dict(decisions=20), "flagged": dict(decisions=30, fault="no frame within 1 s", recovered=True)}
    for role, plan in plans.items():
        device_id = roles[role]
        key = register(store, device_id, now)
        events = chain(key, device_id, start, **plan)  # type: ignore[arg-type]
        # newest first: the kiosk uploads live decisions before its backlog, three still to come
        keep = events[:-6] + events[-3:] if role == "healthy" else events
        ingest(store, device_id, key.public_key(), keep)
        if role == "flagged":  # a second history for seq 5: a cloned key or a forgery
            forged = make_event(key, device_id, 5, events[4].ts, "decision",
                                {"decision": "granted", "reason": None, "format": "shc"},
                                events[3].hash)
            ingest(store, device_id, key.public_key(), [forged])
    if "offline" in roles:  # last upload long ago
        with store.db.transaction() as tx:
            tx.execute("UPDATE device_status SET last_seen = ? WHERE device_id = ?",
                       (_ts(now - timedelta(hours=5)), roles["offline"]))
    return {roles[r]: r for r in plans}
