"""Synthetic camera frames: a credential QR code held up in front of a plain background."""
from __future__ import annotations

import numpy as np
import segno


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


def frame_with_code(text: str, width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """A camera frame with the QR code for `text` near the centre."""
    frame = background(width, height, seed)
    code = qr_image(text, scale=max(2, min(width, height) // 110))
    if code.shape[0] > height or code.shape[1] > width:
        code = qr_image(text, scale=2)
    top = (height - code.shape[0]) // 2
    left = (width - code.shape[1]) // 2
    frame[top:top + code.shape[0], left:left + code.shape[1]] = code
    return frame
