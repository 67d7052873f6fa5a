"""EU Digital COVID Certificate (`HC1:`): its prefix, trust loader and `verify_dcc(text, trust, at)`."""
from __future__ import annotations

from pathlib import Path

from firmware.credentials.dcc.codec import PREFIX
from firmware.credentials.dcc.pipeline import verify_dcc
from firmware.credentials.formats import CredentialFormat
from firmware.credentials.trust import TrustStore
from firmware.protocol.envelope import PinnedKeys

__all__ = ["FORMAT", "PREFIX", "load_into", "verify_dcc"]


def load_into(store: TrustStore, directory: Path, pinned_keys: PinnedKeys = None) -> None:
    """Put the DCC signers, rules, value sets and revocation list of `directory` into `store`."""
    from firmware.credentials.store import load_dcc_trust  # store.py imports dcc's modules

    load_dcc_trust(store, directory, pinned_keys)


FORMAT = CredentialFormat("dcc", (PREFIX.upper(),), load_into, verify_dcc)
