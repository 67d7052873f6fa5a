"""Face quality gates: is this frame good enough to decide on? Stable reason codes for the display."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .types import Face

from firmware.protocol.decoded import Decoded

# Stable reason codes (the display maps each to a hint such as "come closer").
INVALID_IMAGE = "INVALID_IMAGE"
NO_FACE = "NO_FACE"
SEVERAL_FACES = "SEVERAL_FACES"
FACE_CUT_OFF = "FACE_CUT_OFF"
FACE_TOO_SMALL = "FACE_TOO_SMALL"
FACE_TURNED = "FACE_TURNED"
FACE_TOO_DARK = "FACE_TOO_DARK"
FACE_TOO_BRIGHT = "FACE_TOO_BRIGHT"
FACE_BLURRED = "FACE_BLURRED"

REASONS = (
    INVALID_IMAGE, NO_FACE, SEVERAL_FACES, FACE_CUT_OFF, FACE_TOO_SMALL,
    FACE_TURNED, FACE_TOO_DARK, FACE_TOO_BRIGHT, FACE_BLURRED,
)

# Mean 3-D face in units of the distance between the eye centres (x right, y down, z towards
# the camera), from the generic head model used for PnP pose and consistent with the ArcFace
# 2-D template (nose 0.57, mouth 1.12 eye-distances below the eyes).
_MODEL_NOSE = np.array([0.0, 0.57, 0.42])
_MODEL_MOUTH = np.array([0.0, 1.12, 0.03])


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of the gates; defaults calibrated on LFW View 1 images (see docs/faces.md)."""

    min_detector_score: float = 0.5  # faces below this are ignored entirely
    # A second face counts when it is at least this fraction of the largest face's width
    # (people far behind in the queue do not block the person at the kiosk).
    secondary_face_ratio: float = 0.5
    min_eye_distance_px: float = 20.0  # below this the face is too far away
    min_face_width_px: float = 48.0
    max_outside_fraction: float = 0.05  # share of the face box allowed outside the frame
    edge_margin_px: float = 1.0  # a box or landmark this close to the border: cut off
    # Pose limits: the embedder copes with moderate pose; on LFW View 1 (news photos) with the
    # shipped BlazeFace landmarks the median pitch is -0.7 deg and ~10 % exceed 30 deg of yaw.
    max_yaw_deg: float = 35.0
    max_pitch_deg: float = 30.0
    min_mean_luma: float = 45.0  # 0..255 over the face box
    max_mean_luma: float = 215.0
    max_saturated_fraction: float = 0.25  # pixels at >= 250 in the face box
    min_sharpness: float = 12.0  # variance of the Laplacian, face resized to 112 px wide
    sharpness_width_px: int = 112


@dataclass(frozen=True)
class QualityResult:
    """`ok` with reason None, or not ok with one stable reason code; measures for the log."""

    ok: bool
    reason: str | None
    measures: dict[str, Decoded] = field(default_factory=dict)
    face: Face | None = None  # the face that was assessed (the largest usable one)


def estimate_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from 5 landmarks (eyes, nose, mouth corners).

    Uses only measured points (eye centres, nose tip, mouth centre), so it holds for detectors
    that estimate the mouth corners. Yaw: the nose tip's sideways offset from the eye-mouth
    midline, per eye distance, through the model's nose depth. Pitch: where the nose sits between
    eyes and mouth, solved against the mean 3-D face. Signs: positive yaw = nose towards larger x,
    positive pitch = face tilted down. Approximate (+- a few degrees for an average face).
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    left_eye, right_eye, nose = pts[0], pts[1], pts[2]
    mouth = 0.5 * (pts[3] + pts[4])
    eye_mid = 0.5 * (left_eye + right_eye)
    eye_vec = right_eye - left_eye
    eye_dist = float(np.hypot(*eye_vec))
    down = mouth - eye_mid
    down_len = float(np.hypot(*down))
    if eye_dist < 1e-6 or down_len < 1e-6:
        return float("nan"), float("nan"), float("nan")
    roll = float(np.degrees(np.arctan2(eye_vec[1], eye_vec[0])))
    u = down / down_len  # along the face, eyes -> mouth
    v = np.array([u[1], -u[0]])  # across the face; points to larger x when upright
    # Sideways: the eye line foreshortens with cos(yaw) and the nose tip moves with its depth.
    offset = float(np.dot(nose - eye_mid, v)) / eye_dist
    depth = _MODEL_NOSE[2] - (_MODEL_NOSE[1] / _MODEL_MOUTH[1]) * _MODEL_MOUTH[2]
    yaw = float(np.degrees(np.arctan2(offset, depth)))
    # Up-down: ratio of nose height to mouth height along the face axis, compared with the
    # same ratio of the model rotated by each pitch.
    ratio = float(np.dot(nose - eye_mid, u)) / down_len
    if ratio < _PITCH_RATIOS[0]:  # beyond the table: far turned, report the limit side
        pitch = float(np.copysign(90.0, _PITCH_DEGREES[0]))
    elif ratio > _PITCH_RATIOS[-1]:
        pitch = float(np.copysign(90.0, _PITCH_DEGREES[-1]))
    else:
        pitch = float(np.interp(ratio, _PITCH_RATIOS, _PITCH_DEGREES))
    return yaw, pitch, roll


def _pitch_table() -> tuple[np.ndarray, np.ndarray]:
    """Nose ratio of the model face for pitches from -70 to +70 degrees (monotonic)."""
    degrees = np.linspace(-70.0, 70.0, 281)
    rad = np.radians(degrees)
    # Tilting the face down (positive pitch) moves points near the camera (z > 0) down.
    nose_y = _MODEL_NOSE[1] * np.cos(rad) + _MODEL_NOSE[2] * np.sin(rad)
    mouth_y = _MODEL_MOUTH[1] * np.cos(rad) + _MODEL_MOUTH[2] * np.sin(rad)
    ratios = nose_y / mouth_y
    order = np.argsort(ratios)
    return ratios[order], degrees[order]


_PITCH_RATIOS, _PITCH_DEGREES = _pitch_table()


def _face_box_pixels(rgb: np.ndarray, face: Face) -> np.ndarray:
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = face.box
    ix0, iy0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    ix1, iy1 = min(int(np.ceil(x1)), width), min(int(np.ceil(y1)), height)
    return rgb[iy0:iy1, ix0:ix1]


def sharpness(face_pixels: np.ndarray, width_px: int = 112) -> float:
    """Variance of the Laplacian of the face, grey, resized to `width_px` wide (scale-free)."""
    import cv2  # local import: only the gate needs OpenCV

    grey = cv2.cvtColor(face_pixels, cv2.COLOR_RGB2GRAY)
    scale = width_px / grey.shape[1]
    size = (width_px, max(int(round(grey.shape[0] * scale)), 3))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    grey = cv2.resize(grey, size, interpolation=interpolation).astype(np.float32)
    return float(cv2.Laplacian(grey, cv2.CV_32F, ksize=1).var())


def _outside_fraction(face: Face, width: int, height: int) -> float:
    x0, y0, x1, y1 = face.box
    area = max(x1 - x0, 1e-6) * max(y1 - y0, 1e-6)
    inside_w = max(min(x1, width) - max(x0, 0.0), 0.0)
    inside_h = max(min(y1, height) - max(y0, 0.0), 0.0)
    return float(1.0 - inside_w * inside_h / area)


def _valid_image(rgb: object) -> bool:
    return (
        isinstance(rgb, np.ndarray)
        and rgb.dtype == np.uint8
        and rgb.ndim == 3
        and rgb.shape[2] == 3
        and rgb.shape[0] >= 8
        and rgb.shape[1] >= 8
    )


def _valid_face(face: object) -> bool:
    if not isinstance(face, Face):
        return False
    try:
        lm = np.asarray(face.landmarks, dtype=np.float64)
        box = np.asarray(face.box, dtype=np.float64)
        score = float(face.score)
    except (TypeError, ValueError):
        return False
    return (
        lm.shape == (5, 2)
        and bool(np.all(np.isfinite(lm)))
        and box.shape == (4,)
        and bool(np.all(np.isfinite(box)))
        and face.width > 0
        and face.height > 0
        and bool(np.isfinite(score))
    )


def assess(rgb: np.ndarray, faces: Sequence[Face], config: QualityConfig | None = None) -> QualityResult:
    """Gate one frame: exactly one usable face, whole, near enough, frontal, lit and sharp.

    The first failure is the reason, in this order: no face, several faces, cut off, too small,
    too dark / too bright (landmarks are unreliable in bad light, so light comes before pose),
    turned, blurred. Never raises on bad input:
    a malformed image or face list gives INVALID_IMAGE / NO_FACE.
    """
    cfg = config or QualityConfig()
    if not _valid_image(rgb):
        return QualityResult(False, INVALID_IMAGE)
    height, width = rgb.shape[:2]
    try:
        candidates = list(faces or [])
    except TypeError:  # not a sequence of faces
        candidates = []
    usable = [f for f in candidates if _valid_face(f) and f.score >= cfg.min_detector_score]
    measures: dict[str, Decoded] = {"faces": len(usable)}
    if not usable:
        return QualityResult(False, NO_FACE, measures)
    face = max(usable, key=lambda f: f.width * f.height)
    rivals = [f for f in usable if f is not face and f.width >= cfg.secondary_face_ratio * face.width]
    if rivals:
        return QualityResult(False, SEVERAL_FACES, measures, face)

    lm = np.asarray(face.landmarks, dtype=np.float64)
    outside = _outside_fraction(face, width, height)
    margin = cfg.edge_margin_px
    landmarks_inside = bool(
        np.all(lm[:, 0] >= margin) and np.all(lm[:, 0] <= width - 1 - margin)
        and np.all(lm[:, 1] >= margin) and np.all(lm[:, 1] <= height - 1 - margin)
    )
    x0, y0, x1, y1 = face.box
    # Detectors clamp boxes to the frame, so a face cut by the edge shows as a box on the edge.
    touches_edge = bool(x0 <= margin or y0 <= margin or x1 >= width - 1 - margin or y1 >= height - 1 - margin)
    measures["outside_fraction"] = round(outside, 3)
    measures["touches_edge"] = touches_edge
    if outside > cfg.max_outside_fraction or not landmarks_inside or touches_edge:
        return QualityResult(False, FACE_CUT_OFF, measures, face)

    eye_distance = float(np.hypot(*(lm[1] - lm[0])))
    measures["eye_distance_px"] = round(eye_distance, 1)
    measures["face_width_px"] = round(face.width, 1)
    if eye_distance < cfg.min_eye_distance_px or face.width < cfg.min_face_width_px:
        return QualityResult(False, FACE_TOO_SMALL, measures, face)

    pixels = _face_box_pixels(rgb, face)
    if pixels.shape[0] < 3 or pixels.shape[1] < 3:
        return QualityResult(False, FACE_CUT_OFF, measures, face)
    luma = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    mean_luma = float(luma.mean())
    saturated = float((luma >= 250.0).mean())
    measures.update(mean_luma=round(mean_luma, 1), saturated_fraction=round(saturated, 3))
    if mean_luma < cfg.min_mean_luma:
        return QualityResult(False, FACE_TOO_DARK, measures, face)
    if mean_luma > cfg.max_mean_luma or saturated > cfg.max_saturated_fraction:
        return QualityResult(False, FACE_TOO_BRIGHT, measures, face)

    yaw, pitch, roll = estimate_pose(lm)
    measures.update(yaw_deg=round(yaw, 1), pitch_deg=round(pitch, 1), roll_deg=round(roll, 1))
    if not (abs(yaw) <= cfg.max_yaw_deg and abs(pitch) <= cfg.max_pitch_deg):  # NaN fails too
        return QualityResult(False, FACE_TURNED, measures, face)

    sharp = sharpness(pixels, cfg.sharpness_width_px)
    measures["sharpness"] = round(sharp, 1)
    if sharp < cfg.min_sharpness:
        return QualityResult(False, FACE_BLURRED, measures, face)
    return QualityResult(True, None, measures, face)
