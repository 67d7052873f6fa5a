"""The capture thread: reads the camera with a timeout and posts frames and faults to the inbox."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from firmware.camera.base import CameraError, FrameSource
from firmware.kiosk.inbox import Inbox, Message

log = logging.getLogger(__name__)


class CaptureThread:
    """Owns the FrameSource. Posts "frame", "camera_fault" and "end_of_stream" messages.

    After a fault it waits `retry_s`, then reopens the camera; the kiosk recovers when frames
    flow again. `beats` counts passes of its loop, frames or not, for the supervisor: it stops
    only while the thread is stuck inside one driver call, or dead.
    """

    def __init__(self, source: FrameSource, inbox: Inbox, frame_timeout_s: float,
                 retry_s: float) -> None:
        self._source = source
        self._inbox = inbox
        self._timeout = frame_timeout_s
        self._retry_s = retry_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self.beats = 0
        self.frames = 0
        self._owns_source = True

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def abandon(self) -> None:
        """Give up on a thread stuck in a driver call, for a new CaptureThread on the same
        source: should the call ever return, this thread posts nothing and does not close the
        source, which by then belongs to its successor."""
        self._owns_source = False
        self._stop.set()

    @property
    def max_silence_s(self) -> float:
        """Far longer than one driver call may take (a read times out after frame_timeout_s,
        a failed open waits retry_s): beyond it the camera driver is wedged."""
        return 3 * self._timeout + self._retry_s

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        healthy = False
        while not self._stop.is_set():
            self.beats += 1
            if not healthy:
                try:
                    self._source.close()
                    self._source.start()
                    healthy = True
                except Exception as exc:  # any driver error (not only CameraError) is a fault
                    if self._stop.is_set():
                        break
                    self._inbox.post(Message("camera_fault", _describe(exc)))
                    self._stop.wait(self._retry_s)
                    continue
            self.beats += 1
            try:
                frame = self._source.read(self._timeout)
            except Exception as exc:  # an escaping error would end capture with no FAULT shown
                if self._stop.is_set():
                    break  # abandoned: the successor thread reports the camera's state
                log.warning("camera fault: %s", _describe(exc))
                self._inbox.post(Message("camera_fault", _describe(exc)))
                healthy = False
                self._stop.wait(self._retry_s)
                continue
            if self._stop.is_set():
                break  # stopped or abandoned while inside read(): nothing of it is ours to post
            if frame is None:
                if self._source.exhausted:
                    self._inbox.post(Message("end_of_stream"))
                    self._stop.wait(self._timeout)
                    continue
                self._inbox.post(Message("camera_fault", f"no frame within {self._timeout:g} s"))
                continue
            self.frames += 1
            self._inbox.post(Message("frame", frame))
        if self._owns_source:
            self._source.close()


def _describe(exc: Exception) -> str:
    """The fault text: a CameraError's message; for any other error its type too."""
    if isinstance(exc, CameraError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class CaptureWorker:
    """The capture thread as the supervisor sees it: a stuck or dead thread is abandoned and a
    new one started on the same camera and inbox."""

    def __init__(self, source: FrameSource, inbox: Inbox, frame_timeout_s: float,
                 retry_s: float) -> None:
        self._new: Callable[[], CaptureThread] = \
            lambda: CaptureThread(source, inbox, frame_timeout_s, retry_s)
        self.thread = self._new()
        self._running = False

    @property
    def beats(self) -> int:
        return self.thread.beats

    @property
    def frames(self) -> int:
        return self.thread.frames  # per thread: the status board adds them up across restarts

    @property
    def max_silence_s(self) -> float:
        return self.thread.max_silence_s

    def start(self) -> None:
        self._running = True
        self.thread.start()

    def stop(self) -> None:
        self._running = False
        self.thread.stop()

    def running(self) -> bool:
        return self._running

    def alive(self) -> bool:
        return self.thread.alive()

    def restart(self) -> None:
        self.thread.abandon()  # a stuck (daemon) thread must not touch the camera again
        self.thread = self._new()
        self.thread.start()
