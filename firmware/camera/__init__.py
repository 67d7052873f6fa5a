"""Camera back ends behind one FrameSource interface, chosen by configuration."""
from __future__ import annotations

from firmware.camera.base import CameraError, Frame, FrameSource
from firmware.config import CameraSection

__all__ = ["CameraError", "Frame", "FrameSource", "open_camera"]


def open_camera(section: CameraSection) -> FrameSource:
    """The FrameSource named by `camera.source`; picamera2 is imported only when chosen."""
    if section.source == "files":
        from firmware.camera.files import ImageFilesSource
        return ImageFilesSource(section.path, fps=section.fps, loop=section.loop)
    if section.source == "video":
        from firmware.camera.files import VideoFileSource
        return VideoFileSource(section.path, loop=section.loop)
    if section.source == "fake":
        from firmware.camera.fake import FakeCamera
        return FakeCamera(fps=section.fps)
    if section.source == "picamera2":
        from firmware.camera.picam import Picamera2Source
        return Picamera2Source(section.width, section.height)
    if section.source == "v4l2":
        from firmware.camera.webcam import WebcamSource
        return WebcamSource(section.device, section.width, section.height)
    raise CameraError(f"camera.source: unknown back end {section.source!r}")
