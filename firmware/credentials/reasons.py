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
    "DCC_RULES_OPEN": "Entry rules undecided",
    "DCC_RULES_UNAVAILABLE": "Entry rules unavailable",
    "DCC_REVOKED": "Certificate revoked",
    "DCC_REVOCATION_UNAVAILABLE": "Revocation list unusable",
    # --- shc ---
    "SHC_PREFIX": "Not a SMART Health Card",
    "SHC_TOO_LARGE": "Code too large",
    "SHC_NUMERIC_INVALID": "Code damaged (digits)",
    "SHC_CHUNK_INVALID": "Code damaged (part number)",
    "SHC_CHUNKS_INCOMPLETE": "Scan all parts of the card",
    "SHC_JWS_MALFORMED": "Code damaged (signature block)",
    "SHC_ALG_UNSUPPORTED": "Signature type not supported",
    "SHC_ZIP_UNSUPPORTED": "Card compression not supported",
    "SHC_INFLATE_FAILED": "Code damaged (compression)",
    "SHC_PAYLOAD_TOO_LARGE": "Card content too large",
    "SHC_PAYLOAD_INVALID": "Card content invalid",
    "SHC_ISSUER_UNTRUSTED": "Issuer not trusted",
    "SHC_KEY_UNKNOWN": "Issuer key not known",
    "SHC_SIGNATURE_INVALID": "Signature invalid",
    "SHC_ISSUER_MISMATCH": "Signed by another issuer",
    "SHC_NOT_YET_VALID": "Card not valid yet",
    "SHC_EXPIRED": "Card expired",
    "SHC_CRL_UNAVAILABLE": "Revocation list unavailable",
    "SHC_REVOKED": "Card revoked",
    # --- nzcp ---
    "NZCP_PREFIX": "Not an NZ COVID Pass",
    "NZCP_TOO_LARGE": "Code too large",
    "NZCP_VERSION_UNSUPPORTED": "Pass version not supported",
    "NZCP_BASE32_INVALID": "Code damaged (base32)",
    "NZCP_COSE_INVALID": "Code damaged (signature block)",
    "NZCP_HEADER_INVALID": "Pass signer not named",
    "NZCP_ALG_UNSUPPORTED": "Signature type not supported",
    "NZCP_PAYLOAD_INVALID": "Code damaged (content)",
    "NZCP_ISSUER_UNTRUSTED": "Issuer not trusted",
    "NZCP_DID_UNAVAILABLE": "Issuer keys not cached",
    "NZCP_KEY_NOT_FOUND": "Issuer key not found",
    "NZCP_KEY_INVALID": "Issuer key unusable",
    "NZCP_SIGNATURE_INVALID": "Signature invalid",
    "NZCP_CLAIMS_INVALID": "Pass content invalid",
    "NZCP_NOT_ACTIVE": "Pass not active yet",
    "NZCP_EXPIRED": "Pass expired",
    # --- status ---
    "STATUS_PREFIX": "Not a status code",
    "STATUS_BASE45_INVALID": "Code damaged (base45)",
    "STATUS_COSE_INVALID": "Code damaged (signature block)",
    "STATUS_ALG_UNSUPPORTED": "Signature type not supported",
    "STATUS_KEY_UNKNOWN": "Issuer not trusted",
    "STATUS_SIGNATURE_INVALID": "Signature invalid",
    "STATUS_PAYLOAD_INVALID": "Code damaged (content)",
    "STATUS_VERSION_UNSUPPORTED": "Code version not supported",
    "STATUS_ISSUER_MISMATCH": "Signed by another issuer",
    "STATUS_CODE_NOT_YET_VALID": "Code not valid yet",
    "STATUS_CODE_EXPIRED": "Code too old - get a new one",
    "STATUS_CODE_REVOKED": "Code replaced - use newest",
    "STATUS_CACHE_STALE": "Status data too old",
    "STATUS_NO_RECORD": "No status on record",
    "STATUS_RECORD_EXPIRED": "Status expired",
    "STATUS_AMBER": "Status AMBER - see staff",
    "STATUS_RED": "Status RED - no entry",
    "STATUS_RECORD_INVALID": "Status record invalid",
    "STATUS_RECORD_SIGNATURE": "Status record not trusted",
}


def message_for(code: str | None) -> str:
    """Display text for a reason code; unknown codes fall back to a generic message."""
    if code is None:
        return ""
    return REASONS.get(code, "Not accepted")
