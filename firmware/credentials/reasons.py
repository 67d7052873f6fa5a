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
    "DCC_PREFIX_INVALID": "Not an EU certificate (HC1)",
    "DCC_TOO_LARGE": "Code too large",
    "DCC_BASE45_INVALID": "Code damaged (base45)",
    "DCC_ZLIB_INVALID": "Code damaged (compression)",
    "DCC_COSE_INVALID": "Code damaged (signature block)",
    "DCC_CBOR_INVALID": "Code damaged (content)",
    "DCC_ALG_UNSUPPORTED": "Signature type not supported",
    "DCC_KID_MISSING": "Signer not named",
    "DCC_KID_UNKNOWN": "Issuer not trusted",
    "DCC_SIGNATURE_INVALID": "Signature invalid",
    "DCC_CLAIMS_MISSING": "Issue/expiry date missing",
    "DCC_NOT_YET_VALID": "Certificate not valid yet",
    "DCC_EXPIRED": "Certificate expired",
    "DCC_SIGNER_VALIDITY": "Signer key not valid then",
    "DCC_KEY_USAGE": "Signer not allowed for type",
    "DCC_SCHEMA_INVALID": "Certificate content invalid",
    "DCC_VALUESET_UNKNOWN": "Unknown vaccine/test code",
    "DCC_RULES_FAILED": "Entry rules not met",
    "DCC_RULES_UNAVAILABLE": "Entry rules unavailable",
    "DCC_REVOKED": "Certificate revoked",
    "DCC_REVOCATION_UNAVAILABLE": "Revocation list unusable",
    # --- shc ---
    # --- nzcp ---
    # --- status ---
}


def message_for(code: str | None) -> str:
    """Display text for a reason code; unknown codes fall back to a generic message."""
    if code is None:
        return ""
    return REASONS.get(code, "Not accepted")
