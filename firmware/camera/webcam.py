"""USB/V4L2 webcam through OpenCV (the `video` extra)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from firmware.camera.base import CameraError, Frame, check_frame

if TYPE_CHECKING:
    import cv2


class WebcamSource:
    def __init__(self, device: int, width: int, height: int) -> None:
        self._device, self._size = device, (width, height)
        self._capture: cv2.VideoCapture | None = None
        self._seq = 0

    def start(self) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise CameraError("webcams need OpenCV: pip install 'healthgate[video]'") from exc
        capture = cv2.VideoCapture(self._device, cv2.CAP_V4L2)
        if not capture.isOpened():
            raise CameraError(f"cannot open V4L2 camera {self._device}")
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self._size[0])
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self._size[1])
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep latency low: no driver-side queue
        self._capture = capture

    def read(self, timeout: float) -> Frame | None:
        if self._capture is None:
            raise CameraError("webcam not started")
        ok, bgr = self._capture.read()
        if not ok:
            raise CameraError(f"V4L2 camera {self._device} returned no frame")
        self._seq += 1
        rgb = np.ascontiguousarray(check_frame(bgr, self._seq)[:, :, ::-1])
        return Frame(rgb, self._seq, time.monotonic())

    @property
    def exhausted(self) -> bool:
        return False  # a live camera: silence is a fault, never the end

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
