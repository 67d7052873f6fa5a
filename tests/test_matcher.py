"""1:1 and 1:N matching: correctness against brute force, bad input never accepted."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.vision.matcher import (
    DIMENSION_MISMATCH,
    INVALID_TEMPLATE,
    Gallery,
    TemplateError,
    cosine_similarity,
    match_1to1,
    normalise_template,
)


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_match_1to1_same_and_different() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal(128)
    noisy = a + 0.1 * rng.standard_normal(128)
    other = rng.standard_normal(128)
    same = match_1to1(noisy, a, threshold=0.5)
    diff = match_1to1(other, a, threshold=0.5)
    assert same.match and same.score > 0.9 and same.reason is None
    assert not diff.match and abs(diff.score) < 0.4


def test_match_at_threshold_is_inclusive() -> None:
    a = np.array([1.0, 0.0], dtype=np.float32)
    b = np.array([0.6, 0.8], dtype=np.float32)
    assert match_1to1(a, b, threshold=0.6).match
    assert not match_1to1(a, b, threshold=0.6001).match


@pytest.mark.parametrize(
    "bad, reason",
    [
        (np.zeros(128), INVALID_TEMPLATE),
        (np.full(128, np.nan), INVALID_TEMPLATE),
        (np.ones((2, 64)), INVALID_TEMPLATE),
        (np.ones(64), DIMENSION_MISMATCH),
        ("not a template", INVALID_TEMPLATE),
        (None, INVALID_TEMPLATE),
        (np.array([np.inf] + [0.0] * 127), INVALID_TEMPLATE),
    ],
)
def test_bad_templates_are_refused_never_accepted(bad: object, reason: str) -> None:
    good = np.ones(128)
    result = match_1to1(good, bad, threshold=-1.0)  # even a threshold that accepts everything
    assert not result.match and result.reason == reason
    result = match_1to1(bad, good, threshold=-1.0)
    assert not result.match and result.reason in (INVALID_TEMPLATE, DIMENSION_MISMATCH)


def test_nan_threshold_refused() -> None:
    assert not match_1to1(np.ones(4), np.ones(4), threshold=float("nan")).match


def test_identify_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    n, dim = 5000, 128
    rows = _unit(rng, n, dim)
    gallery = Gallery(dim=dim, capacity=16)  # forces several buffer growths
    gallery.add_many((f"m{i}", rows[i]) for i in range(n))
    assert len(gallery) == n
    for _ in range(20):
        probe = rng.standard_normal(dim)
        unit = probe / np.linalg.norm(probe)
        brute = rows.astype(np.float64) @ unit
        expected = np.argsort(-brute)[:5]
        got = gallery.identify(probe, top_k=5)
        assert [m for m, _ in got] == [f"m{i}" for i in expected]
        np.testing.assert_allclose([s for _, s in got], brute[expected], atol=1e-5)


def test_identify_finds_a_noisy_member() -> None:
    rng = np.random.default_rng(3)
    rows = _unit(rng, 2000, 64)
    gallery = Gallery(dim=64)
    gallery.add_many((f"member-{i}", rows[i]) for i in range(len(rows)))
    probe = rows[1234] + 0.05 * rng.standard_normal(64).astype(np.float32)
    assert gallery.best_match(probe, threshold=0.8)[0] == "member-1234"
    assert gallery.best_match(rng.standard_normal(64), threshold=0.8) is None


def test_remove_keeps_search_correct_and_wipes_row() -> None:
    rng = np.random.default_rng(5)
    rows = _unit(rng, 50, 32)
    gallery = Gallery(dim=32)
    gallery.add_many((f"m{i}", rows[i]) for i in range(50))
    assert gallery.remove("m10") and not gallery.remove("m10")
    assert "m10" not in gallery and len(gallery) == 49
    top = gallery.identify(rows[10], top_k=49)
    assert "m10" not in [m for m, _ in top]
    # the last member moved into row 10 and is still found exactly
    assert gallery.identify(rows[49], top_k=1)[0][0] == "m49"
    # the erased template is nowhere in the buffer
    assert not np.any(np.all(np.isclose(gallery._matrix, rows[10]), axis=1))


def test_replace_member_template() -> None:
    gallery = Gallery(dim=3)
    gallery.add("a", [1, 0, 0])
    gallery.add("a", [0, 1, 0])
    assert len(gallery) == 1
    np.testing.assert_allclose(gallery.template("a"), [0, 1, 0])


def test_identify_rejects_bad_probe_and_handles_empty() -> None:
    gallery = Gallery(dim=8)
    assert gallery.identify(np.ones(8)) == []
    with pytest.raises(TemplateError):
        gallery.identify(np.ones(7))
    gallery.add("x", np.ones(8))
    with pytest.raises(TemplateError):
        gallery.identify(np.full(8, np.nan))
    with pytest.raises(ValueError):
        gallery.add("", np.ones(8))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 60),
    k=st.integers(1, 70),
    seed=st.integers(0, 2**31 - 1),
)
def test_identify_property(n: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = _unit(rng, n, 16)
    gallery = Gallery(dim=16, capacity=1)
    gallery.add_many((str(i), rows[i]) for i in range(n))
    probe = rng.standard_normal(16)
    got = gallery.identify(probe, top_k=k)
    assert len(got) == min(k, n)
    scores = [s for _, s in got]
    assert scores == sorted(scores, reverse=True)
    brute = rows @ (probe / np.linalg.norm(probe)).astype(np.float32)
    assert scores[0] == pytest.approx(float(brute.max()), abs=1e-5)


def test_cosine_similarity_symmetric_and_bounded() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(10), rng.standard_normal(10)
    assert cosine_similarity(a, b) == pytest.approx(cosine_similarity(b, a))
    assert cosine_similarity(a, a) == pytest.approx(1.0)
    assert cosine_similarity(a, -a) == pytest.approx(-1.0)
    assert np.linalg.norm(normalise_template(a * 1000)) == pytest.approx(1.0, abs=1e-6)


def test_add_many_matches_repeated_add_and_is_all_or_nothing() -> None:
    rng = np.random.default_rng(11)
    rows = _unit(rng, 30, 8)
    one_by_one, bulk = Gallery(dim=8, capacity=2), Gallery(dim=8, capacity=2)
    items = [(f"m{i % 20}", rows[i]) for i in range(30)]  # ids 0..9 appear twice: later wins
    one_by_one.add("m3", rows[0])
    for member_id, row in items:
        one_by_one.add(member_id, row)
    bulk.add("m3", rows[0])
    bulk.add_many(items)
    assert bulk.member_ids == one_by_one.member_ids
    np.testing.assert_allclose(bulk.matrix, one_by_one.matrix, atol=1e-6)
    before = bulk.matrix.copy()
    with pytest.raises(TemplateError):
        bulk.add_many([("new", rows[0]), ("bad", np.zeros(8))])
    with pytest.raises(TemplateError):
        bulk.add_many([("new", rows[0]), ("short", np.ones(7))])
    assert "new" not in bulk
    np.testing.assert_array_equal(bulk.matrix, before)
