"""Raspberry Pi camera through picamera2 (imported only when this back end is chosen)."""
from __future__ import annotations

import importlib
import time
from typing import Any

from firmware.camera.base import CameraError, Frame, check_frame


class Picamera2Source:
    """picamera2 video configuration in RGB888 (which is BGR byte order in memory: we flip)."""

    def __init__(self, width: int, height: int, module: Any = None) -> None:  # Any: picamera2 ships no types
        self._size = (width, height)
        self._module = module  # injected in unit tests; the real picamera2 otherwise
        self._camera: Any = None  # Any: a picamera2.Picamera2
        self._seq = 0

    def start(self) -> None:
        module = self._module
        if module is None:
            try:
                module = importlib.import_module("picamera2")  # only on the board
            except ImportError as exc:
                raise CameraError("picamera2 is not installed: pip install 'healthgate[pi]'") from exc
        try:
            camera = module.Picamera2()
            config = camera.create_video_configuration(main={"size": self._size, "format": "RGB888"})
            camera.configure(config)
            camera.start()
        except Exception as exc:  # the library raises many kinds; all mean "no camera"
            raise CameraError(f"picamera2 failed to start: {exc}") from exc
        self._camera = camera

    def read(self, timeout: float) -> Frame | None:
        if self._camera is None:
            raise CameraError("picamera2 not started")
        try:
            # capture_array waits for the next frame; picamera2 frames arrive at the sensor rate,
            # so a call longer than `timeout` means the sensor stalled (reported by the kiosk).
            array = self._camera.capture_array("main")
        except Exception as exc:
            raise CameraError(f"picamera2 capture failed: {exc}") from exc
        self._seq += 1
        image = check_frame(array, self._seq)
        # "RGB888" in libcamera terms is B,G,R in memory order; our frames are RGB.
        return Frame(image[:, :, ::-1].copy(), self._seq, time.monotonic())

    @property
    def exhausted(self) -> bool:
        return False  # a live camera: silence is a fault, never the end

    def close(self) -> None:
        if self._camera is not None:
            try:
                self._camera.stop()
                self._camera.close()
            finally:
                self._camera = None
