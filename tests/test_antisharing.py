"""Anti-sharing: same credential, different face within the window -> flagged; memory expires."""
from __future__ import annotations

import numpy as np
import pytest

from firmware.vision.antisharing import INVALID_TEMPLATE, SHARED_CREDENTIAL, AntiSharing


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _person(seed: int, dim: int = 128) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def _same_person(base: np.ndarray, seed: int) -> np.ndarray:
    return base + 0.15 * np.linalg.norm(base) / np.sqrt(base.size) * np.random.default_rng(seed).standard_normal(base.size).astype(np.float32)


def test_same_face_twice_is_not_flagged() -> None:
    clock = FakeClock()
    guard = AntiSharing(window_s=60, threshold=0.5, clock=clock)
    alice = _person(1)
    first = guard.observe("cred-A", alice)
    assert not first.flagged and first.min_similarity is None and first.earlier_sightings == 0
    clock.now += 10
    second = guard.observe("cred-A", _same_person(alice, 2))
    assert not second.flagged and second.min_similarity > 0.9 and second.earlier_sightings == 1


def test_different_face_within_window_is_flagged() -> None:
    clock = FakeClock()
    guard = AntiSharing(window_s=60, threshold=0.5, clock=clock)
    guard.observe("cred-A", _person(1))
    clock.now += 59
    result = guard.observe("cred-A", _person(2))
    assert result.flagged and result.reason == SHARED_CREDENTIAL
    assert result.min_similarity < 0.5
    # a third, matching the first, is still flagged because the second face is in the window
    clock.now += 0.5
    assert guard.observe("cred-A", _same_person(_person(1), 3)).flagged


def test_other_credentials_do_not_interfere() -> None:
    clock = FakeClock()
    guard = AntiSharing(window_s=60, threshold=0.5, clock=clock)
    guard.observe("cred-A", _person(1))
    assert not guard.observe("cred-B", _person(2)).flagged


def test_sightings_expire_with_the_window() -> None:
    clock = FakeClock()
    guard = AntiSharing(window_s=60, threshold=0.5, clock=clock)
    template = _person(1)
    guard.observe("cred-A", template)
    assert len(guard) == 1
    clock.now += 60.0  # exactly at the window edge the old sighting is gone
    result = guard.observe("cred-A", _person(2))
    assert not result.flagged and result.earlier_sightings == 0
    clock.now += 61
    guard.expire()
    assert len(guard) == 0 and guard._by_key == {}


def test_expired_templates_are_wiped_from_memory() -> None:
    clock = FakeClock()
    guard = AntiSharing(window_s=5, threshold=0.5, clock=clock)
    guard.observe("cred-A", _person(1))
    held = guard._order[0].template
    clock.now += 6
    guard.expire()
    assert not np.any(held)


def test_memory_bound_drops_oldest_keys() -> None:
    clock = FakeClock()
    guard = AntiSharing(window_s=3600, threshold=0.5, clock=clock, max_keys=3)
    for i in range(5):
        clock.now += 1
        guard.observe(f"cred-{i}", _person(i))
    assert set(guard._by_key) == {"cred-2", "cred-3", "cred-4"}


def test_bad_template_is_reported_not_stored() -> None:
    guard = AntiSharing(window_s=60, threshold=0.5, clock=FakeClock())
    result = guard.observe("cred-A", np.zeros(128))
    assert not result.flagged and result.reason == INVALID_TEMPLATE and len(guard) == 0
    with pytest.raises(ValueError):
        guard.observe("", _person(1))
    with pytest.raises(ValueError):
        AntiSharing(window_s=0, threshold=0.5)


def test_forget_and_clear() -> None:
    clock = FakeClock()
    guard = AntiSharing(window_s=60, threshold=0.5, clock=clock)
    guard.observe("cred-A", _person(1))
    guard.observe("cred-B", _person(2))
    guard.forget("cred-A")
    assert not guard.observe("cred-A", _person(3)).flagged
    guard.clear()
    assert len(guard) == 0
