"""A kiosk wired to real parts (pty display emulator, SQLite event log) and a fake camera.

No test waits for time to pass: the loop's timers run on a `ManualMonotonic` clock that only
the test moves (`Rig.advance`), and every wait is for something the loop has observably done
(a screen shown, frames handled, iterations finished), with a generous hang guard that a slow,
loaded machine never reaches. A test that asserts that nothing happened first waits until the
loop has handled the frames that could have made it happen (`Rig.wait_frames`)."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.camera.fake import FakeCamera
from firmware.clock import FixedClock
from firmware.config import KioskSection
from firmware.credentials import TrustStore
from firmware.demo.frames import background, frame_with_code
from firmware.demo.issuer import DemoSigner, issue_dcc, make_signer, vaccination_payload
from firmware.display import Display, open_display, screen_for
from firmware.eventlog import EventLog
from firmware.kiosk.facestage import FaceStage
from firmware.kiosk import Kiosk
from firmware.kiosk.pseudonym import Pseudonymiser
from tests.waiting import HANG_GUARD_S, POLL_S, wait_for  # noqa: F401 (POLL_S: re-exported)

NOW = datetime.now(timezone.utc).replace(microsecond=0)
# Frames showing the same picture that the loop must have handled before a test believes that
# the picture changes nothing (more than the one frame a stale read or the inbox may hold).
FRAMES_IN_VIEW = 5
# The display link's waits are real (a pty and an emulator thread): generous, so that a loaded
# machine never fakes a display fault that the manual clock would then leave latched; an
# unplugged pty is noticed by its closed port or by the heartbeat's missing answer all the same.
DISPLAY_ACK_TIMEOUT_S = 1.0
DISPLAY_SHOW_TIMEOUT_S = 10.0
# Iterations after a clock step: the first may have read the time before the step.
ITERATIONS_AFTER_STEP = 2
# Added to every clock step: a timer due `s` seconds after `t` is due at `t + s`, but float
# rounding can make `(t + s) - t` a hair less than `s` (and some timers compare with `>`).
STEP_EPSILON_S = 1e-3


def wait_until(condition: Callable[[], bool], what: str, guard_s: float = HANG_GUARD_S) -> None:
    """Poll `condition` until it holds; AssertionError naming `what` past the hang guard
    (the shared `tests.waiting.wait_for`, kept under this name for the kiosk tests)."""
    wait_for(condition, what, guard_s)


class ManualMonotonic:
    """A monotonic clock that moves only when told to: the kiosk loop's and the face stage's
    timers (result hold, cooldown, face and multi-code timeouts, fault retries) read it."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@dataclass
class Rig:
    kiosk: Kiosk
    camera: FakeCamera
    display: Display
    eventlog: Any
    signer: DemoSigner
    trust: TrustStore
    thread: threading.Thread
    clock: ManualMonotonic
    cursor: int = 0  # index after the screen the last wait_state matched
    shown_from: int = field(default=1)  # camera sequence number of the first frame now shown

    def valid_code(self) -> str:
        return issue_dcc(self.signer, vaccination_payload(), NOW - timedelta(days=1),
                         NOW + timedelta(days=100))

    def show_frames(self, frames: list[np.ndarray]) -> None:
        self.shown_from = self.camera.set_frames(frames)

    def show_code(self, text: str, width: int = 320, height: int = 240,
                  face: np.ndarray | None = None) -> None:
        self.show_frames([frame_with_code(text, width, height, face=face)])

    def show_nothing(self) -> None:
        self.show_frames([background(320, 240)])

    def _next_screen(self, state: str) -> Any:
        """The first screen in `state` at or after the cursor (moving the cursor past it)."""
        emulator = self.display.emulator
        assert emulator is not None
        screens = emulator.screens
        for index in range(self.cursor, len(screens)):
            if screens[index].state == state:
                self.cursor = index + 1
                return screens[index]
        return None

    def _shown_since_cursor(self) -> list[Any]:
        emulator = self.display.emulator
        assert emulator is not None
        return list(emulator.screens[self.cursor:])

    def wait_state(self, state: str, guard_s: float = HANG_GUARD_S) -> Any:
        """The next screen in `state` after the one the previous wait matched: waits are
        sequential, so a screen shown before the test thread looked is never missed."""
        return wait_for(lambda: self._next_screen(state),
                        lambda: f"a {state} screen after screen {self.cursor}; "
                                f"shown: {self._shown_since_cursor()}", guard_s)

    def wait_state_retrying(self, state: str, guard_s: float = HANG_GUARD_S) -> Any:
        """The next screen in `state`, stepping the clock one fault-retry period at a time so
        that a latched fault (display, event log) is retried until its part is back."""
        def screen_or_retry() -> Any:
            screen = self._next_screen(state)
            if screen is None:
                self.advance(self.kiosk.config.fault_retry_s)  # returns once the timers ran
            return screen

        # poll_s=0: each look steps the clock and waits for the loop, which is the progress
        return wait_for(screen_or_retry,
                        lambda: f"a {state} screen after fault retries; "
                                f"shown: {self._shown_since_cursor()}", guard_s, poll_s=0)

    def wait_iterations(self, count: int = ITERATIONS_AFTER_STEP) -> None:
        """Until the loop has finished `count` more iterations (each runs its timers)."""
        progress = self.kiosk.progress
        target = progress.iterations + count
        wait_until(lambda: progress.iterations >= target, f"{count} loop iterations")

    def wait_messages(self, kind: str, count: int = 1) -> None:
        """Until the loop has handled `count` more messages of `kind` (e.g. "camera_fault")."""
        messages = self.kiosk.progress.messages
        target = messages[kind] + count
        wait_until(lambda: messages[kind] >= target, f"{count} more {kind!r} message(s)")

    def wait_frames(self, count: int = FRAMES_IN_VIEW) -> None:
        """Until the loop has handled `count` frames of the pictures shown last (so whatever
        they would make the kiosk do, it has done)."""
        progress = self.kiosk.progress
        wait_until(lambda: progress.last_frame_seq >= self.shown_from,
                   f"a frame of what was shown (camera frame {self.shown_from})")
        target = progress.messages["frame"] + count - 1
        wait_until(lambda: progress.messages["frame"] >= target, f"{count} frames handled")

    def advance(self, seconds: float) -> None:
        """Move the loop's clock on by `seconds` (and a hair), and return once the loop has
        run its timers after the step."""
        self.clock.advance(seconds + STEP_EPSILON_S)
        self.wait_iterations()

    def next_person(self) -> Any:
        """The person leaves (nothing in view) and the result's hold time passes: the IDLE
        screen. Frames of the empty scene reach the loop before the hold ends, so no stale
        frame of the last person can start a second decision."""
        self.show_nothing()
        self.wait_frames(1)
        self.advance(self.kiosk.config.result_hold_s)
        return self.wait_state("IDLE")

    def stop(self) -> None:
        self.kiosk.stop()
        self.thread.join(HANG_GUARD_S)
        self.display.close()
        self.eventlog.close()


def make_rig(tmp: Path, eventlog: Any = None, clock: FixedClock | None = None,
             trust_age: timedelta = timedelta(minutes=5), camera_class: type = FakeCamera,
             face: Any = None, face_timeout_s: float = 2.0,
             open_template: Any = None, gallery: Any = None, verifier: Any = None,
             trust_problems: list[str] | None = None,
             monotonic: ManualMonotonic | None = None, provisioner: Any = None,
             bundle_source: Any = None, supervisor: Any = None, **kiosk_options: Any) -> Rig:
    signer = make_signer()
    trust = TrustStore.from_certificates([signer.certificate_der])
    trust.updated_at = NOW - trust_age
    trust.problems = list(trust_problems or [])
    camera = camera_class([background(320, 240)], fps=30)
    display = open_display("emulator", ack_timeout_s=DISPLAY_ACK_TIMEOUT_S, max_retries=2,
                           heartbeat_s=0.5, reconnect_interval_s=0.2)
    key = Ed25519PrivateKey.generate()
    log = eventlog or EventLog.open(tmp / "events.db", key, "kiosk-test")
    options = {"result_hold_s": 0.3, "frame_timeout_s": 0.5, "fault_retry_s": 0.2,
               "same_code_cooldown_s": 30.0}
    options.update(kiosk_options)
    monotonic = monotonic or ManualMonotonic()
    kiosk = Kiosk(KioskSection(**options), camera, display, log, lambda: trust,
                  clock or FixedClock(NOW), Pseudonymiser(b"k" * 32, 86400.0), screen_for,
                  display_timeout_s=DISPLAY_SHOW_TIMEOUT_S, **({"verifier": verifier} if verifier else {}),
                  faces=FaceStage(face, face_timeout_s, open_template, gallery, clock=monotonic)
                  if face else None, monotonic=monotonic, provisioner=provisioner,
                  bundle_source=bundle_source, supervisor=supervisor)
    thread = threading.Thread(target=kiosk.run, daemon=True)
    thread.start()
    rig = Rig(kiosk, camera, display, log, signer, trust, thread, monotonic)
    rig.wait_state("IDLE")
    return rig


def blank(width: int = 320, height: int = 240) -> np.ndarray:
    return background(width, height)
