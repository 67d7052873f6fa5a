"""Watches the kiosk's background threads by their heartbeats; restarts a dead or stuck one
within a restart budget, and reports a part whose budget is spent (the loop latches FAULT,
or only records it for a network worker)."""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

# Reason codes (docs/kiosk.md, "The supervisor"): what was wrong with a worker thread.
WORKER_DIED = "WORKER_DIED"  # the thread ended while it should have been running
WORKER_STALLED = "WORKER_STALLED"  # no heartbeat for longer than the worker allows
WORKER_RESTARTS_EXHAUSTED = "WORKER_RESTARTS_EXHAUSTED"  # the budget is spent: FAULT latched

RESTART_BUDGET = 5  # restarts allowed per window; then the part's FAULT stays latched
RESTART_WINDOW_S = 600.0
BACKOFF_INITIAL_S = 1.0  # wait before the second restart in a window; doubles after each
BACKOFF_MAX_S = 60.0


class Worker(Protocol):
    """What the supervisor needs of a background thread (capture, uploader, trust sync)."""

    @property
    def beats(self) -> int:
        """A progress counter the thread bumps on each pass of its loop, idle or not."""

    @property
    def max_silence_s(self) -> float:
        """The longest a healthy thread may go without a beat (its longest wait and call)."""

    def running(self) -> bool:
        """Started and not asked to stop: only then is the thread watched."""

    def alive(self) -> bool:
        """The thread is alive (it may still be stuck)."""

    def restart(self) -> None:
        """Give up on the current thread (it must never act again should it come back) and
        start a new one."""


@dataclass(frozen=True)
class Budget:
    """How often a worker may be restarted, and how long to wait between restarts."""

    restarts: int = RESTART_BUDGET
    window_s: float = RESTART_WINDOW_S
    backoff_initial_s: float = BACKOFF_INITIAL_S
    backoff_max_s: float = BACKOFF_MAX_S

    def __post_init__(self) -> None:
        if self.restarts < 1 or self.window_s <= 0 or not \
                0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ValueError("a budget needs restarts >= 1, window_s > 0 and "
                             "0 < backoff_initial_s <= backoff_max_s")

    def backoff(self, restarts_in_window: int) -> float:
        """The wait after the latest of `restarts_in_window` restarts before the next one."""
        if restarts_in_window <= 0:
            return 0.0
        return min(self.backoff_max_s,
                   self.backoff_initial_s * 2.0 ** min(restarts_in_window - 1, 32))


@dataclass(frozen=True)
class Change:
    """Something the loop must act on: `restarted` (a worker was replaced, for `reason`),
    `fault` (the budget is spent: latch FAULT for `part` with `problem`), `recovered` (the
    worker runs again: clear it)."""

    kind: str  # "restarted", "fault", "recovered"
    part: str
    reason: str | None = None  # WORKER_DIED / WORKER_STALLED
    problem: str | None = None  # the fault's text, starting with its reason code
    blocks: bool = True  # a fault of this part stops decisions (see Supervisor.watch)


@dataclass(frozen=True)
class WorkerHealth:
    """One worker as the status page shows it."""

    part: str
    running: bool
    problem: str | None  # WORKER_DIED, WORKER_STALLED, or None when healthy
    silent_s: float  # since its last heartbeat
    max_silence_s: float
    restarts: int  # since the kiosk started
    restarts_in_window: int
    faulted: bool  # its budget is spent and FAULT is latched

    def as_dict(self) -> dict[str, object]:
        return {"running": self.running, "problem": self.problem,
                "silent_s": round(self.silent_s, 1), "max_silence_s": self.max_silence_s,
                "restarts": self.restarts, "restarts_in_window": self.restarts_in_window,
                "faulted": self.faulted}


@dataclass
class _Watch:
    worker: Worker
    budget: Budget
    beats: int
    beat_at: float  # the supervisor's time when `beats` last changed
    restarts: deque[float] = field(default_factory=deque)  # restart times within the window
    total_restarts: int = 0
    next_restart_at: float = float("-inf")
    problem: str | None = None
    faulted: bool = False
    blocks: bool = True


class Supervisor:
    """Call `check()` periodically (the kiosk loop does, on every tick), from one thread.

    A worker's heartbeat is a counter, read here and timed on the supervisor's own clock, so a
    worker needs no clock of its own and a test drives silence by moving one injected clock.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._watches: dict[str, _Watch] = {}
        self._health: tuple[WorkerHealth, ...] = ()  # replaced whole: read from any thread

    def watch(self, part: str, worker: Worker, budget: Budget | None = None, *,
              blocks: bool = True) -> None:
        """Watch `worker` as `part` (the name its fault carries). `blocks=False` for a worker
        that only syncs: with its budget spent the kiosk records the fault and goes on deciding
        from cached trust data (offline first)."""
        self._watches[part] = _Watch(worker, budget or Budget(), worker.beats, self._monotonic(),
                                     blocks=blocks)

    def check(self) -> list[Change]:
        """Look at every worker once: restart the dead or stuck ones the budget allows,
        report a spent budget as a fault and a worker that runs again as recovered."""
        now = self._monotonic()
        changes: list[Change] = []
        watches = list(self._watches.items())  # `watch` may add one from another thread
        for part, watch in watches:
            changes += self._check(part, watch, now)
        self._health = tuple(self._describe(part, watch, now) for part, watch in watches)
        return changes

    def health(self) -> tuple[WorkerHealth, ...]:
        """Each worker's state as of the last check (safe from any thread)."""
        return self._health

    def _check(self, part: str, watch: _Watch, now: float) -> list[Change]:
        worker = watch.worker
        beats = worker.beats
        beat = beats != watch.beats
        if beat:
            watch.beats, watch.beat_at = beats, now
        if not worker.running():
            watch.beat_at, watch.problem = now, None  # not started, or stopped: nothing to watch
            return []
        if not worker.alive():
            watch.problem = WORKER_DIED
        elif now - watch.beat_at > worker.max_silence_s:
            watch.problem = WORKER_STALLED
        else:
            watch.problem = None
            if watch.faulted and beat:  # it beat since the fault: it runs again
                watch.faulted = False
                log.info("%s runs again", part)
                return [Change("recovered", part, blocks=watch.blocks)]
            return []
        while watch.restarts and now - watch.restarts[0] >= watch.budget.window_s:
            watch.restarts.popleft()
        if len(watch.restarts) >= watch.budget.restarts:
            if watch.faulted:
                return []
            watch.faulted = True
            problem = (f"{WORKER_RESTARTS_EXHAUSTED}: {part} thread {_what(watch.problem)} "
                       f"after {len(watch.restarts)} restarts in {watch.budget.window_s:g} s")
            log.error("%s", problem)
            return [Change("fault", part, watch.problem, problem, watch.blocks)]
        if now < watch.next_restart_at:
            return []  # backing off: a worker that dies at once must not spin
        reason = watch.problem
        watch.restarts.append(now)
        watch.total_restarts += 1
        watch.next_restart_at = now + watch.budget.backoff(len(watch.restarts))
        log.warning("restarting the %s thread (%s; %d in the last %g s)", part, reason,
                    len(watch.restarts), watch.budget.window_s)
        worker.restart()
        # the new thread gets the whole allowance before it counts as silent
        watch.beats, watch.beat_at, watch.problem = worker.beats, now, None
        return [Change("restarted", part, reason)]

    def _describe(self, part: str, watch: _Watch, now: float) -> WorkerHealth:
        worker = watch.worker
        return WorkerHealth(part, worker.running(), watch.problem, now - watch.beat_at,
                            worker.max_silence_s, watch.total_restarts, len(watch.restarts),
                            watch.faulted)


def _what(problem: str | None) -> str:
    return "died" if problem == WORKER_DIED else "stalled"
