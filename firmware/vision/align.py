"""Five-point face alignment: a least-squares similarity transform onto the embedder's template."""
from __future__ import annotations

import numpy as np


class AlignmentError(ValueError):
    """The landmarks cannot define a usable similarity transform (degenerate or non-finite)."""


def alignment_points(landmarks: np.ndarray) -> np.ndarray:
    """Reduce 5 landmarks (eyes, nose, mouth corners) to 4: eyes, nose, mouth centre.

    The mouth corners from BlazeFace are estimated from its mouth centre, so fitting the
    corners would only add a made-up constraint; their mean is the measured point.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (5, 2):
        raise AlignmentError(f"need (5, 2) landmarks, got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise AlignmentError("landmarks contain NaN or infinity")
    return np.stack([pts[0], pts[1], pts[2], 0.5 * (pts[3] + pts[4])])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix M of the rotation + uniform scale + translation that best maps src onto dst.

    Least squares without reflection (Umeyama's solution), so alignment needs no RANSAC and is
    deterministic. In 2-D it has a closed form: with centred points as complex numbers, the
    rotation-and-scale is the complex least-squares ratio sum(conj(s) * d) / sum(|s|^2); that is
    4x cheaper than the general SVD route and gives the same matrix to float rounding.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise AlignmentError("src and dst must be matching (N>=2, 2) point arrays")
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    sx, sy = (src - src_mean).T
    dx, dy = (dst - dst_mean).T
    src_var = float(sx @ sx + sy @ sy)
    if src_var < 1e-6 * len(src):
        raise AlignmentError("landmarks are degenerate (all at one point)")
    a = float(sx @ dx + sy @ dy) / src_var  # scale * cos(angle)
    b = float(sx @ dy - sy @ dx) / src_var  # scale * sin(angle)
    linear = np.array([[a, -b], [b, a]])
    translation = dst_mean - linear @ src_mean
    return np.hstack([linear, translation[:, None]])


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (N, 2) points."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def align_face(
    rgb: np.ndarray, landmarks: np.ndarray, template: np.ndarray, size: int
) -> np.ndarray:
    """Warp the face given by 5 landmarks into a size x size RGB uint8 chip.

    `template` holds the 4 alignment points (eyes, nose, mouth centre) in chip pixels.
    """
    import cv2  # local import: only the inference path needs OpenCV

    matrix = similarity_transform(alignment_points(landmarks), np.asarray(template))
    if not np.all(np.isfinite(matrix)):
        raise AlignmentError("alignment transform is not finite")
    return cv2.warpAffine(
        rgb,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,  # black outside the frame, as dlib's chips are
        borderValue=(0, 0, 0),
    )
