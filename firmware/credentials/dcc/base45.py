"""Base45 for the DCC: re-exports firmware.credentials.base45 (demo/issuer.py, bench/verify.py use it)."""
from __future__ import annotations

from firmware.credentials.base45 import ALPHABET, Base45Error, b45decode, b45encode

__all__ = ["ALPHABET", "Base45Error", "b45decode", "b45encode"]
