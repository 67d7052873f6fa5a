"""Assembles multi-chunk SMART Health Cards (`shc:/C/N/...`) scanned across frames, in any order."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from firmware.credentials.shc.codec import PREFIX, ShcFormatError, parse_chunk

INCOMPLETE = "SHC_CHUNKS_INCOMPLETE"

# What `feed` reports.
COMPLETE = "complete"  # `text` is a whole card (or a non-chunked text passed through)
PENDING = "pending"  # a chunk was stored; more are needed
EXPIRED = "expired"  # a partial set timed out (reason SHC_CHUNKS_INCOMPLETE)
INVALID = "invalid"  # an `shc:/` text with a malformed chunk header


@dataclass(frozen=True)
class AssemblyResult:
    """Outcome of feeding one scanned text; `text` is set only when `status` is COMPLETE."""

    status: str
    text: str | None = None
    received: int = 0
    total: int = 0
    failure: str | None = None
    # True when this feed had to drop an earlier, timed-out partial set (SHC_CHUNKS_INCOMPLETE).
    dropped_incomplete: bool = False


class ChunkAssembler:
    """Collects the chunks of one card at a time; the kiosk feeds every scanned text to it.

    A set is identified by its chunk count N (the format carries no card id). A chunk with a
    different N, or the same index with different content, starts a new set. A set that is not
    complete `timeout_s` after its first chunk is dropped and reported as SHC_CHUNKS_INCOMPLETE.
    The clock is injected (monotonic seconds) so that tests never sleep.
    """

    def __init__(self, timeout_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._timeout_s = timeout_s
        self._clock = clock
        self._total = 0
        self._parts: dict[int, str] = {}
        self._started = 0.0

    @property
    def pending(self) -> tuple[int, int]:
        """(chunks received, chunks needed) of the set in progress; (0, 0) when idle."""
        return (len(self._parts), self._total)

    def reset(self) -> None:
        """Forget any partial set."""
        self._total, self._parts, self._started = 0, {}, 0.0

    def check_timeout(self) -> AssemblyResult | None:
        """Drop a partial set older than the timeout; returns the EXPIRED result if it did."""
        if self._total and self._clock() - self._started > self._timeout_s:
            received, total = self.pending
            self.reset()
            return AssemblyResult(EXPIRED, received=received, total=total, failure=INCOMPLETE)
        return None

    def feed(self, text: str) -> AssemblyResult:
        """Take one scanned text. Non-SHC and single-chunk texts pass straight through."""
        dropped = self.check_timeout() is not None
        result = self._feed(text)
        return replace(result, dropped_incomplete=True) if dropped else result

    def _feed(self, text: str) -> AssemblyResult:
        if not isinstance(text, str) or not text[: len(PREFIX)].lower() == PREFIX:
            return AssemblyResult(COMPLETE, text=text)
        try:
            chunk = parse_chunk(text)
        except ShcFormatError as exc:
            return AssemblyResult(INVALID, failure=exc.code)
        if chunk.total == 1:
            return AssemblyResult(COMPLETE, text=text, received=1, total=1)
        if chunk.total != self._total or self._parts.get(chunk.index, chunk.digits) != chunk.digits:
            self.reset()  # a different card: start over with this chunk
        if not self._total:
            self._total, self._started = chunk.total, self._clock()
        self._parts[chunk.index] = chunk.digits
        if len(self._parts) < self._total:
            return AssemblyResult(PENDING, received=len(self._parts), total=self._total)
        digits = "".join(self._parts[i] for i in range(1, self._total + 1))
        total = self._total
        self.reset()
        return AssemblyResult(COMPLETE, text=PREFIX + digits, received=total, total=total)
