"""Read queries of the dashboard, over the pre-aggregated tables (never a scan of all events)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from firmware.protocol.decoded import Decoded
from fleet.db import DbValue

if TYPE_CHECKING:
    from fleet.storage import Store

PAGE_SIZE = 50  # devices per page of the list
TIMELINE_EVENTS = 50  # latest events shown on a device page
CHART_HOURS = 48  # hours of decisions charted on a device page
OFFLINE_AFTER = timedelta(minutes=30)  # no upload for this long: shown as offline
FLAGGED_REASONS = ("EVENT_FORK", "EVENT_LOG_RESTARTED", "EVENT_BAD_SIGNATURE",
                   "EVENT_HASH_MISMATCH", "EVENT_CHAIN_BROKEN")


@dataclass(frozen=True)
class DeviceRow:
    device_id: str
    registered_at: str
    last_seen: str | None
    state: str  # ok | fault | offline | never seen
    faults: list[tuple[str, str]]  # (part, problem) latched according to the last events
    trust_fetched_at: str | None
    backlog: int  # sequence numbers below the newest that the fleet has not received
    firmware: str | None
    events: int
    incidents: dict[str, int]


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _row(r: DbValue, incidents: dict[str, int], now: datetime) -> DeviceRow:
    parts = json.loads(r[6] or "{}")
    faults = sorted((p, v.get("problem", "")) for p, v in parts.items() if v.get("fault"))
    seen = _parse(r[2])
    events = int(r[3] or 0)
    span = 0 if r[4] is None else int(r[5]) - int(r[4]) + 1
    if seen is None:
        state = "never seen"
    elif faults:
        state = "fault"
    elif now - seen > OFFLINE_AFTER:
        state = "offline"
    else:
        state = "ok"
    return DeviceRow(r[0], r[1], r[2], state, faults, r[7], max(span - events, 0), r[8], events,
                     incidents)


_DEVICE_SQL = ("SELECT d.device_id, d.registered_at, s.last_seen, s.events, s.min_seq, "
               "s.max_seq, s.parts, s.trust_fetched_at, s.firmware FROM devices d "
               "LEFT JOIN device_status s ON s.device_id = d.device_id")


def device_page(store: Store, page: int, now: datetime | None = None) -> tuple[list[DeviceRow], int]:
    """One page of devices (by id) and the total number of devices."""
    now = now or datetime.now(timezone.utc)
    with store.db.transaction(readonly=True) as tx:
        total = int(tx.execute("SELECT COUNT(*) FROM devices").fetchone()[0])
        rows = tx.execute(_DEVICE_SQL + " ORDER BY d.device_id LIMIT ? OFFSET ?",
                          (PAGE_SIZE, max(page, 0) * PAGE_SIZE)).fetchall()
        ids = [r[0] for r in rows]
        incidents: dict[str, dict[str, int]] = {i: {} for i in ids}
        if ids:
            marks = ",".join("?" * len(ids))
            for device_id, reason, count in tx.execute(
                    f"SELECT device_id, reason, COUNT(*) FROM incidents WHERE device_id IN ({marks}) "
                    "GROUP BY device_id, reason", ids).fetchall():
                incidents[device_id][reason] = int(count)
    return [_row(r, incidents[r[0]], now) for r in rows], total


@dataclass(frozen=True)
class DeviceDetail:
    row: DeviceRow
    hours: list[tuple[str, int, int]]  # (hour, granted, denied), oldest first
    reasons: list[tuple[str, int]]  # deny reasons, all time, most frequent first
    timeline: list[dict[str, Decoded]]  # latest events: seq, ts, kind and non-personal fields
    incidents: list[dict[str, Decoded]]


def device_detail(store: Store, device_id: str, now: datetime | None = None) -> DeviceDetail | None:
    now = now or datetime.now(timezone.utc)
    with store.db.transaction(readonly=True) as tx:
        r = tx.execute(_DEVICE_SQL + " WHERE d.device_id = ?", (device_id,)).fetchone()
        if r is None:
            return None
        counts = tx.execute("SELECT hour, decision, SUM(count) FROM decision_hours "
                            "WHERE device_id = ? AND hour >= ? GROUP BY hour, decision",
                            (device_id, (now - timedelta(hours=CHART_HOURS)).strftime("%Y-%m-%dT%H"))
                            ).fetchall()
        reasons = tx.execute("SELECT reason, SUM(count) FROM decision_hours WHERE device_id = ? "
                             "AND decision = 'denied' GROUP BY reason ORDER BY SUM(count) DESC, reason",
                             (device_id,)).fetchall()
        events = tx.execute("SELECT seq, ts, kind, body FROM events WHERE device_id = ? "
                            "ORDER BY seq DESC LIMIT ?", (device_id, TIMELINE_EVENTS)).fetchall()
        incident_rows = tx.execute("SELECT seq, reason, detail, at FROM incidents WHERE device_id = ? "
                                   "ORDER BY id DESC LIMIT 100", (device_id,)).fetchall()
    by_reason: dict[str, int] = {}
    for inc in incident_rows:
        by_reason[inc[1]] = by_reason.get(inc[1], 0) + 1
    hours: dict[str, list[int]] = {}
    for hour, decision, count in counts:
        slot = hours.setdefault(hour, [0, 0])
        slot[0 if decision == "granted" else 1] += int(count)
    return DeviceDetail(
        _row(r, by_reason, now), [(h, g, d) for h, (g, d) in sorted(hours.items())],
        [(reason or "(none)", int(n)) for reason, n in reasons],
        [_timeline_entry(e) for e in events],
        [{"seq": i[0], "reason": i[1], "detail": i[2], "at": i[3]} for i in incident_rows])


def _timeline_entry(row: DbValue) -> dict[str, Decoded]:
    """Only what a timeline needs: never the pseudonym, checks or face scores."""
    body = json.loads(row[3])
    shown = {"decision": ("decision", "reason", "format"), "fault": ("part", "problem"),
             "recovered": ("part",), "boot": ("firmware",), "event_refused": ("kind", "reason"),
             "log_restarted": ("reason",)}.get(row[2], ())
    return {"seq": int(row[0]), "ts": row[1], "kind": row[2],
            "what": " ".join(str(body[k]) for k in shown if body.get(k) is not None)}


def tokens(store: Store) -> list[dict[str, Decoded]]:
    """The newest 200 tokens (Store.tokens, as `token list` reads them), times in RFC 3339."""
    def when(t: int | None) -> str | None:
        return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(
            timespec="seconds").replace("+00:00", "Z")
    return [{"id": t.token_id, "created": when(t.created_at), "expires": when(t.expires_at),
             "used": when(t.used_at), "used_by": t.used_by}
            for t in store.tokens(newest_first=True, limit=200)]


def trust_history(store: Store) -> list[dict[str, Decoded]]:
    with store.db.transaction(readonly=True) as tx:
        rows = tx.execute("SELECT name, version, key_id, etag, published_at, published_by "
                          "FROM trust_history ORDER BY id DESC LIMIT 500").fetchall()
    return [{"name": r[0], "version": r[1], "key_id": r[2], "etag": r[3], "at": r[4], "by": r[5]}
            for r in rows]


def fleet_totals(store: Store) -> dict[str, Decoded]:
    """For /metrics: events stored, rejects by reason, devices registered and seen."""
    since = (datetime.now(timezone.utc) - OFFLINE_AFTER).strftime("%Y-%m-%dT%H:%M:%S")
    with store.db.transaction(readonly=True) as tx:
        events = tx.execute("SELECT COALESCE(SUM(events), 0) FROM device_status").fetchone()[0]
        decisions = tx.execute("SELECT decision, SUM(count) FROM decision_hours "
                               "GROUP BY decision").fetchall()
        rejects = tx.execute("SELECT reason, COUNT(*) FROM incidents GROUP BY reason").fetchall()
        devices = tx.execute("SELECT COUNT(*) FROM devices").fetchone()[0]
        seen = tx.execute("SELECT COUNT(*) FROM device_status WHERE last_seen IS NOT NULL"
                          ).fetchone()[0]
        recent = tx.execute("SELECT COUNT(*) FROM device_status WHERE last_seen >= ?",
                            (since,)).fetchone()[0]
    return {"events": int(events), "decisions": {d: int(n) for d, n in decisions},
            "rejects": {r: int(n) for r, n in rejects}, "devices": int(devices),
            "seen": int(seen), "recent": int(recent)}
