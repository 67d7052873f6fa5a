"""Liveness cues with faces and landmarks from the shipped detector (skipped until models exist)."""
from __future__ import annotations

import numpy as np
import pytest

from firmware.vision import liveness
from firmware.vision.liveness import LivenessChecker
from tests.test_liveness import close_eyes, faces, move_photo, turn_head  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def pipeline():  # type: ignore[no-untyped-def]
    try:
        from firmware.vision import FacePipeline

        return FacePipeline()
    except Exception as exc:
        pytest.skip(f"shipped face models unavailable: {exc}")


def run_detected(frames: list[np.ndarray], pipeline, seed: int = 0) -> liveness.LivenessResult:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    checker = LivenessChecker()
    for image in frames:
        noisy = np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
        found = pipeline.detect(noisy)
        assert found, "the detector lost the face"
        checker.add_frame(noisy, max(found, key=lambda f: f.width))
    return checker.assess()


def test_moved_photo_detected_frames(faces: list[np.ndarray], pipeline) -> None:  # type: ignore[no-untyped-def]
    for i, rgb in enumerate(faces[:3]):
        result = run_detected([move_photo(rgb, k / 7)[0] for k in range(8)], pipeline, seed=i)
        assert result.reason == liveness.PLANAR_MOTION, result.measures


def test_turning_head_detected_frames(faces: list[np.ndarray], pipeline) -> None:  # type: ignore[no-untyped-def]
    for i, rgb in enumerate(faces[:3]):
        result = run_detected([turn_head(rgb, -8 + 16 * k / 7)[0] for k in range(8)], pipeline, seed=i)
        assert result.live, result.measures


def test_blink_detected_frames(faces: list[np.ndarray], pipeline) -> None:  # type: ignore[no-untyped-def]
    for i, rgb in enumerate(faces[:3]):
        shut = close_eyes(rgb)
        result = run_detected([shut if k in (3, 4) else rgb for k in range(8)], pipeline, seed=i)
        assert result.live and result.measures["blink_score"] >= 0.25, result.measures


def test_still_photo_detected_frames(faces: list[np.ndarray], pipeline) -> None:  # type: ignore[no-untyped-def]
    for i, rgb in enumerate(faces[:3]):
        result = run_detected([rgb] * 8, pipeline, seed=i)
        assert not result.live and result.reason == liveness.NO_LIVENESS_CUES, result.measures
