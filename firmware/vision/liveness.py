"""Presentation-attack cues across frames: planar motion (photo), blinks, screen/print patterns.

Three cues, all computed in memory from a short window of frames of one face:

* Planarity. Feature points inside the face are tracked (pyramidal Lucas-Kanade, forward-
  backward checked) from the first frame to each later one, and a homography is fitted by least
  squares. A flat photo or screen moved in any way maps exactly by a homography; a real head
  that turns or moves shows parallax (nose against cheeks) that no homography explains.
  Large motion with a tiny residual is a photo held up; a large residual is 3-D evidence.
* Blink / eye change. The eye regions, normalised by the landmarks, change transiently while
  the rest of the face does not. A printed photo cannot blink.
* Screen or print pattern. Pixel grids of screens and halftone dots of prints leave sharp
  isolated peaks in the face's spatial spectrum (moire), where skin gives a smooth spectrum.

See docs/faces.md for what these do not stop (a video replay on a high-resolution screen held
still at the right distance, masks, ...). No model is used here; the single-frame PAD model
(MiniFASNet, int8) is firmware/vision/pad.py, and the kiosk combines the two (docs/faces.md).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .types import Face

from firmware.protocol.decoded import Decoded

# Stable reason codes.
NOT_ENOUGH_FRAMES = "NOT_ENOUGH_FRAMES"
PLANAR_MOTION = "PLANAR_MOTION"
SCREEN_PATTERN = "SCREEN_PATTERN"
NO_LIVENESS_CUES = "NO_LIVENESS_CUES"
INVALID_INPUT = "INVALID_INPUT"


@dataclass(frozen=True)
class LivenessConfig:
    """Thresholds (lengths per eye distance, so they hold at any face size)."""

    min_frames: int = 6
    max_frames: int = 20  # window length; older frames are dropped
    min_tracked_points: int = 12
    # Motion of the tracked points (median, per eye distance) needed before planarity is judged.
    planar_min_motion: float = 0.10
    # Plane-compensated residual (90th percentile, per eye distance) from which the motion was
    # three-dimensional: live evidence. Below it, large motion means a flat carrier (photo or
    # screen), even if something changes locally on it (cut-out eyes). Synthetic sequences: flat
    # 0.002-0.003, a flat photo with blinking eyes ~0.014, a head turning 16 degrees 0.04-0.08.
    depth_min_residual: float = 0.020
    # Parallax needs motion: a residual counts as depth only once the points moved this much
    # (median, per eye distance). Without it, tracking noise on a still scene (sensor noise, a
    # small face) reached the residual bar: 2 of 300 random still scenes judged live.
    depth_min_motion: float = 0.05
    # Eye-region change beyond the change of the rest of the face (normalised units).
    blink_min_score: float = 0.25  # synthetic: no blink <= 0.02, painted blink >= 0.43
    # Spectral peak over its ring's median in the face (>= this: a periodic pattern).
    screen_min_peak_ratio: float = 12.0
    screen_min_fraction: float = 0.5  # share of frames showing the pattern
    forward_backward_max_px: float = 0.7
    # Cost bounds: track through at most this many frames of the window (evenly spaced, first
    # and last included) and measure parallax on at most `parallax_frames` of them.
    track_frames: int = 20
    parallax_frames: int = 4
    screen_frames: int = 8  # frames whose spectrum is examined


@dataclass(frozen=True)
class LivenessResult:
    live: bool
    reason: str | None
    measures: dict[str, Decoded] = field(default_factory=dict)


@dataclass
class _Frame:
    grey: np.ndarray  # uint8 greyscale of the face neighbourhood only
    origin: tuple[int, int]  # (x, y) of grey[0, 0] in the frame
    landmarks: np.ndarray
    box: tuple[float, float, float, float]

    @property
    def eye_distance(self) -> float:
        return float(np.hypot(*(self.landmarks[1] - self.landmarks[0])))


def spectral_peak_ratio(grey: np.ndarray) -> float:
    """Largest mid/high-frequency spectral peak over the median of its frequency ring."""
    g = grey.astype(np.float32)
    g -= g.mean()
    height, width = g.shape
    if height < 16 or width < 16:
        return 0.0
    window = np.outer(np.hanning(height), np.hanning(width)).astype(np.float32)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(g * window)))
    yy, xx = np.mgrid[-(height // 2) : height - height // 2, -(width // 2) : width - width // 2]
    radius = np.hypot(yy / height, xx / width)  # cycles per pixel
    rings = np.minimum((radius * 64).astype(np.int64), 63).ravel()
    values = spectrum.ravel()
    # Median of every ring at once: sort by (ring, value) and pick each ring's middle element.
    order = np.lexsort((values, rings))
    counts = np.bincount(rings, minlength=64)
    starts = np.cumsum(counts) - counts
    medians = np.zeros(64, dtype=np.float64)
    present = counts > 0
    medians[present] = values[order[starts[present] + (counts[present] - 1) // 2]]
    rings = rings.reshape(spectrum.shape)
    # Skin detail lives at low frequencies; screen grids and halftone dots sit above 0.12 c/px.
    band = (radius > 0.12) & (radius < 0.5)
    ratio = spectrum / (medians[rings] + 1e-6)
    return float(ratio[band].max()) if band.any() else 0.0


def _eye_and_reference_patches(frame: _Frame) -> tuple[np.ndarray, np.ndarray] | None:
    """Eye patches and a nose-cheek reference patch, warped to a landmark-normalised frame."""
    import cv2

    lm = frame.landmarks - np.asarray(frame.origin, dtype=np.float32)
    eye_vec = lm[1] - lm[0]
    dist = float(np.hypot(*eye_vec))
    if dist < 4:
        return None
    # Similarity transform: eye centres to (8, 8) and (40, 8) of a 48x40 canvas.
    angle = np.arctan2(eye_vec[1], eye_vec[0])
    scale = 32.0 / dist
    cos, sin = scale * np.cos(-angle), scale * np.sin(-angle)
    matrix = np.array([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=np.float32)
    matrix[:, 2] = np.array([8.0, 8.0]) - matrix[:, :2] @ lm[0]
    back = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0], [48, 0], [0, 40], [48, 40]], dtype=np.float32) @ back[:, :2].T + back[:, 2]
    height, width = frame.grey.shape
    if corners.min() < 0 or np.any(corners[:, 0] > width) or np.any(corners[:, 1] > height):
        return None  # the eye region leaves the stored crop: no honest measurement
    canvas = cv2.warpAffine(frame.grey, matrix, (48, 40), flags=cv2.INTER_LINEAR).astype(np.float32)
    eyes = np.concatenate([canvas[2:14, 0:16], canvas[2:14, 32:48]], axis=1)
    reference = canvas[18:34, 8:40]  # below the eyes: nose bridge and cheeks
    return eyes, reference


def _evenly_spaced(count: int, most: int) -> list[int]:
    """Up to `most` indices of range(count), evenly spaced, first and last included."""
    if count <= most:
        return list(range(count))
    return sorted({int(round(x)) for x in np.linspace(0, count - 1, max(most, 2))})


def _normalised(patch: np.ndarray) -> np.ndarray:
    return (patch - patch.mean()) / (patch.std() + 4.0)  # +4: flat patches do not explode


class LivenessChecker:
    """Collects frames of one face (memory only) and judges them.

    Call `add_frame` with each frame and the face found in it, then `assess`. `reset` when
    the person changes. Frames are kept as greyscale crops of the face neighbourhood, at most
    `max_frames` of them, and never leave this object.
    """

    def __init__(self, config: LivenessConfig | None = None) -> None:
        self.config = config or LivenessConfig()
        self._frames: deque[_Frame] = deque(maxlen=self.config.max_frames)
        self._rejected = 0

    def __len__(self) -> int:
        return len(self._frames)

    def reset(self) -> None:
        self._frames.clear()
        self._rejected = 0

    def add_frame(self, rgb: np.ndarray, face: Face) -> bool:
        """Keep this frame's face neighbourhood; False (frame ignored) on unusable input."""
        import cv2

        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3):
            self._rejected += 1
            return False
        try:
            lm = np.asarray(getattr(face, "landmarks", None), dtype=np.float32)
            box = np.asarray(getattr(face, "box", None), dtype=np.float64)
        except (TypeError, ValueError):
            self._rejected += 1
            return False
        if lm.shape != (5, 2) or not np.all(np.isfinite(lm)):
            self._rejected += 1
            return False
        if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
            self._rejected += 1
            return False
        height, width = rgb.shape[:2]
        x0, y0, x1, y1 = (float(v) for v in box)
        pad_x, pad_y = 0.5 * (x1 - x0), 0.5 * (y1 - y0)  # room for the face to move
        ix0, iy0 = max(int(x0 - pad_x), 0), max(int(y0 - pad_y), 0)
        ix1, iy1 = min(int(x1 + pad_x) + 1, width), min(int(y1 + pad_y) + 1, height)
        inside = (lm[:, 0] >= ix0) & (lm[:, 0] < ix1) & (lm[:, 1] >= iy0) & (lm[:, 1] < iy1)
        if ix1 - ix0 < 16 or iy1 - iy0 < 16 or not inside.all():  # landmarks must sit on the face
            self._rejected += 1
            return False
        grey = cv2.cvtColor(np.ascontiguousarray(rgb[iy0:iy1, ix0:ix1]), cv2.COLOR_RGB2GRAY)
        self._frames.append(_Frame(grey, (ix0, iy0), lm.copy(), (x0, y0, x1, y1)))
        return True

    # -- cues -------------------------------------------------------------------------------

    @staticmethod
    def _canvases(ref: _Frame, other: _Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Both crops pasted on one canvas each, in shared coordinates; returns the canvas offset."""
        x0 = min(ref.origin[0], other.origin[0])
        y0 = min(ref.origin[1], other.origin[1])
        x1 = max(ref.origin[0] + ref.grey.shape[1], other.origin[0] + other.grey.shape[1])
        y1 = max(ref.origin[1] + ref.grey.shape[0], other.origin[1] + other.grey.shape[0])
        canvases = []
        for frame in (ref, other):
            canvas = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
            ox, oy = frame.origin[0] - x0, frame.origin[1] - y0
            canvas[oy : oy + frame.grey.shape[0], ox : ox + frame.grey.shape[1]] = frame.grey
            canvases.append(canvas)
        return canvases[0], canvases[1], np.array([x0, y0], dtype=np.float32)

    def _lk(self, first: np.ndarray, second: np.ndarray, points: np.ndarray, levels: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """Lucas-Kanade from `first` to `second` (canvas coords) with a forward-backward check."""
        import cv2

        start = points.reshape(-1, 1, 2).astype(np.float32)
        params = dict(winSize=(15, 15), maxLevel=levels,
                      criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 0.005))
        # OpenCV's stubs have no overload for keyword arguments passed as **params
        moved, status, _ = cv2.calcOpticalFlowPyrLK(  # type: ignore[call-overload]
            first, second, start, None, **params)
        back, status_back, _ = cv2.calcOpticalFlowPyrLK(  # type: ignore[call-overload]
            second, first, moved, None, **params)
        fb_error = np.linalg.norm((back - start).reshape(-1, 2), axis=1)
        good = (status.ravel() == 1) & (status_back.ravel() == 1) & (fb_error < self.config.forward_backward_max_px)
        return moved.reshape(-1, 2), good

    def _track(self, ref: _Frame, other: _Frame, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points of `ref` tracked into `other` (frame coords) and a mask of the reliable ones."""
        first, second, shift = self._canvases(ref, other)
        moved, good = self._lk(first, second, points - shift)
        return moved + shift, good

    def _parallax(self, ref: _Frame, other: _Frame, start: np.ndarray, homography: np.ndarray) -> float | None:
        """Residual motion (pixels, 90th percentile) once the best homography is taken out.

        Plane + parallax: warp `other` back onto `ref` with the homography fitted to the tracks,
        then track again. The leftover motion is small, where Lucas-Kanade is accurate, so a
        flat photo leaves almost nothing while a real head leaves the parallax of its relief.
        """
        import cv2

        first, second, shift = self._canvases(ref, other)
        to_canvas = np.array([[1, 0, -shift[0]], [0, 1, -shift[1]], [0, 0, 1]], dtype=np.float64)
        canvas_h = to_canvas @ homography @ np.linalg.inv(to_canvas)
        height, width = first.shape
        unwarped = cv2.warpPerspective(second, canvas_h, (width, height), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR)
        points = start - shift
        moved, good = self._lk(first, unwarped, points, levels=1)  # what is left is small
        if good.sum() < self.config.min_tracked_points:
            return None
        src, dst = points[good], moved[good]
        correction, _ = cv2.findHomography(src, dst, 0)
        if correction is None:
            return None
        projected = cv2.perspectiveTransform(src.reshape(-1, 1, 2).astype(np.float64), correction).reshape(-1, 2)
        # 90th percentile: parallax concentrates on a minority of points (nose, face edge),
        # while tracking noise is spread evenly over all of them.
        return float(np.percentile(np.linalg.norm(projected - dst, axis=1), 90))

    def _planarity(self) -> tuple[dict[str, float], list[np.ndarray | None]]:
        """Max motion and max plane-compensated residual (per eye distance) from frame 0 on,
        and each frame's homography from frame 0 (None where tracking failed).

        Points are tracked frame to frame (small steps track accurately) and each frame's
        positions are compared with their start in frame 0.
        """
        import cv2

        all_frames = list(self._frames)
        homographies: list[np.ndarray | None] = [np.eye(3)] + [None] * (len(all_frames) - 1)
        picks = _evenly_spaced(len(all_frames), self.config.track_frames)
        frames = [all_frames[i] for i in picks]
        parallax_at = {picks[i] for i in _evenly_spaced(len(picks), self.config.parallax_frames + 1)[1:]}
        ref = frames[0]
        dist = ref.eye_distance
        x0, y0, x1, y1 = ref.box
        mask = np.zeros_like(ref.grey)
        ox, oy = ref.origin
        mask[max(int(y0) - oy, 0) : max(int(y1) - oy, 0), max(int(x0) - ox, 0) : max(int(x1) - ox, 0)] = 255
        corners = cv2.goodFeaturesToTrack(
            ref.grey, maxCorners=120, qualityLevel=0.01, minDistance=max(dist / 12.0, 2.0), mask=mask
        )
        out = {"tracked_points": 0.0, "motion": 0.0, "residual": 0.0, "pairs": 0.0}
        if corners is None or dist < 4:
            return out, homographies
        start = corners.reshape(-1, 2) + np.asarray(ref.origin, dtype=np.float32)
        current = start.copy()
        out["tracked_points"] = float(len(start))
        for index in range(1, len(frames)):
            moved, good = self._track(frames[index - 1], frames[index], current)
            start, current = start[good], moved[good]
            if len(start) < self.config.min_tracked_points:
                break
            homography, _ = cv2.findHomography(start, current, 0)  # least squares: every point counts
            if homography is None or not np.all(np.isfinite(homography)):
                continue
            homographies[picks[index]] = homography
            if picks[index] not in parallax_at:
                continue
            residual = self._parallax(ref, frames[index], start, homography)
            if residual is None:
                continue
            motion = float(np.median(np.linalg.norm(current - start, axis=1))) / dist
            out["pairs"] += 1
            out["motion"] = max(out["motion"], motion)
            out["residual"] = max(out["residual"], residual / dist)
        return out, homographies

    def _blink_score(self, homographies: list[np.ndarray | None]) -> float:
        """Largest transient eye-region change beyond the change of the reference region.

        The eye regions are placed by frame 0's landmarks carried along by the tracked motion,
        not by each frame's detection: detectors move the eye points when the eyes close, which
        would hide the very change we look for.
        """
        import cv2

        # Frame 0's landmarks as the median of every frame's detection mapped back into frame 0:
        # one detection can be off by a few pixels, the median of the window is not.
        mapped_back = [
            cv2.perspectiveTransform(f.landmarks.reshape(-1, 1, 2).astype(np.float64), np.linalg.inv(h))
            for f, h in zip(self._frames, homographies)
            if h is not None and abs(np.linalg.det(h)) > 1e-9
        ]
        if len(mapped_back) < 3:
            return 0.0
        reference_landmarks = np.median(np.stack(mapped_back), axis=0)
        patches = []
        for frame, homography in zip(self._frames, homographies):
            if homography is None:
                continue  # untracked frame: no trustworthy eye position (fail closed)
            carried = cv2.perspectiveTransform(reference_landmarks, homography).reshape(-1, 2)
            patch = _eye_and_reference_patches(_Frame(frame.grey, frame.origin, carried.astype(np.float32), frame.box))
            if patch is not None:
                patches.append(patch)
        if len(patches) < 3:
            return 0.0
        eyes = np.stack([_normalised(e) for e, _ in patches])
        refs = np.stack([_normalised(r) for _, r in patches])
        eye_median = np.median(eyes, axis=0)  # the usual (open) state over the window
        ref_median = np.median(refs, axis=0)
        eye_change = np.abs(eyes - eye_median).mean(axis=(1, 2))
        ref_change = np.abs(refs - ref_median).mean(axis=(1, 2))
        return float((eye_change - ref_change).max())

    def _screen_scores(self) -> tuple[list[float], float]:
        """Spectral peak ratio per examined frame, and the largest share of clipped (>= 250)
        face pixels: glare off a screen or glossy print. The glare share is reported only: with
        no attack data to set a threshold, it does not decide anything."""
        scores = []
        glare = 0.0
        frames = list(self._frames)
        for frame in (frames[i] for i in _evenly_spaced(len(frames), self.config.screen_frames)):
            x0, y0, x1, y1 = frame.box
            ox, oy = frame.origin
            crop = frame.grey[max(int(y0) - oy, 0) : max(int(y1) - oy, 0), max(int(x0) - ox, 0) : max(int(x1) - ox, 0)]
            scores.append(spectral_peak_ratio(crop))
            if crop.size:
                glare = max(glare, float((crop >= 250).mean()))
        return scores, glare

    def assess(self) -> LivenessResult:
        """Judge the frames collected so far. `live` only on positive evidence of a real face."""
        cfg = self.config
        measures: dict[str, Decoded] = {"frames": len(self._frames), "rejected_frames": self._rejected}
        if len(self._frames) < cfg.min_frames:
            return LivenessResult(False, NOT_ENOUGH_FRAMES, measures)
        screen, glare = self._screen_scores()
        measures["glare_fraction"] = round(glare, 4)
        screen_fraction = float(np.mean([s >= cfg.screen_min_peak_ratio for s in screen]))
        measures.update(screen_peak_median=round(float(np.median(screen)), 2),
                        screen_fraction=round(screen_fraction, 2))
        if screen_fraction >= cfg.screen_min_fraction:
            return LivenessResult(False, SCREEN_PATTERN, measures)
        import cv2

        try:
            planar, homographies = self._planarity()
            blink = self._blink_score(homographies)
        except (cv2.error, np.linalg.LinAlgError, ValueError) as exc:  # degenerate frames: no verdict
            measures["error"] = type(exc).__name__
            return LivenessResult(False, INVALID_INPUT, measures)
        measures.update({k: round(v, 4) for k, v in planar.items()}, blink_score=round(blink, 3))
        has_depth = (planar["residual"] >= cfg.depth_min_residual
                     and planar["motion"] >= cfg.depth_min_motion)
        if planar["motion"] >= cfg.planar_min_motion and not has_depth:
            return LivenessResult(False, PLANAR_MOTION, measures)
        if has_depth or blink >= cfg.blink_min_score:
            return LivenessResult(True, None, measures)
        return LivenessResult(False, NO_LIVENESS_CUES, measures)
