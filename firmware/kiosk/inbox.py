"""The loop's inbox: other threads post events; frames are kept latest-only and drops counted."""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    """An event for the kiosk loop: `kind` names it, `data` carries it (what, `kind` says: a
    Frame for "frame", a provisioning outcome for "provisioned", text for "camera_fault")."""

    kind: str
    data: object = None


class Inbox:
    """A bounded inbox. Frame messages beyond `frame_capacity` push out the oldest frame (a stale
    frame is worthless to a kiosk), and are counted in `dropped_frames`; control messages are
    never dropped. `get` always has a timeout."""

    def __init__(self, frame_capacity: int = 1) -> None:
        if frame_capacity < 1:
            raise ValueError("frame_capacity must be at least 1")
        self._frames: deque[Message] = deque()
        self._control: deque[Message] = deque()
        self._capacity = frame_capacity
        self._ready = threading.Condition()
        self.dropped_frames = 0

    def post(self, message: Message) -> None:
        with self._ready:
            if message.kind == "frame":
                if len(self._frames) >= self._capacity:
                    self._frames.popleft()
                    self.dropped_frames += 1
                self._frames.append(message)
            else:
                self._control.append(message)
            self._ready.notify()

    def get(self, timeout: float) -> Message | None:
        """The next control message, else the newest frame; None after `timeout` seconds."""
        with self._ready:
            if not self._control and not self._frames:
                self._ready.wait(timeout)
            if self._control:
                return self._control.popleft()
            if self._frames:
                return self._frames.popleft()
            return None

    def discard_frames(self) -> int:
        """Drop queued frames (e.g. taken while a result was on screen); returns how many."""
        with self._ready:
            count = len(self._frames)
            self._frames.clear()
            self.dropped_frames += count
            return count
