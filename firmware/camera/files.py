"""Frame sources from files: one image, a folder of images, or a video file (demo and tests)."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np
from PIL import Image

from firmware.camera.base import CameraError, Frame, FrameSource, check_frame

if TYPE_CHECKING:
    import cv2

T = TypeVar("T")  # what ArraySource replays: arrays, or what its `decode` turns into one

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp")


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8; raises CameraError naming the file on failure."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise CameraError(f"{path}: cannot read image ({exc})") from exc


class ArraySource(Generic[T]):
    """Replays in-memory RGB frames at a fixed rate (the demo renders QR frames this way)."""

    def __init__(self, images: Sequence[T], fps: float = 15.0, loop: bool = False,
                 decode: Callable[[T], np.ndarray] | None = None) -> None:
        self._images = list(images)
        self._decode = decode
        self._interval = 1.0 / fps
        self._loop = loop
        self._index = 0
        self._seq = 0
        self._next_due = 0.0

    def start(self) -> None:
        self._next_due = time.monotonic()

    def read(self, timeout: float) -> Frame | None:
        if self._index >= len(self._images):
            if not self._loop or not self._images:
                time.sleep(min(timeout, self._interval))  # an ended source is silent, not busy
                return None
            self._index = 0
        wait = self._next_due - time.monotonic()
        if wait > timeout:
            time.sleep(max(timeout, 0.0))
            return None
        if wait > 0:
            time.sleep(wait)
        self._next_due = max(self._next_due + self._interval, time.monotonic())
        item = self._images[self._index]
        image = self._decode(item) if self._decode is not None else item
        self._index += 1
        self._seq += 1
        return Frame(check_frame(image, self._seq), self._seq, time.monotonic())

    @property
    def exhausted(self) -> bool:
        return not self._loop and self._index >= len(self._images)

    def close(self) -> None:
        """Nothing to release; a restarted source resumes where it stopped (like a camera)."""


class ImageFilesSource(ArraySource[Path]):
    """Images from one file or a folder (sorted by name), decoded lazily one at a time."""

    def __init__(self, path: str | Path, fps: float = 15.0, loop: bool = False) -> None:
        root = Path(path)
        if root.is_dir():
            files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif root.is_file():
            files = [root]
        else:
            raise CameraError(f"{root}: no such image file or folder")
        if not files:
            raise CameraError(f"{root}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        # decode lazily: a folder of thousands of images must not sit in memory at once
        super().__init__(files, fps=fps, loop=loop, decode=load_rgb)


class VideoFileSource:
    """Frames from a video file through OpenCV (the `video` extra)."""

    def __init__(self, path: str | Path, loop: bool = False) -> None:
        self._path = Path(path)
        self._loop = loop
        self._capture: cv2.VideoCapture | None = None
        self._seq = 0
        self._ended = False

    def start(self) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise CameraError("video files need OpenCV: pip install 'healthgate[video]'") from exc
        if not self._path.is_file():
            raise CameraError(f"{self._path}: no such video file")
        self._capture = cv2.VideoCapture(str(self._path))
        self._ended = False
        if not self._capture.isOpened():
            raise CameraError(f"{self._path}: cannot open video")

    def read(self, timeout: float) -> Frame | None:
        import cv2

        if self._capture is None:
            raise CameraError("video source not started")
        ok, bgr = self._capture.read()
        if not ok and self._loop:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._capture.read()
        if not ok:
            self._ended = True  # OpenCV reads no further frame at the end of the file
            time.sleep(min(timeout, 0.05))
            return None
        self._seq += 1
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        return Frame(check_frame(rgb, self._seq), self._seq, time.monotonic())

    @property
    def exhausted(self) -> bool:
        return self._ended

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def iter_frames(source: FrameSource, timeout: float = 1.0) -> Iterator[Frame]:
    """Every frame of a finite source (for tools such as `healthgate check`)."""
    source.start()
    while not source.exhausted:
        frame = source.read(timeout)
        if frame is not None:
            yield frame
