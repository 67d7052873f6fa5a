"""Presentation-attack detection (PAD): Silent-Face's two MiniFASNet models, int8, on the detected face.

The original (minivision-ai/Silent-Face-Anti-Spoofing, Apache-2.0) crops the face box scaled
2.7x and 4.0x (`generate_patches.py`), resizes each crop to 80x80, runs one model on each, sums
the two softmaxes and takes the arg-max; class 1 is a live face. This module does the same on
the box our detector already found, with the int8 models `tflite_models/build_pad.py` built
(docs: tflite_models/minifasnet_int8.md). Crops exist in memory only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware.protocol.decoded import Decoded
from firmware.vision.modeldir import default_model_dir
from firmware.vision.runtime import TFLiteModel
from firmware.vision.types import Face

MANIFEST_NAME = "pad_models.json"
LIVE_INDEX = 1  # per the original anti_spoof_predict.py: 0 and 2 are attack classes
CROP_SIZE = 80
# Stable reason codes.
FACE_SPOOF = "FACE_SPOOF"
INVALID_INPUT = "INVALID_INPUT"


def crop_box(src_w: int, src_h: int, bbox: tuple[int, int, int, int],
             scale: float) -> tuple[int, int, int, int]:
    """`CropImage._get_new_box` of the original, line for line: the box (x, y, w, h) scaled
    about its centre, the scale reduced so the crop fits the frame, then shifted inside it.
    Returns (left, top, right, bottom), inclusive."""
    x, y, box_w, box_h = bbox
    scale = min((src_h - 1) / box_h, min((src_w - 1) / box_w, scale))
    new_width = box_w * scale
    new_height = box_h * scale
    center_x, center_y = box_w / 2 + x, box_h / 2 + y
    left = center_x - new_width / 2
    top = center_y - new_height / 2
    right = center_x + new_width / 2
    bottom = center_y + new_height / 2
    if left < 0:
        right -= left
        left = 0
    if top < 0:
        bottom -= top
        top = 0
    if right > src_w - 1:
        left -= right - src_w + 1
        right = src_w - 1
    if bottom > src_h - 1:
        top -= bottom - src_h + 1
        bottom = src_h - 1
    return int(left), int(top), int(right), int(bottom)


def original_bbox(face: Face) -> tuple[int, int, int, int]:
    """Our (x0, y0, x1, y1) box as the original's detector reports one: [x, y, w, h] with
    int() truncation and the +1 of `Detection.get_bbox`."""
    x0, y0, x1, y1 = face.box
    return int(x0), int(y0), int(x1 - x0 + 1), int(y1 - y0 + 1)


def crop_patch(rgb: np.ndarray, bbox: tuple[int, int, int, int], scale: float,
               size: int = CROP_SIZE) -> np.ndarray:
    """`CropImage.crop(..., crop=True)`: the scaled box cut out (inclusive bounds) and resized
    to size x size with OpenCV's default bilinear interpolation."""
    import cv2

    src_h, src_w = rgb.shape[:2]
    left, top, right, bottom = crop_box(src_w, src_h, bbox, scale)
    patch = rgb[top:bottom + 1, left:right + 1]
    if patch.size == 0:
        raise ValueError("empty face crop")
    return cv2.resize(patch, (size, size))


@dataclass(frozen=True)
class PadResult:
    """Scores only: `live_score` is the live class's share of the summed softmaxes (0..1, the
    original's `value` for a live label); `live` is the decision; `reason` FACE_SPOOF when
    refused, INVALID_INPUT when the face could not be judged, None when live."""

    live: bool
    live_score: float
    reason: str | None
    scores: tuple[float, ...] = ()  # the fused softmax over the 3 classes, halved (sums to 1)

    def as_event(self) -> dict[str, Decoded]:
        return {"pad_live_score": round(self.live_score, 3),
                "pad_scores": [round(s, 3) for s in self.scores]}


class PresentationAttackDetector:
    """Loads both models once; `check(rgb, face)` judges one detected face in one frame.

    `threshold`: a face is live when its live score is at least this and, as in the original,
    the live class is the arg-max of the summed softmaxes. None takes the build's threshold
    from `pad_models.json` (its basis is written there and in the model card).
    """

    def __init__(self, model_dir: str | Path | None = None, num_threads: int = 2,
                 threshold: float | None = None) -> None:
        folder = Path(model_dir) if model_dir is not None else default_model_dir()
        manifest: dict[str, Decoded] = json.loads((folder / MANIFEST_NAME).read_text())
        self.models: list[tuple[TFLiteModel, float]] = []
        for entry in manifest["models"]:
            model = TFLiteModel(folder / str(entry["file"]), num_threads=num_threads)
            if model.input_shape != (1, CROP_SIZE, CROP_SIZE, 3):
                raise ValueError(f"{entry['file']}: unexpected PAD input shape {model.input_shape}")
            self.models.append((model, float(entry["scale"])))
        if not self.models:
            raise ValueError(f"{MANIFEST_NAME}: no models")
        self.threshold = float(manifest["threshold"] if threshold is None else threshold)

    def scores(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """The summed softmaxes of the models over their own crops, divided by the model count
        (so the 3 values sum to 1)."""
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 \
                or rgb.dtype != np.uint8:
            raise ValueError("expected an RGB uint8 image shaped (H, W, 3)")
        bbox = original_bbox(face)
        if bbox[2] <= 0 or bbox[3] <= 0:
            raise ValueError("degenerate face box")
        total = np.zeros(3, dtype=np.float64)
        for model, scale in self.models:
            crop = crop_patch(rgb, bbox, scale)
            total += model.run_pixels(np.ascontiguousarray(crop))[0].reshape(-1)[:3]
        return total / len(self.models)

    def check(self, rgb: np.ndarray, face: Face) -> PadResult:
        """Live score and reason code for one face (never raises on bad input)."""
        try:
            fused = self.scores(rgb, face)
        except (ValueError, TypeError):
            return PadResult(False, 0.0, INVALID_INPUT)
        live_score = float(fused[LIVE_INDEX])
        live = int(np.argmax(fused)) == LIVE_INDEX and live_score >= self.threshold
        return PadResult(live, live_score, None if live else FACE_SPOOF,
                         tuple(float(s) for s in fused))
