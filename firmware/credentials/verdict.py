"""The result of verifying one credential: a verdict with a stable reason code."""
from __future__ import annotations

from dataclasses import dataclass, field

from firmware.protocol.decoded import Decoded

# Stage names of Verdict.checks, in pipeline order (DCC names; other formats use the subset
# that applies to them: e.g. SHC uses "base45" for its numeric/base64url decoding stage).
STAGES: tuple[str, ...] = (
    "prefix", "base45", "zlib", "cose", "cbor", "signature", "expiry",
    "key_usage", "schema", "rules", "revocation",
)


@dataclass(frozen=True)
class Verdict:
    """Outcome of `verify()`. Never carries an exception; `failure` is a stable reason code."""

    valid: bool
    format: str  # "dcc", "shc", "nzcp", "status" or "unknown"
    failure: str | None
    payload: dict[str, Decoded] | None = field(default=None, repr=False)  # personal data: never logged
    checks: dict[str, bool | None] = field(default_factory=dict)
    # Raw credential identifier (UVCI, SHC jti/rid source, NZCP jti, status subject). Only the
    # kiosk uses it, to derive a keyed pseudonym; it must never be logged or stored as is.
    credential_id: str | None = field(default=None, repr=False)
    # Free-form extras a format may hand to the kiosk policy (e.g. a status record's
    # enrolled face template reference). Never logged.
    extras: dict[str, Decoded] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.valid and self.failure is not None:
            raise ValueError("a valid verdict cannot carry a failure code")
        if not self.valid and self.failure is None:
            raise ValueError("an invalid verdict must carry a failure code")


def empty_checks() -> dict[str, bool | None]:
    """A checks dict with every stage present and not run (None)."""
    return {stage: None for stage in STAGES}
