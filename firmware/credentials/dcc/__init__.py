"""EU Digital COVID Certificate (HC1) verification: `verify_dcc(text, trust, at) -> Verdict`."""
from __future__ import annotations

from firmware.credentials.dcc.pipeline import verify_dcc

__all__ = ["verify_dcc"]
