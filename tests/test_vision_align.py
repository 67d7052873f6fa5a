"""Alignment geometry: similarity transform fitting and chip warping on synthetic landmarks."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.vision.align import (
    AlignmentError,
    align_face,
    alignment_points,
    apply_transform,
    similarity_transform,
)

TEMPLATE = np.array([[48.5, 44.7], [107.1, 43.4], [78.7, 76.2], [77.7, 107.2]])


def _landmarks_from_template(angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """5 landmarks whose 4 alignment points are the template moved by a known similarity."""
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]]) * scale
    pts4 = TEMPLATE @ rot.T + np.array(shift)
    mouth = pts4[3]
    half = 0.4 * (pts4[1] - pts4[0])
    return np.vstack([pts4[:3], mouth - half, mouth + half])


@settings(max_examples=25, deadline=None)
@given(
    angle=st.floats(-0.6, 0.6),
    scale=st.floats(0.3, 4.0),
    dx=st.floats(-300, 300),
    dy=st.floats(-300, 300),
)
def test_similarity_transform_recovers_a_known_similarity(angle, scale, dx, dy):
    landmarks = _landmarks_from_template(angle, scale, (dx, dy))
    matrix = similarity_transform(alignment_points(landmarks), TEMPLATE)
    mapped = apply_transform(matrix, alignment_points(landmarks))
    assert np.allclose(mapped, TEMPLATE, atol=1e-6)
    # The linear part is a pure rotation times 1/scale: equal singular values, no reflection.
    linear = matrix[:, :2]
    assert np.linalg.det(linear) > 0
    assert np.allclose(np.linalg.svd(linear, compute_uv=False), 1.0 / scale, rtol=1e-6)


def test_mouth_centre_is_the_mean_of_the_corners():
    pts = np.array([[0, 0], [10, 0], [5, 5], [2, 10], [8, 12]], dtype=float)
    assert np.allclose(alignment_points(pts)[3], [5, 11])


def test_mirror_image_landmarks_are_not_fitted_with_a_reflection():
    mirrored = TEMPLATE.copy()
    mirrored[:, 0] = 150 - mirrored[:, 0]
    matrix = similarity_transform(mirrored, TEMPLATE)
    assert np.linalg.det(matrix[:, :2]) > 0


@pytest.mark.parametrize(
    "landmarks",
    [
        np.zeros((5, 2)),  # all at one point
        np.full((5, 2), np.nan),
        np.ones((4, 2)),  # wrong count
    ],
)
def test_degenerate_landmarks_raise_alignment_error(landmarks):
    with pytest.raises(AlignmentError):
        similarity_transform(alignment_points(landmarks), TEMPLATE)


def test_align_face_puts_marked_pixels_on_the_template():
    """Paint dots at rotated/scaled landmark positions; after alignment they sit on the template."""
    landmarks = _landmarks_from_template(0.3, 2.0, (120.0, 60.0))
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    for x, y in alignment_points(landmarks):
        image[int(round(y)) - 3 : int(round(y)) + 4, int(round(x)) - 3 : int(round(x)) + 4] = 255
    chip = align_face(image, landmarks, TEMPLATE, 150)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    for x, y in TEMPLATE:
        assert chip[int(round(y)), int(round(x))].min() > 200
    # Away from the dots the chip stays dark.
    assert chip[5, 5].max() == 0


def test_align_face_outside_the_frame_is_black_not_an_error():
    landmarks = _landmarks_from_template(0.0, 1.0, (-60.0, -60.0))
    image = np.full((100, 100, 3), 128, dtype=np.uint8)
    chip = align_face(image, landmarks, TEMPLATE, 150)
    assert chip[0, 0].max() == 0 and chip[149, 149].max() == 128
