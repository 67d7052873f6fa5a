"""Background trust-data sync: pulls signed trust items on a schedule, feeds the clock's skew."""
from __future__ import annotations

import logging
import random
import threading
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from firmware.clock import Clock

if TYPE_CHECKING:
    from firmware.sync.trustsync import TrustSync

log = logging.getLogger(__name__)

MAX_ROUND_S = 600.0  # a round longer than this (every item's requests) counts as stuck


class TrustSyncWorker:
    """Runs `trust_sync.sync()` every `interval_s`; after a failed round waits with exponential
    backoff (capped at `interval_s`) plus jitter, so a fleet of kiosks does not retry in step.

    `beats` counts passes of its loop for the supervisor; a round may take up to
    `max_round_s` (every item's requests, each bounded by the HTTP timeout)."""

    def __init__(self, trust_sync: TrustSync, clock: Clock, interval_s: float,
                 backoff_initial_s: float = 5.0, rng: random.Random | None = None,
                 max_round_s: float = MAX_ROUND_S) -> None:
        self._sync = trust_sync
        self._clock = clock
        self._interval_s = interval_s
        self._backoff_initial_s = min(backoff_initial_s, interval_s)
        self._rng = rng or random.Random()
        self._max_round_s = max_round_s
        # one round at a time: a restarted thread waits for a stuck predecessor's round rather
        # than write the same cache beside it (and, still stuck, is seen as stuck in turn)
        self._round_lock = threading.Lock()
        self._stop = threading.Event()  # the current thread's; a restarted thread gets its own
        self._thread: threading.Thread | None = None
        self._running = False
        self.beats = 0
        self.rounds = 0
        self._skip_first = False
        self.last_errors: list[str] = []
        self.next_round_at: datetime | None = None  # when the next round is due (status page)

    def start(self, first_round_done: bool = False) -> None:
        """Run in the background; `first_round_done` skips the immediate round (the caller
        has just run one)."""
        self._skip_first = first_round_done
        self._running = True
        if not self.alive():  # started already: one thread at a time
            self._start_thread()

    def _start_thread(self) -> None:
        self._stop = threading.Event()
        stop = self._stop
        self._thread = threading.Thread(target=lambda: self._run(stop), name="trust-sync",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._running = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def restart(self) -> None:
        """A new thread for one that died or is stuck (the supervisor's call); the old one is
        told to stop, and ends after its current round should it come back. The new one
        starts with a round: its predecessor's schedule is lost with it."""
        self._stop.set()
        self._skip_first = False
        self._start_thread()

    def running(self) -> bool:
        return self._running

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def max_silence_s(self) -> float:
        """The longest wait between rounds (the interval, jittered up to 1.2 times) plus a
        round."""
        return 1.2 * self._interval_s + self._max_round_s

    def run_once(self) -> bool:
        """One sync round; True when every item is current (updated, unchanged or unpublished)."""
        with self._round_lock:
            outcomes = self._sync.sync()
            self.rounds += 1
        skew = getattr(self._sync, "clock_skew_s", None)
        if skew is not None:
            self._clock.record_skew(datetime.now(timezone.utc) + timedelta(seconds=skew))
        self.last_errors = [f"{o.name}: {o.reason}" for o in outcomes if o.status == "error"]
        for error in self.last_errors:
            log.warning("trust sync: %s", error)
        return not self.last_errors

    def _run(self, stop: threading.Event) -> None:
        delay = self._backoff_initial_s
        self.beats += 1
        if self._skip_first:
            self._wait(self._interval_s * (0.8 + 0.4 * self._rng.random()), stop)
        while not stop.is_set():
            self.beats += 1
            try:
                ok = self.run_once()
            except Exception as exc:  # a sync bug must never take the kiosk down
                log.exception("trust sync round failed: %s", exc)
                ok = False
            if ok:
                delay = self._backoff_initial_s
                wait = self._interval_s
            else:
                wait = delay
                delay = min(delay * 2, self._interval_s)
            self._wait(wait * (0.8 + 0.4 * self._rng.random()), stop)

    def _wait(self, seconds: float, stop: threading.Event) -> None:
        self.next_round_at = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        stop.wait(seconds)
