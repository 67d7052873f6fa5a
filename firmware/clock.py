"""Wall-clock trust: a kiosk may boot without an RTC, so time-dependent checks ask first."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

from firmware.fsutil import write_atomic

# No genuine clock reads earlier than the day this firmware was built.
BUILD_DATE = datetime(2026, 11, 1, tzinfo=timezone.utc)


class Clock:
    """UTC time plus a verdict on whether it can be trusted.

    The clock is untrusted while it reads before BUILD_DATE or behind the latest time this
    device has seen (persisted in `state_file`, so a reboot into 1970 is caught). The skew
    against the fleet server's Date header is recorded by the sync client via `record_skew`.
    """

    def __init__(self, state_file: Path | None = None, build_date: datetime = BUILD_DATE,
                 tolerance_s: float = 300.0) -> None:
        self._state_file = state_file
        self._build_date = build_date
        self._tolerance_s = tolerance_s
        self._last_seen = self._load_last_seen()
        self.skew_s: float | None = None  # server time minus ours, from the last sync

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    def trust_problem(self) -> str | None:
        """None when the clock can be used for validity checks, else a reason code."""
        now = self.now()
        if now < self._build_date:
            return "CLOCK_UNTRUSTED"
        if self.skew_s is not None:
            # the fleet server's time is the better witness: it also clears a `last_seen`
            # that a clock once running fast left in the future
            return None if abs(self.skew_s) <= self._tolerance_s else "CLOCK_UNTRUSTED"
        if self._last_seen is not None and now.timestamp() < self._last_seen - self._tolerance_s:
            return "CLOCK_UNTRUSTED"
        return None

    def record_skew(self, server_now: datetime) -> None:
        self.skew_s = (server_now - self.now()).total_seconds()

    def remember(self) -> None:
        """Persist the current time as seen (called periodically while the clock is trusted)."""
        now = self.now().timestamp()
        if self.trust_problem() is not None:
            return
        confirmed = self.skew_s is not None  # then time may be set back to what the server says
        self._last_seen = now if confirmed else max(now, self._last_seen or 0.0)
        if self._state_file is not None:
            write_atomic(self._state_file, f"{self._last_seen:.3f}\n".encode())

    def _load_last_seen(self) -> float | None:
        if self._state_file is None:
            return None
        try:
            return float(self._state_file.read_text().strip())
        except (OSError, ValueError):
            return None


class FixedClock(Clock):
    """A clock that reads a set time (tests, replay); `advance` moves it forward."""

    def __init__(self, at: datetime, trusted: bool = True) -> None:
        super().__init__(build_date=datetime(1970, 1, 1, tzinfo=timezone.utc))
        self._at = at
        self._trusted = trusted
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._at

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        from datetime import timedelta
        self._at += timedelta(seconds=seconds)
        self._mono += seconds

    def trust_problem(self) -> str | None:
        return None if self._trusted else "CLOCK_UNTRUSTED"
