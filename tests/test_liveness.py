"""Presentation-attack cues on synthetic sequences built from real LFW faces.

A printed photo is simulated by warping the image with homographies (a flat sheet moved and
tilted); a real head by draping the image on a face-shaped relief and turning it (parallax);
a blink by painting the eyes shut for two frames; a screen by overlaying a fine periodic grid.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware.vision import liveness
from firmware.vision.liveness import LivenessChecker, LivenessConfig, spectral_peak_ratio
from firmware.vision.types import Face

LM = np.array([[101, 116], [149, 116], [125, 145], [106, 170], [144, 170]], dtype=np.float32)
BOX = (75.0, 80.0, 175.0, 200.0)
CENTRE = (125.0, 140.0)


@pytest.fixture(scope="module")
def faces(shared_data: Path) -> list[np.ndarray]:
    from PIL import Image

    files = sorted((shared_data / "lfw-view1" / "images").glob("*/*.jpg"))
    if not files:
        pytest.skip("no LFW images under ../shared/data/lfw-view1/images")
    out = []
    for path in files[::499][:5]:
        with Image.open(path) as img:
            out.append(np.asarray(img.convert("RGB")))
    return out


def relief(shape: tuple[int, ...]) -> np.ndarray:
    """A head-like depth map (pixels towards the camera): ellipsoid plus a nose ridge."""
    h, w = shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    head = np.sqrt(np.clip(1 - ((xx - 125) / 80) ** 2 - ((yy - 140) / 105) ** 2, 0, None)) * 60
    nose = 22 * np.exp(-(((xx - 125) / 9) ** 2 + ((yy - 138) / 16) ** 2))
    return (head + nose).astype(np.float32)


def turn_head(rgb: np.ndarray, yaw_deg: float, pitch_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Orthographic view of the image on the relief, turned by yaw and pitch; and its landmarks."""
    import cv2

    z = relief(rgb.shape)
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = np.radians(yaw_deg), np.radians(pitch_deg)
    cx, cy = CENTRE
    sx, sy = xx.copy(), yy.copy()
    for _ in range(4):  # fixed point for the source pixel that lands on each output pixel
        zz = cv2.remap(z, sx, sy, cv2.INTER_LINEAR)
        sx = (cx + ((xx - cx) - zz * np.sin(a)) / np.cos(a)).astype(np.float32)
        sy = (cy + ((yy - cy) - zz * np.sin(b)) / np.cos(b)).astype(np.float32)
    out = cv2.remap(rgb, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    zp = np.array([z[int(round(y)), int(round(x))] for x, y in LM])
    lm = np.stack([cx + (LM[:, 0] - cx) * np.cos(a) + zp * np.sin(a), cy + (LM[:, 1] - cy) * np.cos(b) + zp * np.sin(b)], 1)
    return out, lm.astype(np.float32)


def move_photo(rgb: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """A flat photo rotated, scaled, shifted and tilted (perspective) by an amount t in [0, 1]."""
    import cv2

    centre = np.array([[1, 0, -CENTRE[0]], [0, 1, -CENTRE[1]], [0, 0, 1]], np.float64)
    r, s = np.radians(6 * t), 1 + 0.1 * t
    motion = np.array([[s * np.cos(r), -s * np.sin(r), 10 * t], [s * np.sin(r), s * np.cos(r), 5 * t], [3e-4 * t, -2e-4 * t, 1]])
    homography = np.linalg.inv(centre) @ motion @ centre
    out = cv2.warpPerspective(rgb, homography, rgb.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
    return out, cv2.perspectiveTransform(LM.reshape(-1, 1, 2), homography).reshape(-1, 2).astype(np.float32)


def close_eyes(rgb: np.ndarray) -> np.ndarray:
    """Paint both eyes shut with the skin colour beside the nose."""
    import cv2

    out = rgb.copy()
    dist = float(LM[1, 0] - LM[0, 0])
    y = int(0.5 * (LM[0, 1] + LM[2, 1]))
    colour = tuple(float(c) for c in rgb[y - 3 : y + 3, 113:137].reshape(-1, 3).mean(0))
    for x, ey in LM[:2]:
        cv2.ellipse(out, (int(x), int(ey)), (int(0.3 * dist), int(0.14 * dist)), 0, 0, 360, colour, -1)
        cv2.line(out, (int(x - 0.28 * dist), int(ey + 2)), (int(x + 0.28 * dist), int(ey + 2)), tuple(c * 0.5 for c in colour), 2)
    return cv2.GaussianBlur(out, (3, 3), 0)


def screen_grid(rgb: np.ndarray, period: float = 3.5, angle_deg: float = 20.0, amplitude: float = 8.0) -> np.ndarray:
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.radians(angle_deg)
    wave = amplitude * np.sin(2 * np.pi * (xx * np.cos(a) + yy * np.sin(a)) / period)
    return np.clip(rgb + wave[..., None], 0, 255).astype(np.uint8)


def run(frames: list[tuple[np.ndarray, np.ndarray]], seed: int = 0, config: LivenessConfig | None = None) -> liveness.LivenessResult:
    """Feed frames with camera noise and detector jitter on the landmarks."""
    rng = np.random.default_rng(seed)
    checker = LivenessChecker(config)
    for image, lm in frames:
        noisy = np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
        shift = lm.mean(0) - LM.mean(0)
        box = (BOX[0] + shift[0], BOX[1] + shift[1], BOX[2] + shift[0], BOX[3] + shift[1])
        jitter = rng.normal(0, 0.5, lm.shape).astype(np.float32)
        assert checker.add_frame(noisy, Face(tuple(map(float, box)), lm + jitter, 0.9))
    return checker.assess()


def test_photo_moved_rigidly_is_planar(faces: list[np.ndarray]) -> None:
    for i, rgb in enumerate(faces):
        result = run([move_photo(rgb, k / 7) for k in range(8)], seed=i)
        assert not result.live and result.reason == liveness.PLANAR_MOTION, result.measures
        assert result.measures["residual"] < 0.008 and result.measures["motion"] > 0.1


def test_turning_head_shows_parallax(faces: list[np.ndarray]) -> None:
    for i, rgb in enumerate(faces):
        result = run([turn_head(rgb, -8 + 16 * k / 7, 3 * np.sin(3 * k / 7)) for k in range(8)], seed=i)
        assert result.live and result.reason is None, result.measures
        assert result.measures["residual"] > 0.02


def test_still_face_without_blink_gives_no_evidence(faces: list[np.ndarray]) -> None:
    for i, rgb in enumerate(faces):
        result = run([(rgb, LM.copy()) for _ in range(8)], seed=i)
        assert not result.live and result.reason == liveness.NO_LIVENESS_CUES, result.measures


def test_blink_on_a_still_face_is_live(faces: list[np.ndarray]) -> None:
    for i, rgb in enumerate(faces):
        shut = close_eyes(rgb)
        result = run([((shut if k in (3, 4) else rgb), LM.copy()) for k in range(8)], seed=i)
        assert result.live and result.measures["blink_score"] >= 0.25, result.measures


def test_blinking_photo_moved_rigidly_is_still_refused(faces: list[np.ndarray]) -> None:
    # motion says "flat": a blink painted on a moving flat image does not rescue it
    rgb = faces[0]
    frames = []
    for k in range(8):
        image, lm = move_photo(close_eyes(rgb) if k in (3, 4) else rgb, k / 7)
        frames.append((image, lm))
    assert run(frames).reason == liveness.PLANAR_MOTION


def test_screen_grid_is_flagged(faces: list[np.ndarray]) -> None:
    for i, rgb in enumerate(faces):
        grid = screen_grid(rgb, period=3 + 0.3 * i, angle_deg=15 * i)
        result = run([turn_head(grid, -8 + 16 * k / 7) for k in range(8)], seed=i)
        assert not result.live and result.reason == liveness.SCREEN_PATTERN, result.measures


def test_spectral_peak_ratio_clean_vs_grid(faces: list[np.ndarray]) -> None:
    import cv2

    for rgb in faces:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[80:200, 75:175]
        grid = cv2.cvtColor(screen_grid(rgb), cv2.COLOR_RGB2GRAY)[80:200, 75:175]
        assert spectral_peak_ratio(grey) < 12.0 <= spectral_peak_ratio(grid)
    assert spectral_peak_ratio(np.zeros((8, 8), np.uint8)) == 0.0


def test_not_enough_frames_and_bad_input(faces: list[np.ndarray]) -> None:
    checker = LivenessChecker()
    assert checker.assess().reason == liveness.NOT_ENOUGH_FRAMES
    face = Face(BOX, LM.copy(), 0.9)
    assert not checker.add_frame(np.zeros((10, 10), np.uint8), face)  # type: ignore[arg-type]
    assert not checker.add_frame(faces[0], Face(BOX, np.full((5, 2), np.nan, np.float32), 0.9))
    assert not checker.add_frame(faces[0], Face((0.0, 0.0, 2.0, 2.0), LM.copy(), 0.9))
    assert not checker.add_frame(faces[0], "face")  # type: ignore[arg-type]
    assert not checker.add_frame(faces[0], Face((float("nan"), 0.0, 50.0, 50.0), LM.copy(), 0.9))
    assert not checker.add_frame(faces[0], Face((100.0, 100.0, 50.0, 50.0), LM.copy(), 0.9))
    assert not checker.add_frame(faces[0], Face(BOX, np.array([["a", "b"]] * 5), 0.9))  # type: ignore[arg-type]
    for _ in range(5):
        assert checker.add_frame(faces[0], face)
    result = checker.assess()
    assert not result.live and result.reason == liveness.NOT_ENOUGH_FRAMES
    assert result.measures["rejected_frames"] == 7
    checker.reset()
    assert len(checker) == 0


def test_window_keeps_only_the_latest_frames(faces: list[np.ndarray]) -> None:
    checker = LivenessChecker(LivenessConfig(max_frames=6))
    for _ in range(10):
        checker.add_frame(faces[0], Face(BOX, LM.copy(), 0.9))
    assert len(checker) == 6


def test_featureless_and_changing_frames_do_not_crash() -> None:
    checker = LivenessChecker()
    face = Face(BOX, LM.copy(), 0.9)
    for size in (250, 250, 240, 260, 250, 250, 250):
        checker.add_frame(np.full((size, size, 3), 128, np.uint8), face)
    result = checker.assess()
    assert not result.live and result.reason == liveness.NO_LIVENESS_CUES
    assert result.measures["tracked_points"] == 0


from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
# Found in CI: tracking noise on a small still face made a plane-compensated residual above the
# depth bar with no motion at all, and the scene was judged live (parallax now needs motion).
@example(size=59, frames=6, jitter=2.75, pads=[(9.0, 9.0, 0.0, 0.0), (0.0, 10.0, 17.0, 6.0)]
         + [(0.0, 0.0, 0.0, 0.0)] * 7, corrupt=-1, seed=579)
@given(
    size=st.integers(40, 160),
    frames=st.integers(6, 9),
    jitter=st.floats(0, 6),
    pads=st.lists(st.tuples(*[st.floats(0, 30)] * 4), min_size=9, max_size=9),
    corrupt=st.integers(-1, 8),
    seed=st.integers(0, 1000),
)
def test_static_scene_is_never_live(size: int, frames: int, jitter: float, pads: list, corrupt: int, seed: int) -> None:
    """A still random scene with sensor noise and a jittery detector (boxes and landmarks moving
    by several pixels, one box possibly NaN): a verdict, never an exception, and never "live"."""
    rng = np.random.default_rng(seed)
    checker = LivenessChecker()
    base = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    for index in range(frames):
        image = np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
        lm = (LM * size / 250 + rng.normal(0, jitter, LM.shape)).astype(np.float32)
        left, top, right, bottom = pads[index]
        box = (float(lm[:, 0].min() - left), float(lm[:, 1].min() - top), float(lm[:, 0].max() + right), float(lm[:, 1].max() + bottom))
        if index == corrupt:
            box = (float("nan"),) + box[1:]
        checker.add_frame(image, Face(box, lm, 0.9))
    result = checker.assess()
    assert result.reason in (liveness.NOT_ENOUGH_FRAMES, liveness.NO_LIVENESS_CUES, liveness.SCREEN_PATTERN,
                             liveness.INVALID_INPUT), result.measures
    assert not result.live


def test_glare_is_measured(faces: list[np.ndarray]) -> None:
    glared = faces[0].copy()
    glared[100:140, 90:130] = 255  # a specular patch on the face
    clean = run([(faces[0], LM.copy()) for _ in range(6)])
    shiny = run([(glared, LM.copy()) for _ in range(6)])
    assert clean.measures["glare_fraction"] < 0.01 < shiny.measures["glare_fraction"]
