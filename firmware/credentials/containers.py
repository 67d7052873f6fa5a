"""What people carry, unpacked into credential texts: QR images, PDF pages, `shc:/` chunks, bare
JWS, `.smart-health-card` files, FHIR `$health-cards-issue` responses and plain text; bounded."""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from firmware.credentials.shc.chunks import COMPLETE, PENDING, ChunkAssembler
from firmware.credentials.shc.codec import MAX_CHUNKS, jws_to_numeric, parse_chunk
from firmware.credentials.shc.codec import PREFIX as SHC_PREFIX
from firmware.protocol import finite_json
from firmware.protocol.decoded import Decoded

# Container names: stable, shown by `healthgate check` and in DocumentVerdict / Verdict.extras.
QR_IMAGE = "qr-image"
PDF = "pdf"
SHC_TEXT = "shc-text"
JWS = "jws"
SHC_FILE = "smart-health-card-file"
FHIR_PARAMETERS = "fhir-parameters"
TEXT = "text"
UNKNOWN = "unknown"

# Bounds. A phone photo or a certificate PDF is a few MB; a `.smart-health-card` file holds
# a handful of JWS of at most 1195 x MAX_CHUNKS characters each, so 1 MiB of JSON is generous.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
MAX_JSON_BYTES = 1024 * 1024
# A FHIR Parameters resource nests 4-6 levels (parameter[] -> part[] -> value); 16 is generous.
MAX_JSON_DEPTH = 16
MAX_JSON_NODES = 10_000  # values and keys, all levels
MAX_CREDENTIALS = 16  # credentials in one document (after assembling chunks)
MAX_TEXTS = MAX_CREDENTIALS * MAX_CHUNKS  # code texts or non-blank lines in one document
MAX_DOCUMENTS = MAX_CHUNKS  # documents in one call (a chunked card may come as one image a chunk)

# Why a document could not be read (DocumentVerdict.failure); no credential was verified.
DOCUMENT_TOO_LARGE = "DOCUMENT_TOO_LARGE"
DOCUMENT_TOO_MANY = "DOCUMENT_TOO_MANY_CREDENTIALS"
DOCUMENT_JSON_INVALID = "DOCUMENT_JSON_INVALID"
DOCUMENT_NOT_CREDENTIAL = "DOCUMENT_NOT_CREDENTIAL"
DOCUMENT_NO_CODE = "DOCUMENT_NO_CODE"
PDF_UNSUPPORTED = "PDF_UNSUPPORTED"

# A compact JWS: three base64url parts, the header a JSON object (base64url of '{"' is 'eyJ').
_JWS_RE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# Something shaped like a code of some format ("HC2:...", "HL0:..."): verified, and reported
# UNKNOWN_FORMAT or as a prefix failure, rather than taken for a file name.
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9]{1,7}:[^/\\\s]")
# JSON tokens for the structure scan: a string (its closing quote optional, so that an
# unterminated one ends the scan in one pass), a bracket, or a run of scalar characters.
_JSON_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]|[^\s,:\[\]{}"]+', re.DOTALL)


class ContainerError(ValueError):
    """A document that cannot be unpacked; `code` is one of the DOCUMENT_* failure codes."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Found:
    """One credential text found in a document, with the container it came in."""

    container: str
    text: str
    note: str = ""  # e.g. how many chunks of a card were found


def is_jws(text: str) -> bool:
    """True when `text` is shaped like a compact JWS (an SHC without its `shc:/` wrapper)."""
    return _JWS_RE.fullmatch(text) is not None


def looks_like_credential(text: str) -> bool:
    """True for a known prefix, a compact JWS, or a `SCHEME:...` code of an unknown format."""
    from firmware.credentials.formats import format_for  # the registered formats' prefixes

    text = text.strip()
    if format_for(text) is not None:
        return True
    return is_jws(text) or _SCHEME_RE.match(text) is not None


def unpack(data: bytes | str) -> tuple[str, list[Found]]:
    """The container of one document (file bytes or text) and the credential texts in it.

    Chunks of a chunked SMART Health Card are returned as they are: `assemble` joins them
    (possibly across documents). Raises ContainerError.
    """
    if len(data) > MAX_DOCUMENT_BYTES:  # for a text: characters, each at least one byte
        raise ContainerError(DOCUMENT_TOO_LARGE, f"larger than {MAX_DOCUMENT_BYTES:,} bytes")
    if isinstance(data, str):
        return unpack_text(data)
    from firmware.credentials import images

    if images.is_pdf(data):
        return PDF, _codes(PDF, _pdf_texts(data))
    try:
        texts = images.read_image_texts(data)
    except images.ImageTooLarge as exc:
        raise ContainerError(DOCUMENT_TOO_LARGE, str(exc)) from None
    except ValueError:  # not an image: credential text, or nothing we read
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ContainerError(DOCUMENT_NOT_CREDENTIAL, "not a credential or image") from None
        return unpack_text(text)
    return QR_IMAGE, _codes(QR_IMAGE, texts)


def _pdf_texts(data: bytes) -> list[str]:
    from firmware.credentials import images

    try:
        return images.read_pdf_texts(data)
    except images.PdfUnavailable as exc:
        raise ContainerError(PDF_UNSUPPORTED, str(exc)) from None
    except images.TooManyPages as exc:
        raise ContainerError(DOCUMENT_TOO_LARGE, str(exc)) from None
    except ValueError as exc:  # ImageTooLarge cannot happen: pages are rendered within bounds
        raise ContainerError(DOCUMENT_NOT_CREDENTIAL, str(exc)) from None


def _codes(container: str, texts: list[str]) -> list[Found]:
    """The codes read from an image or a PDF, bounded in number."""
    if not texts:
        raise ContainerError(DOCUMENT_NO_CODE, "no code found in the " +
                             ("PDF" if container == PDF else "image"))
    if len(texts) > MAX_TEXTS:
        raise ContainerError(DOCUMENT_TOO_MANY, f"{len(texts)} codes, more than {MAX_TEXTS}")
    return [Found(container, _unwrap_jws(text)) for text in texts]


def unpack_text(text: str) -> tuple[str, list[Found]]:
    """A text document: JSON (`.smart-health-card`, FHIR Parameters) or one credential a line."""
    text = text.lstrip("\ufeff").strip()  # a byte-order mark is not part of the content
    if text.startswith("{"):
        return _unpack_json(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > MAX_TEXTS:
        raise ContainerError(DOCUMENT_TOO_MANY, f"{len(lines)} lines, more than {MAX_TEXTS}")
    if not any(looks_like_credential(line) for line in lines):
        raise ContainerError(DOCUMENT_NOT_CREDENTIAL, "not a credential or image")
    # Every line is verified, also one that looks like nothing known: nothing is skipped unseen.
    found = [Found(_line_container(line), _unwrap_jws(line)) for line in lines]
    kinds = list(dict.fromkeys(item.container for item in found))
    return (kinds[0] if len(kinds) == 1 else TEXT), found


def _line_container(line: str) -> str:
    if line[: len(SHC_PREFIX)].lower() == SHC_PREFIX:
        return SHC_TEXT
    return JWS if is_jws(line) else TEXT


def _unwrap_jws(text: str) -> str:
    """A bare JWS as the `shc:/` text the SHC verifier reads (numeric mode); others unchanged."""
    return SHC_PREFIX + jws_to_numeric(text) if is_jws(text) else text


def load_json(text: str) -> Decoded:
    """Parse JSON within MAX_JSON_BYTES, MAX_JSON_DEPTH and MAX_JSON_NODES; NaN and Infinity
    (not JSON, RFC 8259) and numbers too large for a float are refused. Raises ContainerError."""
    size = len(text.encode("utf-8"))
    if size > MAX_JSON_BYTES:
        raise ContainerError(DOCUMENT_TOO_LARGE, f"JSON of {size:,} bytes is larger than "
                                                 f"{MAX_JSON_BYTES:,} bytes")
    _check_structure(text)  # before parsing: the parser itself recurses per level
    try:  # nesting already bounded by the scan: no second depth pass (~0.1 s a MiB)
        return finite_json.loads(text, max_depth=None)
    except ValueError as exc:
        raise ContainerError(DOCUMENT_JSON_INVALID, f"not valid JSON: {exc}") from None


def _check_structure(text: str) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH or more than MAX_JSON_NODES values and keys.

    A scan of the tokens, stopped at the first bound crossed, so it costs at most
    ~2 x MAX_JSON_NODES steps whatever the size; syntax is left to the parser.
    """
    depth = nodes = 0
    for token in _JSON_TOKEN_RE.finditer(text):
        first = token.group()[0]
        if first in "]}":
            depth -= 1
            if depth < 0:  # unbalanced: the parser refuses it, no need to scan on
                return
            continue
        nodes += 1
        if nodes > MAX_JSON_NODES:
            raise ContainerError(DOCUMENT_JSON_INVALID,
                                 f"JSON with more than {MAX_JSON_NODES:,} values and keys")
        if first in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise ContainerError(DOCUMENT_JSON_INVALID,
                                     f"JSON nested deeper than {MAX_JSON_DEPTH} levels")


def _unpack_json(text: str) -> tuple[str, list[Found]]:
    document = load_json(text)
    if not isinstance(document, dict):
        raise ContainerError(DOCUMENT_NOT_CREDENTIAL, "not a credential or image")
    if document.get("resourceType") == "Parameters":
        return FHIR_PARAMETERS, _fhir_credentials(document)
    if "verifiableCredential" in document:
        return SHC_FILE, _shc_file_credentials(document)
    raise ContainerError(DOCUMENT_NOT_CREDENTIAL, "not a credential or image")


def _shc_file_credentials(document: dict[str, Decoded]) -> list[Found]:
    """`{"verifiableCredential": [jws, ...]}` (the `.smart-health-card` file of the SHC spec)."""
    entries = document["verifiableCredential"]
    if not isinstance(entries, list):
        raise ContainerError(DOCUMENT_JSON_INVALID, "verifiableCredential is not an array")
    return _credentials(SHC_FILE, entries, "verifiableCredential")


def _fhir_credentials(document: dict[str, Decoded]) -> list[Found]:
    """A FHIR `Parameters` resource: every `parameter` named `verifiableCredential`, whose
    `valueString` is a JWS (the `$health-cards-issue` response); other parameters are ignored."""
    parameters = document.get("parameter")
    if not isinstance(parameters, list):
        raise ContainerError(DOCUMENT_JSON_INVALID, "Parameters.parameter is not an array")
    values = [p.get("valueString") for p in parameters
              if isinstance(p, dict) and p.get("name") == "verifiableCredential"]
    return _credentials(FHIR_PARAMETERS, values, "verifiableCredential valueString")


def _credentials(container: str, values: list[Decoded], what: str) -> list[Found]:
    if not values:
        raise ContainerError(DOCUMENT_NOT_CREDENTIAL, f"no {what} in the document")
    if len(values) > MAX_CREDENTIALS:
        raise ContainerError(DOCUMENT_TOO_MANY,
                             f"{len(values)} credentials, more than {MAX_CREDENTIALS}")
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise ContainerError(DOCUMENT_JSON_INVALID, f"{what} {index + 1} is not a string")
    return [Found(container, _unwrap_jws(value.strip())) for value in values]


def assemble(found: Sequence[Found]) -> list[Found]:
    """Join the chunks of chunked SMART Health Cards with the kiosk's own ChunkAssembler.

    Chunks may come in any order and from several documents. A set left incomplete is returned
    as one of its chunks, which the verifier reports as SHC_CHUNKS_INCOMPLETE. Raises
    ContainerError past MAX_CREDENTIALS credentials.
    """
    assembler = ChunkAssembler(clock=lambda: 0.0)  # one document at once: no timeout applies
    out: list[Found] = []
    partial: list[Found] = []  # the chunks of the set in progress
    for item in found:
        if item.text[: len(SHC_PREFIX)].lower() != SHC_PREFIX:
            out.append(item)
            continue
        had = assembler.pending[0]
        result = assembler.feed(item.text)
        if result.status == PENDING:
            restarted = had and assembler.pending[0] == 1 and item not in partial
            if restarted:  # another card's chunk: the set in progress was dropped, incomplete
                out.append(_incomplete(partial, had))
                partial = []
            partial.append(item)
        elif result.status == COMPLETE and result.total > 1 and result.text is not None:
            parts = partial + [item]
            out.append(Found(_joined(parts), result.text, f"{result.total} chunks assembled"))
            partial = []
        else:  # a single-QR card, or INVALID (a malformed chunk header, reported by verify)
            out.append(item)
    if partial:
        out.append(_incomplete(partial, assembler.pending[0]))
    if len(out) > MAX_CREDENTIALS:
        raise ContainerError(DOCUMENT_TOO_MANY,
                             f"{len(out)} credentials, more than {MAX_CREDENTIALS}")
    return out


def _incomplete(partial: list[Found], received: int) -> Found:
    total = parse_chunk(partial[0].text).total  # parsed once already by the assembler
    return Found(_joined(partial), partial[0].text, f"{received} of {total} chunks found")


def _joined(items: Sequence[Found]) -> str:
    """The container of items found together: one name, or several joined by '+'."""
    return "+".join(dict.fromkeys(item.container for item in items))
