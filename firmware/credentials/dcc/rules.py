"""The business-rules stage: CertLogic rules from the trust store, when any are loaded."""
from __future__ import annotations

from typing import Any


def run_stage(dcc: Any, claims: Any, trust: Any, at: Any, run: Any) -> None:
    """Leave the stage as not run (None) when no rules are loaded (filled in with CertLogic)."""
    rule_set = getattr(trust, "dcc_rules", None)
    if not rule_set:
        return
    run.fail("rules", "DCC_RULES_UNAVAILABLE", "rules are loaded but no rule engine is installed")
