"""NZ COVID Pass (`NZCP:/`): the prefix, trust loader and `verify_nzcp(text, trust, at)`."""
from __future__ import annotations

from pathlib import Path

from firmware.credentials.formats import CredentialFormat, report_problems
from firmware.credentials.nzcp.codec import PREFIX
from firmware.credentials.nzcp.pipeline import verify_nzcp
from firmware.credentials.nzcp.trust import NzcpTrust, did_web_url, load_trust
from firmware.credentials.trust import TrustStore
from firmware.protocol.envelope import PinnedKeys

__all__ = ["FORMAT", "PREFIX", "NzcpTrust", "did_web_url", "load_into", "load_trust",
           "verify_nzcp"]


def load_into(store: TrustStore, directory: Path, pinned_keys: PinnedKeys = None) -> None:
    """Put the trusted issuers and DID documents of `directory` into `store` (None without)."""
    store.nzcp = load_trust(directory, pinned_keys=pinned_keys)
    report_problems(store, "nzcp", store.nzcp.problems if store.nzcp else [])


FORMAT = CredentialFormat("nzcp", (PREFIX.upper(),), load_into, verify_nzcp)
