"""Our status code (`HG1:`): the prefix, trust loader, `verify_status` and `verify_member`."""
from __future__ import annotations

from pathlib import Path

from firmware.credentials.formats import CredentialFormat, report_problems
from firmware.credentials.status.code import PREFIX
from firmware.credentials.status.pipeline import verify_member, verify_status
from firmware.credentials.status.records import StatusRecord
from firmware.credentials.status.trust import StatusTrust, load_trust
from firmware.credentials.trust import TrustStore
from firmware.protocol.envelope import PinnedKeys

__all__ = ["FORMAT", "PREFIX", "StatusRecord", "StatusTrust", "load_into", "load_trust",
           "verify_member", "verify_status"]


def load_into(store: TrustStore, directory: Path, pinned_keys: PinnedKeys = None) -> None:
    """Put the status issuer keys and record cache of `directory` into `store` (None without)."""
    store.status = load_trust(directory, pinned_keys=pinned_keys)
    report_problems(store, "status", store.status.problems if store.status else [])


FORMAT = CredentialFormat("status", (PREFIX.upper(),), load_into, verify_status)
