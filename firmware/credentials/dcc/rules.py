"""The business-rules stage: CertLogic rules from the trust store, selected and run offline.

Rules are selected for the kiosk's country (`TrustStore.dcc_country`), the DCC's type, the
issuing country (for Invalidation rules) and the injected validation clock. FAIL and OPEN both
deny: a rule that cannot be decided is never taken as passed. With no rules loaded the stage
does not run (None).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from firmware.credentials.dcc.schema import entry_type
from firmware.protocol.decoded import Decoded

if TYPE_CHECKING:  # the pipeline imports this module
    from firmware.credentials.cose_sign1 import Sign1
    from firmware.credentials.dcc.codec import Claims
    from firmware.credentials.dcc.pipeline import _Run
    from firmware.credentials.trust import TrustStore

CERT_TYPES = {"v": "Vaccination", "t": "Test", "r": "Recovery"}


def run_stage(claims: Claims, sign1: Sign1, trust: TrustStore, at: datetime, run: _Run) -> None:
    rule_set = getattr(trust, "dcc_rules", None) or []
    refused = getattr(trust, "dcc_rules_refused", None)
    if not rule_set and not refused:
        return
    country = getattr(trust, "dcc_country", None)
    if refused and country:  # a malformed rule where this DCC is judged: fail closed
        from firmware.credentials.dcc.rule_set import refusal_for
        why = refusal_for(refused, country, claims.iss or None)
        if why is not None:
            run.fail("rules", "DCC_RULES_UNAVAILABLE", why)
            return
    kind = entry_type(claims.dcc)
    if not country or kind is None or not isinstance(at, datetime):
        why = "no kiosk country configured" if not country else "no single entry or clock"
        run.fail("rules", "DCC_RULES_UNAVAILABLE", why)
        return
    try:
        from firmware.credentials import certlogic
    except ImportError:
        run.fail("rules", "DCC_RULES_UNAVAILABLE", "the CertLogic engine is not installed")
        return
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    issuer = claims.iss or ""
    try:
        selected = certlogic.select_rules(rule_set, country, CERT_TYPES[kind], at,
                                          issuer_country=issuer or None,
                                          region=getattr(trust, "dcc_region", None))
        external = certlogic.build_external(
            at, _compressed_valuesets(getattr(trust, "dcc_valuesets", None)), country,
            exp=_epoch(claims.exp), iat=_epoch(claims.iat), issuer_country_code=issuer,
            kid=sign1.kid or b"", region=getattr(trust, "dcc_region", None) or "")
    except certlogic.CertLogicError as exc:
        run.fail("rules", "DCC_RULES_UNAVAILABLE", f"rules could not be prepared: {exc}")
        return
    results = certlogic.run_rules(selected, claims.dcc, external)
    failed = [r.identifier for r in results if r.outcome == certlogic.Outcome.FAIL]
    still_open = [r.identifier for r in results if r.outcome == certlogic.Outcome.OPEN]
    if failed:
        run.fail("rules", "DCC_RULES_FAILED", f"failed: {', '.join(failed)}")
    elif still_open:
        run.fail("rules", "DCC_RULES_OPEN", f"undecided: {', '.join(still_open)}")
    else:
        run.ok("rules", f"{len(results)} rule(s) of {country} passed")


def _epoch(value: float | None) -> int | None:
    return int(value) if isinstance(value, (int, float)) else None


def _compressed_valuesets(valuesets: dict[str, Decoded] | None) -> dict[str, list[str]]:
    """value-set id -> its codes, from the documents the trust store holds."""
    if not isinstance(valuesets, dict):
        return {}
    out: dict[str, list[str]] = {}
    for set_id, document in valuesets.items():
        values = document.get("valueSetValues") if isinstance(document, dict) else document
        if isinstance(values, dict):
            out[set_id] = list(values)
        elif isinstance(values, list):
            out[set_id] = [v for v in values if isinstance(v, str)]
    return out
