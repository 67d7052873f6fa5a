"""Anti-sharing: flag one credential presented with two different faces within a time window.

Templates live in memory only, keyed by a pseudonymous credential key that the caller derives
(never the raw identifier), and are dropped once older than the window. Nothing is persisted.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .matcher import TemplateError, normalise_template

# Stable reason codes.
SHARED_CREDENTIAL = "SHARED_CREDENTIAL"
INVALID_TEMPLATE = "INVALID_TEMPLATE"

DEFAULT_MAX_KEYS = 10_000  # bounds memory on a busy kiosk; oldest sightings go first


@dataclass(frozen=True)
class SharingResult:
    """`flagged` when the credential was seen with a different face within the window."""

    flagged: bool
    reason: str | None
    min_similarity: float | None  # lowest similarity to an earlier sighting in the window
    earlier_sightings: int


@dataclass(eq=False)  # identity comparison: list.remove must not compare arrays
class _Sighting:
    at: float
    key: str
    template: np.ndarray = field(repr=False)


class AntiSharing:
    """Remembers (credential key, template) sightings for `window_s` seconds.

    `threshold` is the similarity below which two faces count as different people: use the
    pipeline's matching threshold (a lower one trades missed sharing for fewer false flags).
    `clock` returns seconds (monotonic); tests inject a fake one.
    """

    def __init__(
        self,
        window_s: float,
        threshold: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if not window_s > 0:
            raise ValueError("window_s must be positive")
        if not np.isfinite(threshold):
            raise ValueError("threshold must be finite")
        self.window_s = float(window_s)
        self.threshold = float(threshold)
        self._clock = clock
        self._max_keys = max_keys
        self._order: deque[_Sighting] = deque()  # all sightings, oldest first
        self._by_key: dict[str, list[_Sighting]] = {}

    def __len__(self) -> int:
        """Number of sightings currently held in memory."""
        return len(self._order)

    def expire(self) -> None:
        """Forget every sighting older than the window (called on each observe)."""
        horizon = self._clock() - self.window_s
        while self._order and self._order[0].at <= horizon:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        old = self._order.popleft()
        sightings = self._by_key.get(old.key)
        if sightings:
            sightings.remove(old)
            old.template.fill(0.0)  # do not leave the template around for the GC
            if not sightings:
                del self._by_key[old.key]

    def observe(self, credential_key: str, template: object) -> SharingResult:
        """Record a sighting and say whether it conflicts with an earlier one in the window.

        A bad template is not recorded and is reported with a reason (never flagged as shared,
        never trusted either: the caller denies on a reason).
        """
        if not isinstance(credential_key, str) or not credential_key:
            raise ValueError("credential_key must be a non-empty string")
        self.expire()
        try:
            vec = normalise_template(template)
        except TemplateError as exc:
            return SharingResult(False, exc.reason, None, 0)
        earlier = list(self._by_key.get(credential_key, []))  # a copy: appended to below
        comparable = [s for s in earlier if s.template.size == vec.size]
        min_sim: float | None = None
        if comparable:
            sims = np.stack([s.template for s in comparable]) @ vec
            min_sim = float(sims.min())
        flagged = min_sim is not None and min_sim < self.threshold
        sighting = _Sighting(self._clock(), credential_key, vec)
        self._order.append(sighting)
        self._by_key.setdefault(credential_key, []).append(sighting)
        while len(self._by_key) > self._max_keys:
            self._drop_oldest()
        return SharingResult(
            flagged, SHARED_CREDENTIAL if flagged else None, min_sim, len(earlier)
        )

    def forget(self, credential_key: str) -> None:
        """Drop every sighting of one credential (e.g. after an operator cleared a flag)."""
        for sighting in self._by_key.pop(credential_key, []):
            sighting.template.fill(0.0)
        self._order = deque(s for s in self._order if s.key != credential_key)

    def clear(self) -> None:
        for sighting in self._order:
            sighting.template.fill(0.0)
        self._order.clear()
        self._by_key.clear()
