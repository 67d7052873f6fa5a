"""Background trust-data sync: pulls signed trust items on a schedule, feeds the clock's skew."""
from __future__ import annotations

import logging
import random
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

from firmware.clock import Clock

log = logging.getLogger(__name__)


class TrustSyncWorker:
    """Runs `trust_sync.sync()` every `interval_s`; after a failed round waits with exponential
    backoff (capped at `interval_s`) plus jitter, so a fleet of kiosks does not retry in step."""

    def __init__(self, trust_sync: Any, clock: Clock, interval_s: float,
                 backoff_initial_s: float = 5.0, rng: random.Random | None = None) -> None:
        self._sync = trust_sync
        self._clock = clock
        self._interval_s = interval_s
        self._backoff_initial_s = min(backoff_initial_s, interval_s)
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trust-sync", daemon=True)
        self.rounds = 0
        self._skip_first = False
        self.last_errors: list[str] = []
        self.next_round_at: datetime | None = None  # when the next round is due (status page)

    def start(self, first_round_done: bool = False) -> None:
        """Run in the background; `first_round_done` skips the immediate round (the caller
        has just run one)."""
        self._skip_first = first_round_done
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def run_once(self) -> bool:
        """One sync round; True when every item is current (updated, unchanged or unpublished)."""
        outcomes = self._sync.sync()
        self.rounds += 1
        skew = getattr(self._sync, "clock_skew_s", None)
        if skew is not None:
            self._clock.record_skew(datetime.now(timezone.utc) + timedelta(seconds=skew))
        self.last_errors = [f"{o.name}: {o.reason}" for o in outcomes if o.status == "error"]
        for error in self.last_errors:
            log.warning("trust sync: %s", error)
        return not self.last_errors

    def _run(self) -> None:
        delay = self._backoff_initial_s
        if self._skip_first:
            self._wait(self._interval_s * (0.8 + 0.4 * self._rng.random()))
        while not self._stop.is_set():
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
            self._wait(wait * (0.8 + 0.4 * self._rng.random()))

    def _wait(self, seconds: float) -> None:
        self.next_round_at = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        self._stop.wait(seconds)
