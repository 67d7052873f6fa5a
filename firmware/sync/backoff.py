"""Exponential backoff with jitter: the named retry settings of the sync client."""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    """Delay before retry number `failures` (1 = after the first failure).

    The nominal delay doubles from `initial_s` up to `max_s`; `jitter` is the fraction of it
    drawn at random ("equal jitter" when 0.5), so a fleet of kiosks that lost the same Wi-Fi
    does not retry in lock-step when it comes back.
    """

    initial_s: float = 1.0
    max_s: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        if self.multiplier < 1:
            raise ValueError("backoff multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be within [0, 1]")

    def nominal(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        # Cap the exponent first so a kiosk offline for weeks never overflows a float.
        exponent = min(failures - 1, 64)
        return min(self.max_s, self.initial_s * self.multiplier ** exponent)

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        nominal = self.nominal(failures)
        draw = (rng or random).random()
        return nominal * (1.0 - self.jitter * draw)
