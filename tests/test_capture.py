"""The capture thread: frames and faults reach the inbox; an abandoned thread stuck in a driver
call leaves the camera to its successor when the call returns."""
from __future__ import annotations

import time

from firmware.camera.fake import FakeCamera, HangingCamera
from firmware.capture import CaptureThread
from firmware.inbox import Inbox, Message


def _drain(inbox: Inbox, seconds: float) -> list[Message]:
    """Every message posted during `seconds` (frames included)."""
    got: list[Message] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = inbox.get(timeout=0.05)
        if message is not None:
            got.append(message)
    return got


def _wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_frames_and_a_scripted_fault_reach_the_inbox() -> None:
    camera = FakeCamera(fps=200)
    inbox = Inbox()
    capture = CaptureThread(camera, inbox, frame_timeout_s=0.05, retry_s=0.05)
    camera.script("ok", "corrupt")
    capture.start()
    try:
        kinds = {m.kind for m in _drain(inbox, 0.5)}
    finally:
        capture.stop()
    assert {"frame", "camera_fault"} <= kinds


def test_an_abandoned_thread_neither_posts_nor_closes_the_camera_of_its_successor() -> None:
    camera = HangingCamera(fps=200)
    inbox = Inbox()
    stuck = CaptureThread(camera, inbox, frame_timeout_s=0.05, retry_s=0.05)
    stuck.start()
    _wait_for(lambda: stuck.frames > 0)
    camera.hang()
    _wait_for(lambda: stuck.stalled(time.monotonic()))
    stuck.abandon()
    successor = CaptureThread(camera, inbox, frame_timeout_s=0.05, retry_s=0.05)
    successor.start()
    try:
        _drain(inbox, 0.2)  # whatever came before the driver returns
        frames_of_stuck = stuck.frames
        camera.release()
        _wait_for(lambda: not stuck._thread.is_alive())
        after = _drain(inbox, 0.5)
        assert stuck.frames == frames_of_stuck  # the abandoned thread posted no frame
        assert [m.data for m in after if m.kind == "camera_fault"] == []  # camera not closed
        assert sum(m.kind == "frame" for m in after) > 0  # the successor delivers
    finally:
        successor.stop()
