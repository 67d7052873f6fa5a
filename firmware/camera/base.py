"""The FrameSource interface every camera back end implements, and the Frame it yields."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class CameraError(RuntimeError):
    """The camera failed (gone, silent, broken frames); the kiosk latches FAULT(camera)."""


@dataclass(frozen=True)
class Frame:
    """One captured picture: RGB uint8 (H, W, 3), a per-source sequence number, a monotonic time."""

    image: np.ndarray
    seq: int
    captured_at: float


class FrameSource(Protocol):
    """A camera. `read` waits at most `timeout` seconds; None means no frame arrived in time,
    unless `exhausted` is then true: a finite source (files, a replay) has delivered its last
    frame. A live camera is never exhausted; its silence is a fault."""

    def start(self) -> None: ...

    def read(self, timeout: float) -> Frame | None: ...

    @property
    def exhausted(self) -> bool: ...

    def close(self) -> None: ...


def check_frame(image: object, seq: int) -> np.ndarray:
    """Validate a raw frame from a driver; raises CameraError naming what is wrong."""
    if not isinstance(image, np.ndarray):
        raise CameraError(f"frame {seq}: not an image array ({type(image).__name__})")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise CameraError(f"frame {seq}: expected (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if image.shape[0] < 16 or image.shape[1] < 16:
        raise CameraError(f"frame {seq}: too small ({image.shape[1]}x{image.shape[0]})")
    return image
