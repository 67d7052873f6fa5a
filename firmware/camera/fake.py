"""A complete fake camera with scripted faults: silence, corrupt frames, disconnects."""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence

import numpy as np

from firmware.camera.base import CameraError, Frame, check_frame


class FakeCamera:
    """Yields the given frames (cycling) and obeys a fault script.

    Faults, queued with `script(...)` and consumed one per `read`:
    "silent"  -- no frame within the timeout; "corrupt" -- a frame of the wrong shape/dtype
    (the reader raises CameraError); "disconnect" -- the device is gone until `reconnect()`;
    "ok" -- a normal frame. Thread-safe so a test can script faults while the kiosk runs.
    """

    def __init__(self, frames: Sequence[np.ndarray] | None = None, fps: float = 30.0) -> None:
        self._frames = list(frames) if frames is not None else [np.zeros((120, 160, 3), np.uint8)]
        self._interval = 1.0 / fps
        self._faults: deque[str] = deque()
        self._lock = threading.Lock()
        self._connected = True
        self._started = False
        self._seq = 0
        self.reads = 0

    def script(self, *faults: str) -> None:
        for fault in faults:
            if fault not in ("silent", "corrupt", "disconnect", "ok"):
                raise ValueError(f"unknown camera fault {fault!r}")
        with self._lock:
            self._faults.extend(faults)

    def set_frames(self, frames: Sequence[np.ndarray]) -> int:
        """Show `frames` from now on; returns the sequence number of the first frame that
        shows them (a test waits for the loop to have handled that one, not for a while)."""
        with self._lock:
            self._frames = list(frames)
            return self._seq + 1

    def reconnect(self) -> None:
        with self._lock:
            self._connected = True

    def start(self) -> None:
        with self._lock:
            if not self._connected:
                raise CameraError("fake camera: device not present")
            self._started = True

    def read(self, timeout: float) -> Frame | None:
        with self._lock:
            fault = self._faults.popleft() if self._faults else "ok"
            if fault == "disconnect":
                self._connected = False
            if not self._connected or not self._started:
                self._started = False
                raise CameraError("fake camera: device disconnected")
            self.reads += 1
            self._seq += 1
            seq = self._seq
            image = self._frames[(seq - 1) % len(self._frames)]
        if fault == "silent":
            time.sleep(timeout)
            return None
        time.sleep(min(self._interval, timeout))
        if fault == "corrupt":
            image = np.frombuffer(b"\x00" * 100, np.uint8)  # what a torn DMA buffer looks like
        return Frame(check_frame(image, seq), seq, time.monotonic())

    @property
    def exhausted(self) -> bool:
        return False  # cycles its frames: a live camera

    def close(self) -> None:
        with self._lock:
            self._started = False


class HangingCamera(FakeCamera):
    """A fake whose driver call hangs (as a wedged camera driver does) until `release()`."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._released = threading.Event()
        self._hang = threading.Event()
        self.hung_calls = 0  # driver calls that have hung so far (a test waits for one)

    def hang(self) -> None:
        self._released.clear()
        self._hang.set()

    def release(self) -> None:
        self._hang.clear()
        self._released.set()

    def read(self, timeout: float) -> Frame | None:
        if self._hang.is_set():
            self.hung_calls += 1
            self._released.wait(60.0)  # bounded even in a test gone wrong
        return super().read(timeout)
