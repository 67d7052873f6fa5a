"""CertLogic, the EU DCC business-rule language: evaluator, validator and rule sets.

    evaluate(expr, data) -> value          validate(expr) -> list[str]
    parse_rules(json) -> list[Rule]        select_rules(rules, country, cert_type, at, ...)
    run_rules(rules, payload, external) -> list[RuleResult]     build_external(...)
All failures are `CertLogicError`. See docs/certlogic.md.
"""
from __future__ import annotations

from firmware.credentials.certlogic.engine import evaluate, extract_from_uvci
from firmware.credentials.certlogic.external import (
    build_external,
    compress_value_sets,
    load_value_sets,
)
from firmware.credentials.certlogic.rules import (
    CERTIFICATE_TYPES,
    ENGINE_VERSION,
    Outcome,
    Rule,
    RuleFormatError,
    RuleResult,
    certificate_type_of,
    overall,
    parse_rules,
    run_rules,
    select_rules,
)
from firmware.credentials.certlogic.validation import ValidationIssue, validate, validate_issues
from firmware.credentials.certlogic.values import CertLogicError, DateTime, boolsiness

SPEC_VERSION = "1.3.3"

__all__ = [
    "CERTIFICATE_TYPES",
    "ENGINE_VERSION",
    "SPEC_VERSION",
    "CertLogicError",
    "DateTime",
    "Outcome",
    "Rule",
    "RuleFormatError",
    "RuleResult",
    "ValidationIssue",
    "boolsiness",
    "build_external",
    "certificate_type_of",
    "compress_value_sets",
    "evaluate",
    "extract_from_uvci",
    "load_value_sets",
    "overall",
    "parse_rules",
    "run_rules",
    "select_rules",
    "validate",
    "validate_issues",
]
