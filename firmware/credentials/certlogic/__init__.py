"""CertLogic, the EU DCC business-rule language: evaluator, validator and rule sets."""
from __future__ import annotations

from firmware.credentials.certlogic.engine import evaluate, extract_from_uvci
from firmware.credentials.certlogic.validation import ValidationIssue, validate, validate_issues
from firmware.credentials.certlogic.values import CertLogicError, DateTime, boolsiness

SPEC_VERSION = "1.3.3"

__all__ = [
    "SPEC_VERSION",
    "CertLogicError",
    "DateTime",
    "ValidationIssue",
    "boolsiness",
    "evaluate",
    "extract_from_uvci",
    "validate",
    "validate_issues",
]
