"""Base45 for the DCC: re-exports firmware.credentials.base45 (still imported by demo/issuer.py and bench/verify.py)."""
from __future__ import annotations

from firmware.credentials.base45 import ALPHABET, Base45Error, b45decode, b45encode

__all__ = ["ALPHABET", "Base45Error", "b45decode", "b45encode"]
