"""On the board: the picamera2 back end delivers RGB frames at the configured size and rate."""
from __future__ import annotations

import time

import pytest

picamera2 = pytest.importorskip("picamera2", reason="needs a Raspberry Pi with picamera2 installed")

from firmware.camera.picam import Picamera2Source  # noqa: E402
from firmware.codes import read_codes  # noqa: E402


def test_frames_arrive_at_size_and_rate() -> None:
    source = Picamera2Source(1280, 720)
    source.start()
    try:
        start = time.monotonic()
        frames = [source.read(1.0) for _ in range(30)]
        elapsed = time.monotonic() - start
    finally:
        source.close()
    assert all(f is not None and f.image.shape == (720, 1280, 3) for f in frames)
    assert 30 / elapsed >= 10, f"only {30 / elapsed:.1f} fps"


def test_held_up_code_is_read() -> None:
    """Hold any QR code in front of the camera while this runs (10 s)."""
    source = Picamera2Source(1280, 720)
    source.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            frame = source.read(1.0)
            if frame is not None and read_codes(frame.image):
                return
    finally:
        source.close()
    pytest.fail("no QR code seen within 10 s")
