"""Binds a person to a credential: presence, quality, liveness, 1:1 match, anti-sharing.

The kiosk feeds frames while a verified credential waits for its face; `conclude` turns what
was seen into one outcome with a stable reason code. Templates and face crops live in memory
only: in this object (until `reset`) and in the anti-sharing window.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from firmware.protocol.decoded import Decoded
from firmware.vision.antisharing import AntiSharing
from firmware.vision.liveness import LivenessChecker, LivenessConfig
from firmware.vision.matcher import match_1to1
from firmware.vision.quality import QualityConfig, QualityResult, assess

if TYPE_CHECKING:
    from firmware.vision.matcher import Gallery
    from firmware.vision.pad import PadResult, PresentationAttackDetector
    from firmware.vision.pipeline import FacePipeline
    from firmware.vision.types import Face

log = logging.getLogger(__name__)

# "model": the presentation-attack model (firmware/vision/pad.py) must judge the face live
# (else FACE_SPOOF); the temporal cues are gathered beside it and deny only on evidence of an
# attack (a flat carrier's planar motion, a screen's pattern), never for lack of a cue.
LIVENESS_MODES = ("off", "advisory", "required", "model")
TEMPORAL_ATTACK_EVIDENCE = frozenset({"PLANAR_MOTION", "SCREEN_PATTERN"})


@dataclass(frozen=True)
class FaceOutcome:
    """The face side of a decision. Only scores and codes: no template, no image."""

    ok: bool
    reason: str | None
    similarity: float | None = None  # to the enrolled template, for 1:1
    live: bool | None = None
    frames: int = 0
    pad: dict[str, Decoded] | None = None  # PadResult.as_event(): scores only, when PAD ran

    def as_event(self) -> dict[str, Decoded]:
        event = {"ok": self.ok, "reason": self.reason,
                 "similarity": None if self.similarity is None else round(self.similarity, 3),
                 "live": self.live, "frames": self.frames}
        if self.pad is not None:
            event.update(self.pad)
        return event


class FaceCheck:
    """One person at a time: `reset()`, then `observe(frame)` until `ready()` or a timeout, then
    `conclude(...)`. `pipeline` is a FacePipeline (or anything with detect/embed_face/threshold).
    """

    def __init__(self, pipeline: FacePipeline, liveness: str = "advisory",
                 anti_sharing_window_s: float = 600.0,
                 quality: QualityConfig | None = None,
                 liveness_config: LivenessConfig | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 pad: PresentationAttackDetector | None = None) -> None:
        """`pad`: a PresentationAttackDetector (or anything with `check(rgb, face)`); needed
        for liveness "model" and for face pass, which always requires it."""
        if liveness not in LIVENESS_MODES:
            raise ValueError(f"liveness must be one of {LIVENESS_MODES}")
        if liveness == "model" and pad is None:
            raise ValueError('liveness "model" needs a presentation-attack detector (pad=)')
        self._pad = pad
        self._pad_face: tuple[np.ndarray, Face] | None = None  # latest usable face (memory only)
        self._pad_judged: tuple[tuple[np.ndarray, Face], PadResult] | None = None  # (that face, result)
        self._pipeline = pipeline
        self._liveness_mode = liveness
        self._quality = quality or QualityConfig()
        self._liveness = LivenessChecker(liveness_config)
        self._sharing = AntiSharing(anti_sharing_window_s, pipeline.threshold, clock)
        # anti-sharing keys: keyed per boot so even memory holds no credential identifier
        self._sharing_key = secrets.token_bytes(32)
        self._template: np.ndarray | None = None
        self._unembedded: tuple[np.ndarray, Face] | None = None  # latest usable face, not embedded
        self.face_pass = False  # set when 1:N is on: liveness frames are then always gathered
        self._last_quality: QualityResult | None = None
        self._frames = 0

    @property
    def threshold(self) -> float:
        return float(self._pipeline.threshold)

    @property
    def face_pass_threshold(self) -> float | None:
        """The model's calibrated 1:N threshold (None when the model has none)."""
        value = getattr(self._pipeline, "face_pass_threshold", None)
        return None if value is None else float(value)

    def reset(self) -> None:
        self._pad_face = None
        self._pad_judged = None
        self._template = None
        self._unembedded = None
        self._last_quality = None
        self._frames = 0
        self._liveness.reset()

    def observe(self, rgb: np.ndarray) -> QualityResult:
        """Detect and judge the face in one frame; keeps the template of a usable face."""
        # The gates use the landmarks of the largest face only (the others count by size), so
        # the refinement passes of bystanders' faces are skipped: every frame goes through here.
        faces = self._pipeline.detect(rgb, refine_all=False)
        quality = assess(rgb, faces, self._quality)
        self._last_quality = quality
        if not quality.ok or quality.face is None:
            return quality
        self._frames += 1
        if self._liveness_mode != "off" or self.face_pass:
            self._liveness.add_frame(rgb, quality.face)
        # Embedding is the costly step and only the latest usable face counts, so it runs when
        # a template is asked for, not on every frame gathered for liveness.
        self._unembedded = (rgb, quality.face)
        self._pad_face = self._unembedded  # PAD judges the face that is embedded
        return quality

    def _pad_gate(self) -> tuple[str | None, dict[str, Decoded] | None]:
        """PAD on the latest usable face: (None when judged live, else the refusal reason;
        its scores for the event, None without PAD). One inference per model per face: face
        pass asks again on every frame it watches, also when no new usable face came in."""
        if self._pad is None or self._pad_face is None:
            return "FACE_SPOOF", None
        if self._pad_judged is None or self._pad_judged[0] is not self._pad_face:
            self._pad_judged = (self._pad_face, self._pad.check(*self._pad_face))
        pad = self._pad_judged[1]
        return (None if pad.live else pad.reason or "FACE_SPOOF"), pad.as_event()

    def _current_template(self) -> np.ndarray | None:
        """The template of the latest usable face that embeds (memory only)."""
        if self._unembedded is not None:
            rgb, face = self._unembedded
            self._unembedded = None
            try:
                self._template = self._pipeline.embed_face(rgb, face)
            except ValueError as exc:  # degenerate landmarks: the previous template stands
                log.debug("embedding failed: %s", exc)
        return self._template

    def _enough_liveness_frames(self) -> bool:
        return len(self._liveness) >= self._liveness.config.min_frames

    def ready(self) -> bool:
        """A usable face was seen (and, where liveness counts, enough frames of it)."""
        if self._liveness_mode != "off" and not self._enough_liveness_frames():
            return False
        return self._current_template() is not None

    @property
    def liveness_window_full(self) -> bool:
        """As many frames of this face as liveness ever looks at."""
        return len(self._liveness) >= self._liveness.config.max_frames

    def ready_for_identify(self) -> bool:
        """Enough frames of one usable face to identify it and judge its liveness."""
        return self._enough_liveness_frames() and self._current_template() is not None

    def conclude(self, credential_id: str | None, enrolled: np.ndarray | None) -> FaceOutcome:
        """The outcome for the face seen so far, against an optional enrolled template."""
        template = self._current_template()
        if template is None:
            reason = self._last_quality.reason if self._last_quality else None
            return FaceOutcome(False, reason or "NO_FACE", frames=self._frames)
        live: bool | None = None
        pad_event: dict[str, Decoded] | None = None
        if self._liveness_mode == "model":
            refused, pad_event = self._pad_gate()
            if refused is not None:
                return FaceOutcome(False, refused, live=False, frames=self._frames, pad=pad_event)
            result = self._liveness.assess()
            live = result.live
            if result.reason in TEMPORAL_ATTACK_EVIDENCE:
                return FaceOutcome(False, result.reason, live=False, frames=self._frames,
                                   pad=pad_event)
            live = True
        elif self._liveness_mode != "off":
            result = self._liveness.assess()
            live = result.live
            if self._liveness_mode == "required" and not result.live:
                return FaceOutcome(False, result.reason or "LIVENESS_NOT_SHOWN", live=False,
                                   frames=self._frames)
        similarity = None
        if enrolled is not None:
            match = match_1to1(template, enrolled, self.threshold)
            if match.reason is not None:  # the enrolled template itself is unusable
                return FaceOutcome(False, "FACE_TEMPLATE_INVALID", live=live, frames=self._frames,
                                   pad=pad_event)
            similarity = match.score
            if not match.match:
                return FaceOutcome(False, "FACE_MISMATCH", similarity, live, self._frames, pad_event)
        if credential_id:
            key = hmac.new(self._sharing_key, credential_id.encode(), hashlib.sha256).hexdigest()
            sharing = self._sharing.observe(key, template)
            if sharing.flagged:
                return FaceOutcome(False, "SHARED_CREDENTIAL", similarity, live,
                                   self._frames, pad_event)
        return FaceOutcome(True, None, similarity, live, self._frames, pad_event)

    def identify(self, gallery: Gallery, threshold: float) -> tuple[str | None, FaceOutcome]:
        """1:N among opted-in members ("face pass"). Liveness is always judged here: with no
        credential in hand, a face is the only factor, so a photo must not pass for it.
        `threshold` must be stricter than the 1:1 one: a stranger meets every member at once,
        so the false-match rate grows with the gallery (about N x FAR)."""
        template = self._current_template()
        if template is None or len(gallery) == 0:
            return None, FaceOutcome(False, "NO_FACE", frames=self._frames)
        best = gallery.best_match(template, max(threshold, self.threshold))
        if best is None:
            return None, FaceOutcome(False, "NOT_ENROLLED", frames=self._frames)
        member, score = best
        # With no credential the face is the only factor: the PAD model must judge it live
        # (a kiosk without one refuses face pass), as well as the temporal cues.
        refused, pad_event = self._pad_gate()
        if refused is not None:
            return member, FaceOutcome(False, refused, score, False, self._frames, pad_event)
        result = self._liveness.assess()
        if not result.live:
            return member, FaceOutcome(False, result.reason or "NO_LIVENESS_CUES", score, False,
                                       self._frames, pad_event)
        return member, FaceOutcome(True, None, score, True, self._frames, pad_event)
