"""The credential formats as equal plug-ins: each one's prefixes, trust loader and verifier."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from firmware.protocol.envelope import PinnedKeys

if TYPE_CHECKING:
    from firmware.credentials.trust import TrustStore
    from firmware.credentials.verdict import Verdict

# Puts one format's trust from a trust folder into the store (`pinned_keys` check the fleet
# envelopes) and names what it skipped in `store.problems`; may raise, then that format
# trusts nothing (store.load_trust_dir).
TrustLoader = Callable[["TrustStore", Path, PinnedKeys], None]
Verifier = Callable[[str, "TrustStore", datetime], "Verdict"]


@dataclass(frozen=True)
class CredentialFormat:
    """One credential format, as the dispatcher and the trust loader see it."""

    name: str  # Verdict.format, and the part of the TrustStore the format reads
    prefixes: tuple[str, ...]  # upper case: a scanned text is compared upper-cased
    load_trust: TrustLoader
    verify: Verifier

    def claims(self, text: str) -> bool:
        """Whether `text` starts with one of this format's prefixes (case-insensitive)."""
        return any(text[:len(prefix)].upper() == prefix for prefix in self.prefixes)


@cache
def registered() -> tuple[CredentialFormat, ...]:
    """Every supported format, in the order their prefixes are tried.

    Imported on first use, not with `firmware.credentials`: the verifiers pull in their codecs.
    """
    from firmware.credentials import dcc, nzcp, shc, status

    return (dcc.FORMAT, shc.FORMAT, nzcp.FORMAT, status.FORMAT)


def format_for(text: str) -> CredentialFormat | None:
    """The registered format whose prefix `text` carries, or None."""
    return next((fmt for fmt in registered() if fmt.claims(text)), None)


def report_problems(store: TrustStore, name: str, problems: list[str]) -> None:
    """Add what a format's loader skipped to the store's problems, prefixed with the format."""
    store.problems += [f"{name}: {problem}" for problem in problems]
