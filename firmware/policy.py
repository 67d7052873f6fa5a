"""The decision policy: from a credential verdict (and later a face result) to grant or deny."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from firmware.credentials import Verdict


@dataclass(frozen=True)
class Decision:
    """What the kiosk decided for one presentation. Carries no personal data."""

    granted: bool
    reason: str | None  # stable reason code when denied
    format: str
    pseudonym: str | None
    checks: dict[str, bool | None]
    latency_ms: float = 0.0  # frame captured -> decision shown (filled in by the loop)
    face: dict[str, Any] | None = None  # FaceOutcome.as_event(): scores and codes only


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


def decide(verdict: Verdict, pseudonym: str | None) -> Decision:
    """Grant exactly when the credential verified; every other outcome is a reasoned deny."""
    if verdict.valid:
        return Decision(True, None, verdict.format, pseudonym, dict(verdict.checks))
    return Decision(False, verdict.failure or "INTERNAL_ERROR", verdict.format, pseudonym,
                    dict(verdict.checks))
