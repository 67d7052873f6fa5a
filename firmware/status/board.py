"""The loop's published snapshot: state, faults and today's decision counts, swapped atomically."""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Mapping

from firmware.protocol.decoded import Decoded

RECENT_FAULTS = 20  # faults kept for the page (latched and cleared), newest last
TICK_PUBLISH_S = 0.5  # the camera counters are republished at most this often from the tick
MAX_REASON_KEYS = 64  # reason codes counted per day; more are folded into "OTHER" (bounded memory)
OTHER_REASON = "OTHER"


@dataclass(frozen=True)
class FaultRecord:
    """One latched fault: the part, what was wrong, when it latched and (once) cleared."""

    part: str
    problem: str
    since: float  # wall clock, seconds since the epoch
    cleared: float | None = None


@dataclass(frozen=True)
class LoopSnapshot:
    """What the loop knows, frozen: readers on other threads never see it change under them."""

    state: str = "BOOT"
    state_reason: str | None = None
    state_since: float = 0.0  # wall clock
    faults: Mapping[str, str] = field(default_factory=dict)  # latched now: part -> problem
    recent_faults: tuple[FaultRecord, ...] = ()
    day: str = ""  # UTC date the counters belong to
    decisions: Mapping[str, int] = field(default_factory=dict)  # "granted" / "denied" -> count
    reasons: Mapping[str, int] = field(default_factory=dict)  # deny reason -> count today
    frames: int = 0  # frames read by the camera since the loop started
    dropped_frames: int = 0  # stale frames the inbox pushed out
    camera_fps: float | None = None
    published_at: float = 0.0  # wall clock


class StatusBoard:
    """Written by the loop thread only; `snapshot()` may be called from any thread.

    Each change builds a new frozen LoopSnapshot and replaces the reference in one assignment
    (atomic in CPython), so a reader takes no lock and never waits for the loop, and the loop
    never waits for a reader.
    """

    def __init__(self, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._state, self._since = "BOOT", wall()
        self._reason: str | None = None
        self._latched: dict[str, FaultRecord] = {}
        self._recent: deque[FaultRecord] = deque(maxlen=RECENT_FAULTS)
        self._day = ""
        self._decisions: dict[str, int] = {}
        self._reasons: dict[str, int] = {}
        self._frames_total = 0  # across capture restarts (each new thread counts from zero)
        self._frames_seen = 0
        self._dropped = 0
        self._fps: float | None = None
        self._fps_mark: tuple[float, int] | None = None  # (monotonic, frames) of the last tick
        self._last_tick_publish = float("-inf")
        self._snapshot = LoopSnapshot(state_since=self._since)

    def snapshot(self) -> LoopSnapshot:
        return self._snapshot

    # ---- called by the loop ---------------------------------------------------------------
    def on_state(self, state: str, reason: str | None = None) -> None:
        self._state, self._reason, self._since = state, reason, self._wall()
        self._publish()

    def on_fault(self, part: str, problem: str) -> None:
        record = FaultRecord(part, problem, self._wall())
        self._latched[part] = record
        self._recent.append(record)
        self._publish()

    def on_clear(self, part: str) -> None:
        record = self._latched.pop(part, None)
        if record is not None:
            cleared = FaultRecord(record.part, record.problem, record.since, self._wall())
            # the cleared copy replaces the latched one, so the page shows how long it lasted
            self._recent = deque((cleared if r is record else r for r in self._recent),
                                 maxlen=RECENT_FAULTS)
        self._publish()

    def on_decision(self, granted: bool, reason: str | None) -> None:
        self._roll_day()
        outcome = "granted" if granted else "denied"
        self._decisions[outcome] = self._decisions.get(outcome, 0) + 1
        if reason:
            key = reason if (reason in self._reasons or len(self._reasons) < MAX_REASON_KEYS) \
                else OTHER_REASON
            self._reasons[key] = self._reasons.get(key, 0) + 1
        self._publish()

    def tick(self, frames: int, dropped_frames: int) -> None:
        """Camera counters, republished at most every TICK_PUBLISH_S (the loop ticks at 20 Hz)."""
        if frames < self._frames_seen:  # a new capture thread counts from zero again
            self._frames_seen = 0
        self._frames_total += frames - self._frames_seen
        self._frames_seen = frames
        self._dropped = dropped_frames
        now = self._monotonic()
        if now - self._last_tick_publish < TICK_PUBLISH_S:
            return
        self._last_tick_publish = now
        if self._fps_mark is not None and now > self._fps_mark[0]:
            self._fps = (self._frames_total - self._fps_mark[1]) / (now - self._fps_mark[0])
        self._fps_mark = (now, self._frames_total)
        self._roll_day()
        self._publish()

    # ---- inside ---------------------------------------------------------------------------
    def _roll_day(self) -> None:
        day = datetime.fromtimestamp(self._wall(), timezone.utc).date().isoformat()
        if day != self._day:  # "today" starts at midnight UTC, like the event timestamps
            self._day, self._decisions, self._reasons = day, {}, {}

    def _publish(self) -> None:
        self._snapshot = LoopSnapshot(
            state=self._state, state_reason=self._reason, state_since=self._since,
            faults=MappingProxyType({p: r.problem for p, r in self._latched.items()}),
            recent_faults=tuple(self._recent), day=self._day,
            decisions=MappingProxyType(dict(self._decisions)),
            reasons=MappingProxyType(dict(self._reasons)), frames=self._frames_total,
            dropped_frames=self._dropped, camera_fps=self._fps, published_at=self._wall())


def snapshot_dict(snap: LoopSnapshot) -> dict[str, Decoded]:
    """The snapshot as JSON-ready values."""
    return {
        "state": snap.state, "state_reason": snap.state_reason,
        "state_since": iso(snap.state_since),
        "faults": dict(snap.faults),
        "recent_faults": [{"part": f.part, "problem": f.problem, "since": iso(f.since),
                           "cleared": iso(f.cleared) if f.cleared is not None else None}
                          for f in reversed(snap.recent_faults)],
        "today": {"day": snap.day, "decisions": dict(snap.decisions),
                  "reasons": dict(sorted(snap.reasons.items()))},
        "camera": {"frames": snap.frames, "dropped_frames": snap.dropped_frames,
                   "fps": None if snap.camera_fps is None else round(snap.camera_fps, 2)},
    }


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds") \
        .replace("+00:00", "Z")
