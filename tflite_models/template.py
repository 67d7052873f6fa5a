"""Build-time: where BlazeFace's keypoints fall on dlib's 150x150 face chips (our alignment template).

dlib's network expects chips from `get_face_chip(img, shape, 150, padding=0.25)`, which align
dlib's 5 landmarks (eye corners, nose base) to a mean face. Our detector gives different points (eye centres,
nose tip, mouth centre), so instead of guessing we measure: cut dlib chips with a wide margin
(padding 1.0, so BlazeFace sees a natural face in context), detect keypoints on them, map the
keypoints into the padding-0.25 chip frame and take the median over many LFW faces.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tflite_models import lfw_data

CHIP = 150
CHIP_PADDING = 0.25
WIDE = 300
WIDE_PADDING = 1.0


def wide_to_chip(points: np.ndarray) -> np.ndarray:
    """Map pixels of a (WIDE, WIDE_PADDING) dlib chip to the (CHIP, CHIP_PADDING) chip.

    dlib places mean-face coordinate u (0..1) at ((padding + u) / (2 padding + 1)) * size.
    """
    u = points / WIDE * (2 * WIDE_PADDING + 1) - WIDE_PADDING
    return (CHIP_PADDING + u) / (2 * CHIP_PADDING + 1) * CHIP


def derive_template(detector_model: Path, images: list[Path], count: int) -> tuple[np.ndarray, float]:
    """Median (4, 2) template (eyes, nose, mouth centre in 150x150 chip pixels) and the mean
    per-point spread (pixels) across faces."""
    import dlib  # type: ignore[import-not-found]
    import face_recognition_models  # type: ignore[import-not-found]

    from firmware.vision.align import alignment_points
    from firmware.vision.detector import BlazeFaceDetector

    hog = dlib.get_frontal_face_detector()
    # The 5-point predictor (public domain, dlib's own annotations) is the one dlib's face
    # recognition example pairs with this network; the 68-point one is trained on iBUG 300-W,
    # whose terms restrict commercial use, so it is not used.
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    detector = BlazeFaceDetector(detector_model)
    points = []
    for path in images[:count]:
        rgb = lfw_data.load_rgb(path)
        boxes = hog(rgb, 1)
        if len(boxes) != 1:
            continue
        wide = dlib.get_face_chip(rgb, predictor(rgb, boxes[0]), size=WIDE, padding=WIDE_PADDING)
        faces = detector.detect(np.ascontiguousarray(wide))
        if not faces:
            continue
        points.append(wide_to_chip(alignment_points(faces[0].landmarks)))
    if len(points) < 50:
        raise SystemExit(f"too few faces for the alignment template ({len(points)})")
    stack = np.stack(points)
    return np.median(stack, axis=0), float(stack.std(axis=0).mean())
