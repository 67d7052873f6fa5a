"""SMART Health Cards (`shc:/`): the prefix, trust loader and `verify_shc(text, trust, at)`."""
from __future__ import annotations

from pathlib import Path

from firmware.credentials.formats import CredentialFormat, report_problems
from firmware.credentials.shc.codec import PREFIX
from firmware.credentials.shc.pipeline import HEALTH_CARD_TYPE, verify_shc
from firmware.credentials.shc.trust import ShcTrust, load_trust
from firmware.credentials.trust import TrustStore
from firmware.protocol.envelope import PinnedKeys

__all__ = ["FORMAT", "PREFIX", "HEALTH_CARD_TYPE", "ShcTrust", "load_into", "load_trust",
           "verify_shc"]


def load_into(store: TrustStore, directory: Path, pinned_keys: PinnedKeys = None) -> None:
    """Put the SHC issuer keys and CRLs of `directory` into `store` (None without SHC files)."""
    store.shc = load_trust(directory, pinned_keys=pinned_keys)
    report_problems(store, "shc", store.shc.problems if store.shc else [])


FORMAT = CredentialFormat("shc", (PREFIX.upper(),), load_into, verify_shc)
