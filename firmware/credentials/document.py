"""`verify_document()`: every credential in what a person carries (image, PDF, file, text)."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from firmware.credentials import verify
from firmware.credentials.containers import (
    MAX_DOCUMENTS,
    UNKNOWN,
    ContainerError,
    DOCUMENT_TOO_MANY,
    Found,
    assemble,
    unpack,
)
from firmware.credentials.trust import TrustStore
from firmware.credentials.verdict import Verdict

log = logging.getLogger(__name__)

Document = bytes | str


@dataclass(frozen=True)
class DocumentVerdict:
    """Outcome of `verify_document()`: the container seen and one Verdict per credential found.

    `failure` (a DOCUMENT_* code of firmware.credentials.containers, PDF_UNSUPPORTED or
    INTERNAL_ERROR) is set when the document itself could not be read; then nothing was
    verified and `verdicts` is empty. `detail` says why, without personal data.
    """

    container: str
    verdicts: tuple[Verdict, ...] = ()
    failure: str | None = None
    detail: str = ""

    @property
    def valid(self) -> bool:
        """True when the document was read, held a credential, and every one is valid."""
        return self.failure is None and bool(self.verdicts) and all(v.valid for v in self.verdicts)


def read_documents(documents: Sequence[Document]) -> tuple[str, list[Found]]:
    """The container name and the assembled credential texts of one or several documents
    (several: e.g. the chunks of one card, one QR image each). Raises ContainerError."""
    check_document_count(len(documents))
    return join_unpacked([unpack(document) for document in documents])


def check_document_count(count: int) -> None:
    """ContainerError DOCUMENT_TOO_MANY_CREDENTIALS past MAX_DOCUMENTS documents in one call."""
    if count > MAX_DOCUMENTS:
        raise ContainerError(DOCUMENT_TOO_MANY, f"{count} documents, more than {MAX_DOCUMENTS}")


def join_unpacked(unpacked: Sequence[tuple[str, list[Found]]]) -> tuple[str, list[Found]]:
    """The joined container name and the assembled credentials of documents already unpacked
    (each `unpack()`'s result); raises ContainerError past MAX_CREDENTIALS credentials."""
    found = [item for _, items in unpacked for item in items]
    return "+".join(dict.fromkeys(container for container, _ in unpacked)), assemble(found)


def verify_document(document: Document | Sequence[Document], trust: TrustStore,
                    at: datetime) -> DocumentVerdict:
    """Verify every credential in a document (file bytes or text), or in several documents
    read together, at the injected time `at`. Never raises on bad input.

    Each Verdict's extras carry "container" (and "note", e.g. chunks assembled); like `verify()`,
    a Verdict's payload is personal data and never logged.
    """
    documents: Sequence[Document] = (
        [document] if isinstance(document, (bytes, bytearray, str)) else document)
    try:
        if not isinstance(documents, Sequence) or not all(
                isinstance(d, (bytes, bytearray, str)) for d in documents):
            return DocumentVerdict(UNKNOWN, failure="DOCUMENT_NOT_CREDENTIAL",
                                   detail="not bytes or text")
        container, found = read_documents([bytes(d) if isinstance(d, bytearray) else d
                                           for d in documents])
        verdicts = tuple(verify_found(item, trust, at) for item in found)
    except ContainerError as exc:
        return DocumentVerdict(UNKNOWN, failure=exc.code, detail=exc.detail)
    except Exception:  # fail safe: a bug in a container parser is a refusal, never a crash
        log.exception("reading a document failed")
        return DocumentVerdict(UNKNOWN, failure="INTERNAL_ERROR", detail="internal error")
    return DocumentVerdict(container, verdicts)


def verify_found(item: Found, trust: TrustStore, at: datetime) -> Verdict:
    """`verify()` one credential text found in a document; extras gain its container (and note)."""
    verdict = verify(item.text, trust, at)
    extras = dict(verdict.extras)
    extras["container"] = item.container
    if item.note:
        extras["note"] = item.note
    return replace(verdict, extras=extras)
