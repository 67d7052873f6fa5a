"""A kiosk wired to real parts (pty display emulator, SQLite event log) and a fake camera."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
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
from firmware.facestage import FaceStage
from firmware.kiosk import Kiosk
from firmware.pseudonym import Pseudonymiser

NOW = datetime.now(timezone.utc).replace(microsecond=0)


@dataclass
class Rig:
    kiosk: Kiosk
    camera: FakeCamera
    display: Display
    eventlog: Any
    signer: DemoSigner
    trust: TrustStore
    thread: threading.Thread
    cursor: int = 0  # index after the screen the last wait_state matched

    def valid_code(self) -> str:
        return issue_dcc(self.signer, vaccination_payload(), NOW - timedelta(days=1),
                         NOW + timedelta(days=100))

    def show_code(self, text: str, width: int = 320, height: int = 240,
                  face: np.ndarray | None = None) -> None:
        self.camera.set_frames([frame_with_code(text, width, height, face=face)])

    def show_nothing(self) -> None:
        self.camera.set_frames([background(320, 240)])

    def wait_state(self, state: str, timeout: float = 10.0) -> Any:
        """The next screen in `state` after the one the previous wait matched: waits are
        sequential, so a screen shown before the test thread looked is never missed."""
        emulator = self.display.emulator
        assert emulator is not None
        deadline = time.monotonic() + timeout
        while True:
            screens = emulator.screens
            for index in range(self.cursor, len(screens)):
                if screens[index].state == state:
                    self.cursor = index + 1
                    return screens[index]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {state} screen within {timeout} s after screen "
                                   f"{self.cursor}; shown: {screens[self.cursor:]}")
            time.sleep(0.01)

    def stop(self) -> None:
        self.kiosk.stop()
        self.thread.join(10)
        self.display.close()
        self.eventlog.close()


def make_rig(tmp: Path, eventlog: Any = None, clock: FixedClock | None = None,
             trust_age: timedelta = timedelta(minutes=5), camera_class: type = FakeCamera,
             face: Any = None, face_timeout_s: float = 2.0,
             open_template: Any = None, gallery: Any = None, verifier: Any = None,
             trust_problems: list[str] | None = None, **kiosk_options: Any) -> Rig:
    signer = make_signer()
    trust = TrustStore.from_certificates([signer.certificate_der])
    trust.updated_at = NOW - trust_age
    trust.problems = list(trust_problems or [])
    camera = camera_class([background(320, 240)], fps=30)
    display = open_display("emulator", ack_timeout_s=0.1, max_retries=2, heartbeat_s=0.5,
                           reconnect_interval_s=0.2)
    key = Ed25519PrivateKey.generate()
    log = eventlog or EventLog.open(tmp / "events.db", key, "kiosk-test")
    options = {"result_hold_s": 0.3, "frame_timeout_s": 0.5, "fault_retry_s": 0.2,
               "same_code_cooldown_s": 30.0}
    options.update(kiosk_options)
    kiosk = Kiosk(KioskSection(**options), camera, display, log, lambda: trust,
                  clock or FixedClock(NOW), Pseudonymiser(b"k" * 32, 86400.0), screen_for,
                  display_timeout_s=0.5, **({"verifier": verifier} if verifier else {}),
                  faces=FaceStage(face, face_timeout_s, open_template, gallery) if face else None)
    thread = threading.Thread(target=kiosk.run, daemon=True)
    thread.start()
    rig = Rig(kiosk, camera, display, log, signer, trust, thread)
    rig.wait_state("IDLE")
    return rig


def blank(width: int = 320, height: int = 240) -> np.ndarray:
    return background(width, height)
