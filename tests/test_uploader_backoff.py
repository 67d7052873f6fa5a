"""Backoff policy: doubling, cap, jitter bounds, validation."""
from __future__ import annotations

import random

import pytest

from firmware.sync.backoff import BackoffPolicy


def test_nominal_delay_doubles_then_caps() -> None:
    policy = BackoffPolicy(initial_s=1.0, max_s=60.0, jitter=0.0)
    assert [policy.delay(n) for n in range(0, 9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert policy.delay(10_000) == 60.0  # weeks offline: no overflow


def test_jitter_spreads_delays_within_bounds() -> None:
    policy = BackoffPolicy(initial_s=2.0, max_s=100.0, jitter=0.5)
    rng = random.Random(1)
    draws = [policy.delay(4, rng) for _ in range(500)]
    assert all(8.0 <= d <= 16.0 for d in draws)  # nominal 16, up to half drawn away
    assert max(draws) - min(draws) > 6.0  # really spread, not one fixed value


@pytest.mark.parametrize("options", [
    {"initial_s": 0}, {"initial_s": 5, "max_s": 1}, {"multiplier": 0.5}, {"jitter": 1.5},
])
def test_invalid_settings_are_refused(options: dict) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(**options)
