"""Synthetic camera frames: a credential QR code held up in front of a plain background."""
from __future__ import annotations

import numpy as np
import segno
from PIL import Image


def qr_image(text: str, scale: int = 4, border: int = 4) -> np.ndarray:
    """The QR symbol for `text` as an RGB uint8 array (always a full QR, never Micro QR)."""
    symbol = segno.make_qr(text, error="l")
    modules = np.array([list(row) for row in symbol.matrix], dtype=bool)
    modules = np.pad(modules, border, constant_values=False)
    pixels = np.where(modules, 0, 255).astype(np.uint8)
    pixels = np.kron(pixels, np.ones((scale, scale), dtype=np.uint8))
    return np.repeat(pixels[:, :, None], 3, axis=2)


def background(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """A dim, slightly noisy scene, like a shop entrance in the camera's view."""
    rng = np.random.default_rng(seed)
    base = np.linspace(70, 120, width, dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 6, size=(height, width, 1)).astype(np.float32)
    return np.clip(base + noise, 0, 255).astype(np.uint8).repeat(3, axis=2)


def frame_with_code(text: str, width: int = 640, height: int = 480, seed: int = 0,
                    face: np.ndarray | None = None) -> np.ndarray:
    """A camera frame with the QR code for `text`: centred, or on the right with `face` (an RGB
    portrait) on the left, as a person holding up a phone looks to the kiosk."""
    frame = background(width, height, seed)
    code = qr_image(text, scale=max(2, min(width, height) // 110))
    if code.shape[0] > height or code.shape[1] > width // (2 if face is not None else 1):
        code = qr_image(text, scale=2)
    top = (height - code.shape[0]) // 2
    left = (width - code.shape[1]) // 2
    if face is not None:
        portrait = _fit(face, height, width // 2)
        frame[:portrait.shape[0], :portrait.shape[1]] = portrait
        left = width // 2 + (width // 2 - code.shape[1]) // 2
    frame[top:top + code.shape[0], left:left + code.shape[1]] = code
    return frame


def frame_with_face(face: np.ndarray, width: int = 640, height: int = 480,
                    seed: int = 0) -> np.ndarray:
    """A camera frame with only a person in it (on the left half), no code."""
    frame = background(width, height, seed)
    portrait = _fit(face, height, width // 2)
    frame[:portrait.shape[0], :portrait.shape[1]] = portrait
    return frame


def _fit(image: np.ndarray, max_height: int, max_width: int) -> np.ndarray:
    """`image` scaled smoothly to fit the box (nearest-neighbour scaling would leave a pixel
    grid that the liveness check rightly takes for a screen)."""
    scale = min(max_height / image.shape[0], max_width / image.shape[1])
    size = (max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
