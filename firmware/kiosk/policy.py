"""The decision policy: a credential verdict, a face result and the settings to grant or deny."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Union

from firmware.credentials import Verdict
from firmware.protocol.decoded import Decoded

if TYPE_CHECKING:  # only its fields are read here: the vision stack stays unimported
    from firmware.kiosk.facecheck import FaceOutcome

FACE_PASS_FORMAT = "face_pass"  # the format logged for a member recognised 1:N without a code


@dataclass(frozen=True)
class Decision:
    """What the kiosk decided for one presentation. Carries no personal data."""

    granted: bool
    reason: str | None  # stable reason code when denied
    format: str
    pseudonym: str | None
    checks: dict[str, bool | None]
    latency_ms: float = 0.0  # frame captured -> decision shown (filled in by the loop)
    face: dict[str, Decoded] | None = None  # FaceOutcome.as_event(): scores and codes only


@dataclass(frozen=True)
class Policy:
    """The settings a decision depends on."""

    face_required: bool  # face checks are on: a valid code also needs its holder's face


@dataclass(frozen=True)
class FaceError:
    """The face check could not reach a conclusion (a vision failure, an enrolled template that
    cannot be opened): nothing was measured, so the decision carries no face scores."""

    reason: str  # FACE_CHECK_ERROR, FACE_TEMPLATE_UNAVAILABLE


FaceResult = Union["FaceOutcome", FaceError]


def trust_problem(clock_problem: str | None, trust_updated_at: datetime | None, now: datetime,
                  max_age_h: float) -> str | None:
    """A reason to refuse every credential before looking at it, or None."""
    if clock_problem is not None:
        return clock_problem
    if trust_updated_at is None:
        return "TRUST_DATA_MISSING"
    age_h = (now - trust_updated_at).total_seconds() / 3600.0
    if age_h > max_age_h:
        return "TRUST_DATA_STALE"
    return None


def awaits_face(verdict: Verdict, policy: Policy) -> bool:
    """Whether the holder's face must be checked before deciding (an invalid code never waits)."""
    return verdict.valid and policy.face_required


def decide(verdict: Verdict, face: FaceResult | None, policy: Policy,
           pseudonym: str | None = None, *, face_pass: bool = False) -> Decision:
    """Every decision the kiosk takes. Grant exactly when the credential verified and, where a
    face is required or was checked, the face check passed; anything else is a deny with a
    reason code. `face_pass`: the face was identified 1:N and `verdict` is the member's record."""
    fmt = FACE_PASS_FORMAT if face_pass else verdict.format
    checks = dict(verdict.checks)
    scores = None if face is None or isinstance(face, FaceError) else face.as_event()
    if not verdict.valid:  # the credential's own reason comes first, even for face pass
        return Decision(False, verdict.failure or "INTERNAL_ERROR", fmt, pseudonym, checks,
                        face=scores)
    if isinstance(face, FaceError):
        return Decision(False, face.reason, fmt, pseudonym, checks)
    if face is None:
        if policy.face_required or face_pass:  # fail safe: a required face never seen denies
            return Decision(False, "NO_FACE", fmt, pseudonym, checks)
        return Decision(True, None, fmt, pseudonym, checks)
    if face.ok:
        return Decision(True, None, fmt, pseudonym, checks, face=scores)
    return Decision(False, face.reason or "FACE_CHECK_ERROR", fmt, pseudonym, checks, face=scores)
