"""Camera back ends: image files, the scripted fake, and picamera2 against a fake module."""
from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from firmware.camera import open_camera
from firmware.camera.base import CameraError, check_frame
from firmware.camera.fake import FakeCamera
from firmware.camera.files import ArraySource, ImageFilesSource, iter_frames
from firmware.camera.picam import Picamera2Source
from firmware.config import CameraSection


def test_image_folder_in_name_order(tmp_path: Path) -> None:
    for index, value in enumerate([10, 200, 90]):
        Image.fromarray(np.full((32, 48, 3), value, np.uint8)).save(tmp_path / f"f{index}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    frames = list(iter_frames(ImageFilesSource(tmp_path, fps=200)))
    assert [int(f.image[0, 0, 0]) for f in frames] == [10, 200, 90]
    assert [f.seq for f in frames] == [1, 2, 3]
    assert frames[0].image.shape == (32, 48, 3)


def test_image_source_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="no such image"):
        ImageFilesSource(tmp_path / "absent.png")
    with pytest.raises(CameraError, match="holds no images"):
        ImageFilesSource(tmp_path)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    source = ImageFilesSource(bad, fps=100)
    source.start()
    with pytest.raises(CameraError, match="bad.png: cannot read image"):
        source.read(1.0)


def test_array_source_loops_and_ends() -> None:
    frames = [np.zeros((20, 20, 3), np.uint8)] * 2
    finite = ArraySource(frames, fps=500)
    assert len(list(iter_frames(finite))) == 2
    assert finite.read(0.01) is None and finite.exhausted
    looping = ArraySource(frames, fps=500, loop=True)
    looping.start()
    assert all(looping.read(1.0) is not None for _ in range(5))


def test_check_frame_rejects_corrupt_buffers() -> None:
    with pytest.raises(CameraError, match="expected"):
        check_frame(np.zeros((10, 10), np.uint8), 1)
    with pytest.raises(CameraError, match="not an image"):
        check_frame(b"raw", 2)
    with pytest.raises(CameraError, match="too small"):
        check_frame(np.zeros((4, 4, 3), np.uint8), 3)


def test_fake_camera_scripted_faults() -> None:
    camera = FakeCamera(fps=1000)
    camera.start()
    camera.script("ok", "silent", "corrupt", "disconnect")
    assert camera.read(0.05) is not None
    assert camera.read(0.01) is None
    with pytest.raises(CameraError, match="expected"):
        camera.read(0.05)
    with pytest.raises(CameraError, match="disconnected"):
        camera.read(0.05)
    with pytest.raises(CameraError, match="not present"):
        camera.start()
    camera.reconnect()
    camera.start()
    assert camera.read(0.05) is not None
    with pytest.raises(ValueError):
        camera.script("explode")


class _FakePicamera2:
    """Just enough of picamera2.Picamera2 to check we use its documented API correctly."""

    instances: list["_FakePicamera2"] = []

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.started = False
        _FakePicamera2.instances.append(self)

    def create_video_configuration(self, main: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create_video_configuration", main))
        return {"main": main}

    def configure(self, config: dict[str, Any]) -> None:
        self.calls.append(("configure", config))

    def start(self) -> None:
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        width, height = self.calls[0][1]["size"]
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 0] = 255  # blue in libcamera's RGB888 memory order (B, G, R)
        return frame

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.calls.append(("close", None))


def test_picamera2_back_end_against_fake_module() -> None:
    module = types.SimpleNamespace(Picamera2=_FakePicamera2)
    source = Picamera2Source(640, 480, module=module)
    source.start()
    frame = source.read(1.0)
    assert frame is not None and frame.image.shape == (480, 640, 3)
    assert tuple(frame.image[0, 0]) == (0, 0, 255)  # BGR memory order flipped to RGB
    camera = _FakePicamera2.instances[-1]
    assert camera.calls[0] == ("create_video_configuration", {"size": (640, 480), "format": "RGB888"})
    source.close()
    assert not camera.started


def test_picamera2_missing_is_a_clear_camera_error() -> None:
    broken = types.SimpleNamespace(Picamera2=lambda: (_ for _ in ()).throw(RuntimeError("no cam")))
    with pytest.raises(CameraError, match="picamera2 failed to start: no cam"):
        Picamera2Source(640, 480, module=broken).start()


def test_open_camera_never_imports_picamera2_unless_chosen() -> None:
    import sys

    open_camera(CameraSection(source="fake"))
    assert "picamera2" not in sys.modules


def _write_video(path: Path, count: int) -> None:
    cv2 = pytest.importorskip("cv2", reason="video files need OpenCV (the video extra)")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG video")
    for index in range(count):
        writer.write(np.full((48, 64, 3), 40 * index, np.uint8))
    writer.release()


def test_video_file_ends_as_end_of_stream_not_as_a_camera_fault(tmp_path: Path) -> None:
    from firmware.camera.files import VideoFileSource
    from firmware.kiosk.capture import CaptureThread
    from firmware.kiosk.inbox import Inbox

    video = tmp_path / "three.avi"
    _write_video(video, 3)
    source = VideoFileSource(video)
    source.start()
    assert not source.exhausted
    assert [source.read(1.0) is not None for _ in range(3)] == [True] * 3
    assert source.read(0.01) is None and source.exhausted
    source.start()  # a restarted file plays from the start again
    assert not source.exhausted and source.read(1.0) is not None
    source.close()

    inbox = Inbox(frame_capacity=10)
    capture = CaptureThread(VideoFileSource(video), inbox, frame_timeout_s=0.05, retry_s=0.05)
    capture.start()
    kinds: list[str] = []
    try:
        while "end_of_stream" not in kinds:
            message = inbox.get(60.0)
            assert message is not None, f"capture posted nothing more after {kinds}"
            kinds.append(message.kind)
    finally:
        capture.stop()
    assert kinds == ["frame"] * 3 + ["end_of_stream"]
