"""Synthetic presentation attacks (printed photo re-captured, screen replay) made from a face image.

A stand-in for real attacks, used by the PAD build (calibration, int8 drift check) and by
bench/pad.py (APCER). Everything is computed in memory from the given image with a seeded
random generator, so the same image, kind, distance and seed give the same frame; nothing is
written to disk and no attack data set exists in the repository.

* `print`: the photo printed (lower dynamic range, paper white, CMY halftone dots, paper
  texture), lit by a gradient, slightly bent, held in front of a background, re-captured by the
  camera (perspective, blur, sensor noise, JPEG).
* `replay`: the photo shown on a phone screen (RGB sub-pixel grid with dark gaps, display gamma
  and tint, specular reflections), the black bezel and body in view, re-captured (the camera's
  resampling of the pixel grid gives moire), blur, noise, JPEG.

Distances are the carrier's height as a share of the camera frame's height.
"""
from __future__ import annotations

import math

import numpy as np

FRAME_H, FRAME_W = 480, 640  # camera frame of the kiosk (VGA)
KINDS = ("print", "replay")
DISTANCES: dict[str, float] = {"near": 0.9, "mid": 0.6, "far": 0.4}
HALFTONE_PERIOD_PX = 5.0  # dot pitch of the print at its rendering resolution
HALFTONE_ANGLES_DEG = (15.0, 75.0, 0.0)  # C, M, Y screens, the usual print angles
PRINT_UPSAMPLE = 3  # print rendering resolution over the photo's
SCREEN_SUBPIXELS = 3  # each screen pixel is drawn as 3x3: R, G, B stripes
# a channel lights 2 of the 9 sub-pixel cells of its pixel: 9/2 keeps its mean, a bit less dims it
STRIPE_GAIN = 4.2
JPEG_QUALITY = 85
OPTICAL_BLUR_PER_STEP = 0.38  # lens blur (Gaussian sigma) per step of downscale onto the sensor


def _background(rng: np.random.Generator) -> np.ndarray:
    """A plausible indoor background: smooth colour gradients plus low-frequency blobs."""
    import cv2

    small = rng.uniform(40, 200, size=(6, 8, 3)).astype(np.float32)
    return cv2.resize(small, (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC)


def _halftone(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """CMY halftone of an RGB image (float 0..255) at PRINT_UPSAMPLE times its size."""
    import cv2

    h, w = rgb.shape[:2]
    big = cv2.resize(rgb, (w * PRINT_UPSAMPLE, h * PRINT_UPSAMPLE), interpolation=cv2.INTER_LINEAR)
    yy, xx = np.mgrid[0:big.shape[0], 0:big.shape[1]].astype(np.float32)
    out = np.empty_like(big)
    period = HALFTONE_PERIOD_PX * rng.uniform(0.9, 1.2)
    for c, angle in enumerate(HALFTONE_ANGLES_DEG):
        a = math.radians(angle)
        u = (xx * math.cos(a) + yy * math.sin(a)) * (2 * math.pi / period)
        v = (-xx * math.sin(a) + yy * math.cos(a)) * (2 * math.pi / period)
        threshold = (np.cos(u) + np.cos(v)) * 0.25 + 0.5  # dot screen, 0..1
        coverage = 1.0 - big[..., c] / 255.0  # ink needed
        ink = (coverage > threshold).astype(np.float32)
        # ink absorbs its colour; a little of the ink's density spreads (dot gain)
        out[..., c] = 255.0 * (1.0 - 0.92 * cv2.GaussianBlur(ink, (3, 3), 0.6))
    return out


def _printed(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The photo as a sheet of paper (float, print resolution), before it is photographed."""
    img = rgb.astype(np.float32)
    # paper and ink: lower dynamic range, paper slightly warm, blacks not black
    black, white = rng.uniform(20, 45), rng.uniform(205, 235)
    img = black + img * (white - black) / 255.0
    img = _halftone(img, rng)
    h, w = img.shape[:2]
    # paper texture: fine fibre noise and a low-frequency unevenness
    fibre = rng.normal(0.0, 6.0, size=(h, w, 1)).astype(np.float32)
    img = img * np.array([1.0, 0.98, 0.93], dtype=np.float32) + fibre
    # lighting gradient across the sheet (a lamp to one side)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (xx / w - 0.5) * math.cos(angle) + (yy / h - 0.5) * math.sin(angle)
    img = img * (1.0 + rng.uniform(0.25, 0.45) * ramp)[..., None]
    return img


def _bend(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A slight bend of the sheet about its vertical axis: the middle closer to the camera,
    the edges compressed and shaded (cylindrical displacement)."""
    import cv2

    h, w = img.shape[:2]
    amount = rng.uniform(0.03, 0.07)
    xs = np.linspace(-1.0, 1.0, w, dtype=np.float32)
    # x' = x + amount * sin(pi x) / pi: stretch in the middle, compression at the edges
    src_x = (xs - amount * np.sin(np.pi * xs) / np.pi + 1.0) * (w - 1) / 2.0
    map_x = np.repeat(src_x[None, :], h, axis=0)
    map_y = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)
    bent = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    shade = 1.0 - 0.5 * amount * 4.0 * xs ** 2
    return np.asarray(bent * shade[None, :, None], dtype=np.float32)


def _screen(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The photo on a phone screen (float, sub-pixel resolution), bezel included."""
    h, w = rgb.shape[:2]
    img = rgb.astype(np.float32) / 255.0
    # display gamma against the camera's, and a cool white point, bright backlight
    img = np.power(img, rng.uniform(0.75, 0.9)) * np.array([0.92, 0.97, 1.05], np.float32)
    img = np.clip(img * rng.uniform(1.0, 1.15) + 0.04, 0.0, 1.0) * 255.0
    s = SCREEN_SUBPIXELS
    big = np.repeat(np.repeat(img, s, axis=0), s, axis=1)
    grid = np.zeros((s, s, 3), dtype=np.float32)
    for c in range(3):  # vertical R, G, B stripes, one dark row between pixel rows
        grid[: s - 1, c, c] = 1.0
    big = big * np.tile(grid, (h, w, 1)) * STRIPE_GAIN  # the stripes carry all the light
    # specular reflection: a soft bright band across the glass
    yy, xx = np.mgrid[0:h * s, 0:w * s].astype(np.float32)
    a = rng.uniform(0, math.pi)
    d = (xx - rng.uniform(0, w * s)) * math.cos(a) + (yy - rng.uniform(0, h * s)) * math.sin(a)
    band = np.exp(-(d / (rng.uniform(0.1, 0.3) * w * s)) ** 2)
    big = big + rng.uniform(35, 80) * band[..., None]
    # bezel: a black frame around the screen, then the phone's grey body edge
    bezel = int(0.06 * w * s)
    body = int(0.02 * w * s)
    framed = np.full((h * s + 2 * (bezel + body), w * s + 2 * (bezel + body), 3),
                     rng.uniform(70, 140), dtype=np.float32)
    framed[body:-body, body:-body] = rng.uniform(5, 15)
    framed[body + bezel:-(body + bezel), body + bezel:-(body + bezel)] = big
    return framed


def _place(carrier: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Photograph a carrier: perspective into the frame at the given height share."""
    import cv2

    ch, cw = carrier.shape[:2]
    out_h = share * FRAME_H
    out_w = out_h * cw / ch
    cx = FRAME_W / 2 + rng.uniform(-0.15, 0.15) * (FRAME_W - out_w)
    cy = FRAME_H / 2 + rng.uniform(-0.15, 0.15) * (FRAME_H - out_h)
    jitter = rng.uniform(-0.03, 0.03, size=(4, 2)) * np.array([out_w, out_h])
    dst = np.array([[cx - out_w / 2, cy - out_h / 2], [cx + out_w / 2, cy - out_h / 2],
                    [cx + out_w / 2, cy + out_h / 2], [cx - out_w / 2, cy + out_h / 2]]) + jitter
    src = np.array([[0, 0], [cw - 1, 0], [cw - 1, ch - 1], [0, ch - 1]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    # The lens blurs before the sensor samples: most of the grid or dot detail is lost, the rest
    # aliases into moire. Less than a full anti-alias (sigma ~0.5 per downscale step) on purpose.
    factor = ch / out_h
    if factor > 1.0:
        carrier = cv2.GaussianBlur(carrier, (0, 0), OPTICAL_BLUR_PER_STEP * factor)
    frame = _background(rng)
    mask = cv2.warpPerspective(np.ones((ch, cw), np.float32), matrix, (FRAME_W, FRAME_H))
    # INTER_LINEAR on a downscale aliases fine detail: the camera's own moire on grids and dots
    warped = cv2.warpPerspective(carrier, matrix, (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR)
    return np.asarray(frame * (1.0 - mask[..., None]) + warped * mask[..., None], np.float32)


def _camera(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Optics and sensor: slight defocus, noise, 8-bit, JPEG round trip (in memory)."""
    import cv2

    frame = cv2.GaussianBlur(frame, (0, 0), rng.uniform(0.4, 0.9))
    frame = frame + rng.normal(0.0, 2.5, size=frame.shape).astype(np.float32)
    rgb = np.clip(frame, 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1])


def make_attack(rgb: np.ndarray, kind: str, distance: str, seed: int) -> np.ndarray:
    """A camera frame (FRAME_H x FRAME_W RGB uint8) of `rgb` presented as `kind` at `distance`."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    rng = np.random.default_rng(seed)
    if kind == "print":
        carrier = _bend(_printed(rgb, rng), rng)
    else:
        carrier = _screen(rgb, rng)
    return _camera(_place(carrier, DISTANCES[distance], rng), rng)


def attack_seed(name: str, kind: str, distance: str) -> int:
    """A stable seed from the image's name and the attack (not Python's salted hash)."""
    import zlib

    return zlib.crc32(f"{name}|{kind}|{distance}".encode())
