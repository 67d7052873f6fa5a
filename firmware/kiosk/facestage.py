"""The face half of a decision, as the kiosk loop drives it: waiting for the holder's face after
a valid credential, and recognising opted-in members without a code (face pass)."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from firmware.credentials import Verdict
from firmware.kiosk.facecheck import FaceCheck, FaceOutcome
from firmware.kiosk.policy import FaceError, FaceResult

if TYPE_CHECKING:
    from firmware.vision.matcher import Gallery

log = logging.getLogger(__name__)

# Liveness outcomes that mean "no evidence yet", unlike a photo's flat motion or a screen's
# pattern, which are evidence of an attack and are decided at once.
NO_EVIDENCE_YET = frozenset({"NO_LIVENESS_CUES", "NOT_ENOUGH_FRAMES"})


@dataclass
class _Pending:
    """A verified credential waiting for its face."""

    verdict: Verdict
    pseudonym: str | None
    captured_at: float
    deadline: float
    hint: str | None = None


@dataclass(frozen=True)
class FaceConcluded:
    """The face wait is over: the credential it was for and what the face check found. The
    loop turns it into the decision (firmware.kiosk.policy.decide)."""

    verdict: Verdict
    pseudonym: str | None
    captured_at: float  # when the credential's frame was taken (for latency)
    face: FaceResult


@dataclass(frozen=True)
class FaceStep:
    """What one frame (or tick) changed: the wait concluded, or a new hint for the display."""

    concluded: FaceConcluded | None = None
    hint: str | None = None  # a quality reason code, e.g. FACE_TOO_SMALL -> "Please step closer"
    hint_changed: bool = False  # show `hint` now (None: the face is fine again)


@dataclass
class FaceStage:
    """Owned by the kiosk loop (no locking). `open_template(blob, key_id)` opens a record's
    sealed enrolled template; `gallery` holds opted-in members for face pass (or None)."""

    check: FaceCheck
    timeout_s: float
    open_template: Callable[[bytes, str | None], np.ndarray | None] | None = None
    gallery: Gallery | None = None
    # None: the model's own 1:N threshold (face_models.json, FAR 1e-5 per impostor pair)
    face_pass_threshold: float | None = None
    clock: Callable[[], float] = time.monotonic
    _pending: _Pending | None = field(default=None, init=False)
    _face_pass_bar: float = field(default=1.0, init=False)
    _face_pass_frames: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.gallery is not None and len(self.gallery) == 0:
            self.gallery = None
        if self.face_pass_threshold is None:
            self.face_pass_threshold = self.check.face_pass_threshold
        if self.gallery is not None:
            if self.face_pass_threshold is None:
                raise ValueError("face pass needs a 1:N threshold: the face model has none "
                                 "calibrated; set face.face_pass_threshold")
            self._face_pass_bar = float(self.face_pass_threshold)
        self.check.face_pass = self.gallery is not None

    @property
    def face_pass(self) -> bool:
        return self.gallery is not None

    # ---- a credential waiting for its face ----------------------------------------------
    def begin(self, verdict: Verdict, pseudonym: str | None, captured_at: float) -> None:
        self.forget()
        self._pending = _Pending(verdict, pseudonym, captured_at, self.clock() + self.timeout_s)

    def on_frame(self, image: np.ndarray) -> FaceStep:
        pending = self._pending
        if pending is None:
            return FaceStep()
        try:
            quality = self.check.observe(image)
        except Exception:  # a vision failure denies this person; it is not a crash
            log.exception("face check failed")
            return self._finish(error="FACE_CHECK_ERROR")
        if self.check.ready():
            return self._finish()
        if quality.reason != pending.hint:
            pending.hint = quality.reason
            return FaceStep(hint=quality.reason, hint_changed=True)
        return FaceStep()

    def expire_if_due(self) -> FaceStep:
        """The decision for a credential whose face did not come in time."""
        if self._pending is not None and self.clock() >= self._pending.deadline:
            return self._finish()
        return FaceStep()

    def cancel(self) -> None:
        """A fault interrupts the person's check: they start again."""
        self._pending = None
        self.forget()

    def _finish(self, error: str | None = None) -> FaceStep:
        pending, self._pending = self._pending, None
        if pending is None:
            return FaceStep()
        verdict = pending.verdict
        enrolled = None
        blob = verdict.extras.get("face_template") if verdict.extras else None
        if blob is not None and error is None:
            enrolled = self.open_template(blob, verdict.extras.get("face_key_id")) \
                if self.open_template else None
            if enrolled is None:  # a record with a template we cannot open: never skip 1:1
                error = "FACE_TEMPLATE_UNAVAILABLE"
        face: FaceResult = FaceError(error) if error is not None \
            else self.check.conclude(verdict.credential_id, enrolled)
        self.forget()  # this person's template leaves memory (but the sharing window)
        return FaceStep(FaceConcluded(verdict, pending.pseudonym, pending.captured_at, face))

    # ---- face pass: opted-in members, no code ------------------------------------------
    def on_idle_frame(self, image: np.ndarray) -> tuple[str, FaceOutcome] | None:
        """Gather frames of a face in front of an idle kiosk; once there are enough, the
        identified member and the face outcome (None while gathering or for a stranger)."""
        if self.gallery is None:
            return None
        try:
            quality = self.check.observe(image)
        except Exception:
            log.exception("face pass observation failed")
            return None
        if quality.reason == "NO_FACE":
            if self._face_pass_frames:  # the person left: forget what was gathered
                self.forget()
            return None
        self._face_pass_frames += 1
        if not self.check.ready_for_identify():
            return None
        member, outcome = self.check.identify(self.gallery, self._face_pass_bar)
        if member is not None and outcome.reason in NO_EVIDENCE_YET \
                and not self.check.liveness_window_full:
            return None  # a live person blinks or moves soon: keep watching, up to the window
        self.forget()
        return None if member is None else (member, outcome)

    def forget(self) -> None:
        """Drop what was gathered of the current face (e.g. a code appeared instead)."""
        self._face_pass_frames = 0
        self.check.reset()
