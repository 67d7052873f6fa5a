"""BlazeFace (front, 128x128) face detector: letterbox, TFLite inference, anchor decoding, NMS."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware.vision.runtime import TFLiteModel
from firmware.vision.types import Face

INPUT_SIZE = 128
# The model's outputs are scaled into [-1, 1] so that int8 keeps its precision (see
# tflite_models/blazeface.py): regressors in units of 128 input pixels, logits in units of 12.
REGRESSOR_UNIT = 128.0
LOGIT_UNIT = 12.0
# The refinement crop is this many face-box widths wide (the face then fills ~45 % of it).
REFINE_CONTEXT = 2.2
# Ratio of mouth width to inter-eye distance in the ArcFace 5-point template (29.2 / 35.2 px);
# BlazeFace gives only the mouth centre, so the corners are placed along the eye axis.
MOUTH_WIDTH_PER_EYE_DISTANCE = 0.83


def blazeface_front_anchors() -> np.ndarray:
    """Anchor centres (896, 2) in [0, 1] for the 128x128 front model.

    MediaPipe's SSD anchor options for this model: strides 8, 16, 16, 16; anchor offset 0.5;
    fixed anchor size; two anchors per cell per layer, so layers of equal stride merge into
    16x16x2 + 8x8x6 = 896 anchors.
    """
    centres: list[tuple[float, float]] = []
    for grid, per_cell in ((INPUT_SIZE // 8, 2), (INPUT_SIZE // 16, 6)):
        for y in range(grid):
            for x in range(grid):
                for _ in range(per_cell):
                    centres.append(((x + 0.5) / grid, (y + 0.5) / grid))
    return np.asarray(centres, dtype=np.float32)


@dataclass(frozen=True)
class DetectorConfig:
    """Detection settings: score threshold (after sigmoid), NMS overlap, maximum faces."""

    min_score: float = 0.6
    iou_threshold: float = 0.3
    max_faces: int = 10
    refine: bool = True  # second pass on a crop around each face for finer keypoints
    refine_flip: bool = True  # also run the mirrored crop and average the keypoints
    # Crop widths (in face-box widths) of the refinement passes; keypoints are averaged.
    refine_contexts: tuple[float, ...] = (REFINE_CONTEXT,)
    # Refine only faces narrower than this many pixels of the 128-px first-pass input (None:
    # every face). A face that already fills the input gains no resolution from a crop.
    refine_below_px: float | None = None
    # With refine_flip, the unmirrored crop pass runs only where it would enlarge the face at
    # least this much over the first pass (None: always); elsewhere the first-pass keypoints
    # stand in for it, as the crop would show the face at about the same scale. The mirrored
    # pass runs either way (it cancels the int8 model's left/right keypoint bias). On LFW,
    # where faces already fill ~45 % of the frame, this saves one of three passes at equal
    # accuracy (docs/models.md).
    crop_min_zoom: float | None = 1.3


def resize_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize for the detector input: bilinear, as MediaPipe feeds BlazeFace, after exact 2x box
    halvings while the image is at least twice the target (bilinear alone would alias there).

    OpenCV's INTER_AREA gives about the same pixels (mean difference ~0.5 grey levels) but its
    general-ratio path costs ~0.6 ms per 250-px face crop here, as much as half a detector pass;
    its 2x path and bilinear cost ~0.05 ms. Each step maps pixel centres by its own ratio, so the
    whole maps frame points exactly as one direct resize to (width, height) does.
    """
    import cv2

    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe-style weighted NMS: overlapping candidates are averaged by score.

    Averaging (rather than keeping the single best box) steadies the keypoints, which matter
    more to us than the box because they drive the alignment.
    """
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    remaining = np.ones(len(scores), dtype=bool)
    results: list[tuple[np.ndarray, np.ndarray, float]] = []
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        members = (_iou(boxes[i], boxes) >= iou_threshold) & remaining
        members[i] = True  # a degenerate (zero-area) box still stands for itself
        remaining &= ~members
        weights = scores[members][:, None]
        box = (boxes[members] * weights).sum(0) / weights.sum()
        kps = (keypoints[members].reshape(-1, 12) * weights).sum(0) / weights.sum()
        results.append((box, kps.reshape(6, 2), float(scores[i])))
        if len(results) >= limit:
            break
    return results


def five_points_from_blazeface(kps: np.ndarray) -> np.ndarray:
    """Map BlazeFace's 6 keypoints to the 5-point order of `Face.landmarks`.

    BlazeFace gives both eye centres, nose tip, mouth centre and the two ear tragions. Mouth
    corners are estimated from the mouth centre along the eye axis (see module constant); the
    alignment uses their mean, which is the measured mouth centre exactly.
    """
    eyes = kps[0:2]
    left_eye, right_eye = (eyes[0], eyes[1]) if eyes[0, 0] <= eyes[1, 0] else (eyes[1], eyes[0])
    half_mouth = 0.5 * MOUTH_WIDTH_PER_EYE_DISTANCE * (right_eye - left_eye)
    mouth = kps[3]
    return np.stack([left_eye, right_eye, kps[2], mouth - half_mouth, mouth + half_mouth]).astype(
        np.float32
    )


class BlazeFaceDetector:
    """Detects faces in an RGB uint8 image with the BlazeFace front model (int8 TFLite).

    The whole frame is letterboxed (padded to a square, aspect kept) into 128x128, so one pass
    covers the frame; the front model is meant for faces within a couple of metres of the
    camera, which is the kiosk's case.
    """

    def __init__(
        self, model_path: str | Path, num_threads: int = 2, config: DetectorConfig | None = None
    ) -> None:
        self.model = TFLiteModel(model_path, num_threads=num_threads)
        if self.model.input_shape != (1, INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"unexpected detector input shape {self.model.input_shape}")
        self.config = config or DetectorConfig()
        self.anchors = blazeface_front_anchors()
        self._anchor_px = self.anchors * INPUT_SIZE
        heads = [o.shape[-1] for o in self.model.outputs]
        if sorted(heads) != [1, 16]:
            raise ValueError(f"unexpected detector output heads {heads}")
        self._regressor_head, self._logit_head = heads.index(16), heads.index(1)

    @staticmethod
    def letterbox(rgb: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        """Resize into a 128x128 square with zero padding; return (image, scale, pad_x, pad_y).

        A frame pixel (x, y) maps to (x * scale + pad_x, y * scale + pad_y) in the square.
        """
        h, w = rgb.shape[:2]
        scale = INPUT_SIZE / max(h, w)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        resized = resize_to(rgb, new_w, new_h)
        square = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
        pad_x, pad_y = (INPUT_SIZE - new_w) // 2, (INPUT_SIZE - new_h) // 2
        square[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
        return square, scale, float(pad_x), float(pad_y)

    def raw_outputs(self, square: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the model on a 128x128 RGB uint8 square; return (regressors, logits)."""
        outputs = self.model.run_pixels(square)
        regressors = outputs[self._regressor_head].reshape(-1, 16) * REGRESSOR_UNIT
        logits = outputs[self._logit_head].reshape(-1) * LOGIT_UNIT
        return regressors, logits

    def decode(
        self, regressors: np.ndarray, logits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode anchors: boxes (N, 4) and keypoints (N, 6, 2) in square pixels, scores (N,)."""
        # Pre-filter on the logit (sigmoid is monotonic; the margin covers float rounding), then
        # take the sigmoid of the few candidates left instead of all 896.
        min_score = self.config.min_score
        if 0.0 < min_score < 1.0:
            keep = logits >= np.log(min_score / (1.0 - min_score)) - 1e-3
        else:  # degenerate settings: no pre-filter, only the exact test below
            keep = np.ones(logits.shape, dtype=bool)
        reg, anchor_px = regressors[keep], self._anchor_px[keep]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[keep], -50.0, 50.0)))
        keep_sure = scores >= self.config.min_score  # the exact test, as before
        reg, anchor_px, scores = reg[keep_sure], anchor_px[keep_sure], scores[keep_sure]
        centres = reg[:, 0:2] + anchor_px
        half = reg[:, 2:4] / 2.0
        boxes = np.concatenate([centres - half, centres + half], axis=1)
        keypoints = reg[:, 4:16].reshape(-1, 6, 2) + anchor_px[:, None, :]
        return boxes, keypoints, scores

    @staticmethod
    def crop_square(rgb: np.ndarray, cx: float, cy: float, side: float) -> tuple[np.ndarray, float, float, float]:
        """Square crop of `side` frame pixels centred on (cx, cy), zero outside the frame,
        resized to 128x128; returns (image, scale, pad_x, pad_y) like `letterbox`."""
        h, w = rgb.shape[:2]
        side_px = max(8, int(round(side)))
        x0, y0 = int(round(cx - side_px / 2)), int(round(cy - side_px / 2))
        crop = np.zeros((side_px, side_px, 3), dtype=np.uint8)
        sx0, sy0 = max(0, x0), max(0, y0)
        sx1, sy1 = min(w, x0 + side_px), min(h, y0 + side_px)
        if sx1 > sx0 and sy1 > sy0:
            crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
        square = resize_to(crop, INPUT_SIZE, INPUT_SIZE)
        scale = INPUT_SIZE / side_px
        return square, scale, -x0 * scale, -y0 * scale

    def _detect_square(
        self, square: np.ndarray, scale: float, pad_x: float, pad_y: float
    ) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """(box corners, 6 keypoints, score) per face, mapped to frame pixels."""
        boxes, keypoints, scores = self.decode(*self.raw_outputs(square))
        if len(scores) == 0:
            return []
        offset = np.array([pad_x, pad_y], dtype=np.float32)
        found = []
        for box, kps, score in weighted_nms(
            boxes, keypoints, scores, self.config.iou_threshold, self.config.max_faces
        ):
            found.append(((box.reshape(2, 2) - offset) / scale, (kps - offset) / scale, score))
        return found

    def _refine(self, rgb: np.ndarray, corners: np.ndarray, kps: np.ndarray,
                first_scale: float) -> np.ndarray:
        """Second pass on a crop around one face, where it fills ~45 % of the input (as in the
        detector's training crops): keypoints then come from 2-5x more pixels, which helps
        faces that are small in the frame. With `refine_flip`, the mirrored crop is run too and
        the two keypoint sets are averaged: that cancels the int8 model's left/right-asymmetric
        keypoint bias and halves the variance of its rounding noise. `first_scale` is the first
        pass's frame-to-input scale (see `crop_min_zoom`)."""
        import cv2

        size = float(np.max(corners[1] - corners[0]))
        centre = corners.mean(axis=0)
        estimates = []
        mirror_modes = [False, True] if self.config.refine_flip else [False]
        variants = [(c, m) for c in self.config.refine_contexts for m in mirror_modes]
        min_zoom = self.config.crop_min_zoom
        if min_zoom is not None and self.config.refine_flip:
            # Unmirrored crops that would barely enlarge the face: the first pass stands in.
            zoomed = [(c, m) for c, m in variants if m or INPUT_SIZE / (size * c) >= min_zoom * first_scale]
            if len(zoomed) < len(variants):
                estimates.append(kps)
                variants = zoomed
        for context, mirrored in variants:
            square, scale, pad_x, pad_y = self.crop_square(rgb, centre[0], centre[1], size * context)
            image = cv2.flip(square, 1) if mirrored else square  # 10x faster than a numpy copy
            found = self._detect_square(image, 1.0, 0.0, 0.0)
            if not found:
                continue
            if mirrored:
                # Back to unmirrored input coordinates; the subject's left and right swap.
                found = [
                    (
                        np.array([[INPUT_SIZE - b[1, 0], b[0, 1]], [INPUT_SIZE - b[0, 0], b[1, 1]]]),
                        np.stack([INPUT_SIZE - k[:, 0], k[:, 1]], axis=1)[[1, 0, 2, 3, 5, 4]],
                        sc,
                    )
                    for b, k, sc in found
                ]
            offset = np.array([pad_x, pad_y], dtype=np.float32)
            found = [((b - offset) / scale, (k - offset) / scale, sc) for b, k, sc in found]
            # The refined face is the one whose centre is nearest the first-pass centre.
            best = min(found, key=lambda f: float(np.linalg.norm(f[0].mean(axis=0) - centre)))
            if np.linalg.norm(best[0].mean(axis=0) - centre) <= 0.25 * size:
                estimates.append(best[1])
        return np.mean(estimates, axis=0) if estimates else kps

    def detect(self, rgb: np.ndarray, largest_only: bool = False, min_width: float = 0.0,
               refine_all: bool = True) -> list[Face]:
        """Faces in an RGB uint8 (H, W, 3) image, highest score first, in frame coordinates.

        With `largest_only`, only the largest face (by box area) at least `min_width` frame
        pixels wide is refined and returned: what `FacePipeline.embed` needs, without the
        refinement passes of faces that it would drop anyway. With `refine_all=False` every
        face is returned but only the largest is refined (the others keep their first-pass
        keypoints; boxes and scores come from the first pass either way): what the quality
        gates need, which look only at the other faces' sizes.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError("detect() needs an RGB uint8 array shaped (H, W, 3)")
        if min(rgb.shape[:2]) < 8:
            return []
        h, w = rgb.shape[:2]
        square, scale, pad_x, pad_y = self.letterbox(rgb)
        # (clipped box, unclipped corners, keypoints, score): the box is clipped to the frame
        # (what Face.box reports) but the refinement crop is centred on the unclipped box.
        found = [
            (np.clip(corners, 0, [w, h]), corners, kps, score)
            for corners, kps, score in self._detect_square(square, scale, pad_x, pad_y)
        ]
        # width and area computed as Face.width / Face.height do, on the clipped box
        sides = [(float(b[1, 0]) - float(b[0, 0]), float(b[1, 1]) - float(b[0, 1])) for b, *_ in found]
        wide = [i for i, (width, _) in enumerate(sides) if width >= min_width]
        largest = max(wide, key=lambda i: sides[i][0] * sides[i][1]) if wide else None
        if largest_only:
            found = [found[largest]] if largest is not None else []
            largest = 0
        limit = self.config.refine_below_px
        faces = []
        for index, (box, corners, kps, score) in enumerate(found):
            width_px = float(np.max(corners[1] - corners[0])) * scale  # in first-pass pixels
            wanted = refine_all or index == largest
            if wanted and self.config.refine and (limit is None or width_px < limit):
                kps = self._refine(rgb, corners, kps, scale)
            faces.append(
                Face(
                    box=tuple(float(v) for v in box.reshape(-1)),  # type: ignore[arg-type]
                    landmarks=five_points_from_blazeface(kps),
                    score=score,
                )
            )
        return faces
