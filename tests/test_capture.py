"""The capture thread: frames and faults reach the inbox; an abandoned thread stuck in a driver
call leaves the camera to its successor when the call returns.

Every wait here is for something the threads have done (a message posted, a frame counted, a
thread ended), with a generous hang guard; none is for a stretch of time."""
from __future__ import annotations

from collections.abc import Callable

from firmware.camera.fake import FakeCamera, HangingCamera
from firmware.kiosk.capture import CaptureThread
from firmware.kiosk.inbox import Inbox, Message
from tests.kiosk_harness import HANG_GUARD_S, POLL_S, wait_until
from tests.waiting import wait_for

FRAMES_AFTER_RELEASE = 5  # reads by the successor after the stuck call returned


def _collect_until(inbox: Inbox, done: Callable[[list[Message]], bool]) -> list[Message]:
    """Messages from the inbox until `done(messages so far)` holds (hang guard: AssertionError).
    Frames are kept latest-only by the inbox; control messages are never dropped."""
    got: list[Message] = []

    def collected() -> bool:
        if done(got):
            return True
        message = inbox.get(timeout=POLL_S)  # blocks for the next message: the poll itself
        if message is not None:
            got.append(message)
        return False

    wait_for(collected, lambda: f"messages; got {[m.kind for m in got][-20:]}", HANG_GUARD_S,
             poll_s=0)
    return got


def _drain(inbox: Inbox) -> list[Message]:
    """What is in the inbox now, without waiting for more."""
    got: list[Message] = []
    while (message := inbox.get(timeout=0)) is not None:
        got.append(message)
    return got


def test_frames_and_a_scripted_fault_reach_the_inbox() -> None:
    camera = FakeCamera(fps=200)
    inbox = Inbox()
    capture = CaptureThread(camera, inbox, frame_timeout_s=0.05, retry_s=0.05)
    camera.script("ok", "corrupt")
    capture.start()
    try:
        _collect_until(inbox, lambda got: {"frame", "camera_fault"} <= {m.kind for m in got})
    finally:
        capture.stop()


def test_an_abandoned_thread_neither_posts_nor_closes_the_camera_of_its_successor() -> None:
    camera = HangingCamera(fps=200)
    inbox = Inbox()
    stuck = CaptureThread(camera, inbox, frame_timeout_s=0.05, retry_s=0.05)
    stuck.start()
    wait_until(lambda: stuck.frames > 0, "a first frame")
    camera.hang()
    wait_until(lambda: camera.hung_calls > 0, "the capture thread to hang in the driver")
    stuck.abandon()
    successor = CaptureThread(camera, inbox, frame_timeout_s=0.05, retry_s=0.05)
    successor.start()
    try:
        _drain(inbox)  # whatever came before the driver returns
        frames_of_stuck, frames_of_successor = stuck.frames, successor.frames
        camera.release()
        wait_until(lambda: not stuck._thread.is_alive(), "the stuck call to return")
        # the successor goes on reading after the stuck thread is gone: had that thread closed
        # the camera, these reads would fail and post a fault
        after = _collect_until(
            inbox, lambda _: successor.frames >= frames_of_successor + FRAMES_AFTER_RELEASE)
        after += _drain(inbox)
        assert stuck.frames == frames_of_stuck  # the abandoned thread posted no frame
        assert [m.data for m in after if m.kind == "camera_fault"] == []  # camera not closed
        assert sum(m.kind == "frame" for m in after) > 0  # the successor delivers
    finally:
        successor.stop()
