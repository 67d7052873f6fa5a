"""Event ingest: check each event's signature, hash and chain links; store each exactly once.

Events may arrive in any order (live decisions first, the backlog behind them), so a link is
checked whenever both of its ends are present: against the stored neighbours and against events
accepted earlier in the same batch. A different event for an already stored (device, seq) is a
fork or forgery: rejected and recorded as an incident, never stored.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware.protocol import events as schema
from firmware.protocol.decoded import Decoded
from firmware.protocol.event_codec import (GENESIS_HASH, LOG_RESTARTED_KIND, Event, check_event,
                                           check_link)
from firmware.protocol.timestamps import rfc3339, utc_now
from fleet.dashboard.schema import update_aggregates
from fleet.storage import Store, event_row, record_incident, row_to_event

MAX_BATCH_EVENTS = 1000  # also bounds the IN (...) lists below well inside SQLite's limits


@dataclass
class IngestResult:
    acked: list[int] = field(default_factory=list)
    duplicates: int = 0
    rejected: list[dict[str, Decoded]] = field(default_factory=list)

    def as_json(self) -> dict[str, Decoded]:
        return {"acked": sorted(self.acked), "duplicates": self.duplicates,
                "rejected": sorted(self.rejected, key=lambda r: r["seq"])}


def ingest(store: Store, device_id: str, public_key: Ed25519PublicKey,
           events: list[Event]) -> IngestResult:
    """Verify and store a batch from one device; the result is only returned after commit."""
    # Signature checks are CPU work: done before taking the device's write lock.
    own_failure = {id(e): _own_failure(e, device_id, public_key) for e in events}
    result = IngestResult()
    received_at = rfc3339(utc_now())
    with store.transaction() as tx:
        tx.lock_device(device_id)
        wanted = sorted({n for e in events for n in (e.seq - 1, e.seq, e.seq + 1) if n >= 0})
        known: dict[int, Event] = {}
        for start in range(0, len(wanted), 900):
            chunk = wanted[start:start + 900]
            marks = ",".join("?" * len(chunk))
            rows = tx.execute("SELECT device_id, seq, ts, kind, body, prev_hash, hash, sig "
                              f"FROM events WHERE device_id = ? AND seq IN ({marks})",
                              (device_id, *chunk)).fetchall()
            known.update({int(r[1]): row_to_event(r) for r in rows})
        genesis_row = tx.execute("SELECT MIN(seq) FROM events WHERE device_id = ? AND "
                                 "prev_hash = ?", (device_id, GENESIS_HASH)).fetchone()
        genesis_seq = None if genesis_row[0] is None else int(genesis_row[0])
        lowest_row = tx.execute("SELECT MIN(seq) FROM events WHERE device_id = ?",
                                (device_id,)).fetchone()
        lowest_seq = None if lowest_row[0] is None else int(lowest_row[0])

        new_rows, stored_events = [], []
        for event in sorted(events, key=lambda e: e.seq):
            reason = own_failure[id(event)]
            stored = known.get(event.seq)
            if reason is None and stored is not None:
                if stored.hash == event.hash:
                    result.duplicates += 1
                    result.acked.append(event.seq)
                    continue
                reason = "EVENT_FORK"
            if reason is None:
                reason = _link_failure(event, known, genesis_seq, lowest_seq)
            if reason is not None:
                result.rejected.append({"seq": event.seq, "reason": reason})
                record_incident(tx, device_id, event.seq, reason,
                                f"hash={event.hash[:16]}", received_at)
                continue
            known[event.seq] = event
            if event.prev_hash == GENESIS_HASH and genesis_seq is None:
                genesis_seq = event.seq
            if _is_restart(event, lowest_seq):
                # Not an error, but the fleet must see it: events the kiosk had not uploaded
                # before it lost its log are gone (the gap after the previous chain's end).
                record_incident(tx, device_id, event.seq, "EVENT_LOG_RESTARTED",
                                f"hash={event.hash[:16]}", received_at)
            lowest_seq = event.seq if lowest_seq is None else min(lowest_seq, event.seq)
            new_rows.append(event_row(event, received_at))
            stored_events.append(event)
            result.acked.append(event.seq)
        if new_rows:
            tx.executemany("INSERT INTO events (device_id, seq, ts, kind, body, prev_hash, hash, "
                           "sig, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", new_rows)
            update_aggregates(tx, device_id, stored_events, received_at)  # dashboard counts
    return result


def _own_failure(event: Event, device_id: str, public_key: Ed25519PublicKey) -> str | None:
    """What is wrong with the event on its own, before looking at its neighbours."""
    if event.device_id != device_id:
        return "EVENT_WRONG_DEVICE"
    if event.seq < 0:
        return "EVENT_BAD_SEQ"
    if event.seq == 0 and event.prev_hash != GENESIS_HASH:
        return "EVENT_CHAIN_BROKEN"
    # NaN, Infinity or 1e400 in the body (marked by the parser, see parse_batch) leaves no
    # canonical form to check the signature against: such an event is refused by the schema
    # alone, which names the first rule it breaks in the same order as the kiosk.
    marked = schema.has_non_finite(event.body)
    if not marked:
        failure = check_event(event, public_key)
        if failure is not None:
            return failure
    try:
        # The shared schema, exactly as the kiosk's append applies it (known kinds and their
        # fields, finite numbers, depth, size, no personal data, a sane time): the fleet's
        # long-term store holds nothing the kiosk would have refused.
        schema.check_event(event.kind, event.body, event.ts)
    except schema.EventRejected as rejected:
        return rejected.reason
    if marked:  # the schema refuses every marker; this only keeps it so if that ever changed
        return schema.NOT_FINITE
    return None


def _is_restart(event: Event, lowest_seq: int | None) -> bool:
    """A kiosk that lost its log (its key kept) starts a new chain numbered past everything it
    may have numbered before, with a signed `log_restarted` event first. Collisions with stored
    events are still forks, and links to stored neighbours are still checked."""
    return (event.prev_hash == GENESIS_HASH and event.kind == LOG_RESTARTED_KIND
            and lowest_seq is not None and lowest_seq < event.seq)


def _link_failure(event: Event, known: dict[int, Event], genesis_seq: int | None,
                  lowest_seq: int | None) -> str | None:
    """Check the links to whichever neighbours are present; a chain has one start, or a later
    one after a log restart."""
    previous = known.get(event.seq - 1)
    if previous is not None:
        failure = check_link(previous, event)
        if failure:
            return failure
    following = known.get(event.seq + 1)
    if following is not None:
        failure = check_link(event, following)
        if failure:
            return failure
    if _is_restart(event, lowest_seq):
        return None  # its neighbours' links were checked above
    if event.prev_hash == GENESIS_HASH and lowest_seq is not None and lowest_seq < event.seq:
        return "EVENT_CHAIN_BROKEN"  # claims to start the chain, but older events exist
    if genesis_seq is not None and event.seq < genesis_seq:
        return "EVENT_CHAIN_BROKEN"  # older than the device's first event
    return None
