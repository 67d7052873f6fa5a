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

    Umeyama's closed form (least squares, no reflection), so alignment needs no RANSAC and is
    deterministic.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise AlignmentError("src and dst must be matching (N>=2, 2) point arrays")
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var < 1e-6:
        raise AlignmentError("landmarks are degenerate (all at one point)")
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0  # forbid a reflection
    rotation = u @ np.diag(sign) @ vt
    scale = float((s * sign).sum() / src_var)
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


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
