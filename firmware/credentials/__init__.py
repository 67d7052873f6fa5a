"""Credential verification: `verify(text, trust, at)` for every supported format, and
`verify_document(document, trust, at)` for what people carry (images, PDFs, files); never raise."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from firmware.credentials.trust import TrustStore
from firmware.credentials.verdict import Verdict, empty_checks

__all__ = ["TrustStore", "Verdict", "verify", "verify_document", "detect_format"]

if TYPE_CHECKING:
    from firmware.credentials.document import DocumentVerdict

log = logging.getLogger(__name__)


def detect_format(text: str) -> str:
    """The format a scanned text claims by its prefix, or "unknown"."""
    from firmware.credentials.formats import format_for

    fmt = format_for(text) if isinstance(text, str) else None
    return fmt.name if fmt is not None else "unknown"


def verify(text: str, trust: TrustStore, at: datetime) -> Verdict:
    """Verify one scanned credential against cached trust data at the injected time `at`, with
    the registered format (firmware/credentials/formats.py) whose prefix the text carries.

    Never raises on bad input: every failure is an invalid Verdict with a stable reason code.
    """
    name = "unknown"
    try:
        from firmware.credentials.formats import format_for

        fmt = format_for(text) if isinstance(text, str) else None
        if fmt is not None:
            name = fmt.name
            return fmt.verify(text, trust, at)
    except Exception:  # fail safe: a bug in a verifier is a deny, never a crash
        log.exception("verifier for format %s failed", name)
        return Verdict(valid=False, format=name, failure="INTERNAL_ERROR", checks=empty_checks())
    checks = empty_checks()
    checks["prefix"] = False
    return Verdict(valid=False, format="unknown", failure="UNKNOWN_FORMAT", checks=checks)


def verify_document(document: bytes | str | Sequence[bytes | str], trust: TrustStore,
                    at: datetime) -> DocumentVerdict:
    """Verify every credential in what a person carries: a QR image (PNG, JPEG), a PDF page,
    `shc:/` chunk texts, a bare JWS, a `.smart-health-card` file, a FHIR `$health-cards-issue`
    response or `HC1:`/`NZCP:/`/`HG1:` text (file bytes or text; several documents are read
    together). The result names the container; never raises on bad input (see document.py).
    """
    from firmware.credentials.document import verify_document as _verify_document

    return _verify_document(document, trust, at)
