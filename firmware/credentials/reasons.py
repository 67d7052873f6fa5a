"""Stable reason codes for credential verification and the text the display shows for each."""
from __future__ import annotations

# code -> short message for the LED display (<= 32 chars, no personal data).
# Each format adds its codes in its own block; codes are stable API (logged, uploaded, tested).
REASONS: dict[str, str] = {
    # generic
    "UNKNOWN_FORMAT": "Code not recognised",
    "INTERNAL_ERROR": "Check failed - see staff",
    "CLOCK_UNTRUSTED": "Clock not set - see staff",
    "TRUST_DATA_STALE": "Trust data too old",
    # --- dcc ---
    # --- shc ---
    # --- nzcp ---
    # --- status ---
}


def message_for(code: str | None) -> str:
    """Display text for a reason code; unknown codes fall back to a generic message."""
    if code is None:
        return ""
    return REASONS.get(code, "Not accepted")
