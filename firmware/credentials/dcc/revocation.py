"""DCC revocation (placeholder until the list structure lands)."""
from __future__ import annotations

from typing import Any


def run_stage(dcc: Any, sign1: Any, trust: Any, run: Any) -> None:
    """Leave the stage as not run (None) when no revocation list is loaded."""
    if getattr(trust, "dcc_revocation", None) is None:
        return
    run.fail("revocation", "DCC_REVOCATION_UNAVAILABLE", "revocation data is not usable")
