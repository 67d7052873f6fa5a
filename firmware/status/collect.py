"""Gathers the status page's data from the loop's snapshot and the parts, without blocking them."""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from firmware.eventlog.outbox import upload_counts
from firmware.protocol.decoded import Decoded
from firmware.statefolder import StateFolder
from firmware.status.board import StatusBoard, iso, snapshot_dict

if TYPE_CHECKING:
    from firmware.clock import Clock
    from firmware.display.driver import Display
    from firmware.kiosk.supervisor import Supervisor
    from firmware.sync.trustworker import TrustSyncWorker
    from firmware.sync.uploader import Uploader

log = logging.getLogger(__name__)

REFRESH_S = 1.0  # however many browsers poll, the parts are asked at most this often
SQLITE_READ_TIMEOUT_S = 0.2  # a busy log makes the page show stale counts, never wait longer


@dataclass
class StatusParts:
    """The parts the page reports on; any of them may be absent (offline kiosk, tests)."""

    board: StatusBoard
    device_id: str = ""
    display: Display | None = None  # its link's counters are plain ints
    eventlog_path: Path | None = None
    quota_bytes: int | None = None
    uploader: Uploader | None = None
    trust_dir: Path | None = None
    trust_worker: TrustSyncWorker | None = None
    clock: Clock | None = None
    max_trust_age_h: float | None = None
    supervisor: Supervisor | None = None


class StatusCollector:
    """`current()` returns the whole status as JSON-ready values, cached for REFRESH_S.

    The loop's part comes from its published snapshot (no lock). The event log is counted on
    a read-only connection of its own (WAL readers never wait for the writer), the uploader is
    asked without its log counts, and trust ages come from the sync client's state file: none
    of these takes a lock the decision path holds.
    """

    def __init__(self, parts: StatusParts, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.parts = parts
        self._monotonic = monotonic
        self._lock = threading.Lock()  # only between page requests, never the loop
        self._cached: tuple[float, dict[str, Decoded]] | None = None
        self._last_log: dict[str, Decoded] = {}

    def current(self) -> dict[str, Decoded]:
        with self._lock:
            now = self._monotonic()
            if self._cached is not None and now - self._cached[0] < REFRESH_S:
                return self._cached[1]
            status = self._collect()
            self._cached = (now, status)
            return status

    def _collect(self) -> dict[str, Decoded]:
        p = self.parts
        status = snapshot_dict(p.board.snapshot())
        status["device_id"] = p.device_id
        status["generated_at"] = iso(time.time())
        status["display"] = self._display()
        status["eventlog"] = self._eventlog()
        status["uploader"] = self._uploader(status["eventlog"])
        status["trust"] = self._trust()
        status["clock"] = self._clock()
        status["workers"] = self._workers()
        return status

    def _workers(self) -> dict[str, Decoded] | None:
        """The supervised threads as of the loop's last check (a frozen tuple: no lock)."""
        supervisor = self.parts.supervisor
        if supervisor is None:
            return None
        return {health.part: health.as_dict() for health in supervisor.health()}

    def _display(self) -> dict[str, Decoded] | None:
        display = self.parts.display
        if display is None:
            return None
        link = getattr(display, "link", None)
        stats = getattr(link, "stats", None)
        rtt = getattr(link, "last_rtt_s", None)
        return {"healthy": bool(getattr(display, "healthy", False)),
                "round_trip_ms": None if rtt is None else round(rtt * 1000.0, 2),
                "requests": getattr(stats, "requests", 0),
                "retransmits": getattr(stats, "retransmits", 0),
                "ack_timeouts": getattr(stats, "ack_timeouts", 0),
                "naks": getattr(stats, "naks", 0)}

    def _eventlog(self) -> dict[str, Decoded] | None:
        path = self.parts.eventlog_path
        if path is None:
            return None
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                   timeout=SQLITE_READ_TIMEOUT_S)
            try:
                counts = upload_counts(conn)
                pages, free, page_size = (conn.execute(f"PRAGMA {name}").fetchone()[0]
                                          for name in ("page_count", "freelist_count",
                                                       "page_size"))
            finally:
                conn.close()
        except sqlite3.Error as exc:  # busy or damaged: show the last counts, say why
            log.debug("status page: event log not readable: %s", exc)
            return {**self._last_log, "error": type(exc).__name__}
        quota = self.parts.quota_bytes
        used = (pages - free) * page_size
        self._last_log = {"events": counts.events, "pending": counts.pending,
                          "rejected": counts.rejected,
                          "used_bytes": used, "quota_bytes": quota,
                          "quota_used": None if not quota else round(used / quota, 4)}
        return self._last_log

    def _uploader(self, eventlog: dict[str, Decoded] | None) -> dict[str, Decoded] | None:
        uploader = self.parts.uploader
        if uploader is None:
            return None
        st = uploader.status(counts=False)
        return {"running": st.running, "queue_depth": (eventlog or {}).get("pending"),
                "last_acked": st.last_acked, "last_upload": _iso_dt(st.last_success),
                "last_attempt": _iso_dt(st.last_attempt), "last_error": st.last_error,
                "consecutive_failures": st.consecutive_failures,
                "offline_since": _iso_dt(st.offline_since),
                "next_attempt_in_s": st.next_attempt_in_s}

    def _trust(self) -> dict[str, Decoded] | None:
        folder = self.parts.trust_dir
        if folder is None:
            return None
        items: dict[str, Decoded] = {}
        try:
            state = json.loads((folder / StateFolder.TRUST_SYNC_STATE).read_text(encoding="utf-8"))
            raw = state.get("items", {}) if isinstance(state, dict) else {}
        except (OSError, ValueError):
            raw = {}  # never synced (or an offline kiosk): no ages to show
        now = datetime.now(timezone.utc)
        for name, item in sorted(raw.items()):
            checked = item.get("checked_at") if isinstance(item, dict) else None
            try:
                age_s = (now - datetime.fromisoformat(checked)).total_seconds() if checked else None
            except (TypeError, ValueError):
                age_s = None
            items[str(name)] = {"age_s": None if age_s is None else round(age_s, 1),
                                "version": item.get("version") if isinstance(item, dict) else None}
        worker = self.parts.trust_worker
        next_at = getattr(worker, "next_round_at", None) if worker is not None else None
        return {"items": items, "next_refresh": _iso_dt(next_at),
                "max_age_h": self.parts.max_trust_age_h,
                "last_errors": list(getattr(worker, "last_errors", []) or [])}

    def _clock(self) -> dict[str, Decoded] | None:
        clock = self.parts.clock
        if clock is None:
            return None
        problem = clock.trust_problem()
        return {"trusted": problem is None, "problem": problem,
                "skew_s": None if clock.skew_s is None else round(clock.skew_s, 3),
                "now": iso(clock.now().timestamp())}


def _iso_dt(value: datetime | None) -> str | None:
    return None if value is None else iso(value.timestamp())
