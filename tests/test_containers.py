"""verify_document() and the container parsers: every container named, every bound tested at
the bound and one past it, NaN/Infinity refused, and never an exception on bad input."""
from __future__ import annotations

import importlib.util
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from firmware.credentials import containers, images, verify, verify_document
from firmware.credentials.containers import ContainerError, Found
from firmware.credentials.document import read_documents
from tests.container_helpers import (
    AT,
    DCC_ISSUER,
    Credentials,
    chunked,
    fhir_parameters,
    make_credentials,
    pdf_pages,
    qr_image,
    shc_texts,
    smart_health_card_file,
)

needs_pdf = pytest.mark.skipif(importlib.util.find_spec("pypdfium2") is None,
                               reason="PDF reading needs the optional extra healthgate[pdf] "
                                      "(pypdfium2), not installed here")


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    return make_credentials(tmp_path_factory.mktemp("containers"))


def refused(code: str, call: object, *args: object) -> str:
    with pytest.raises(ContainerError) as info:
        call(*args)  # type: ignore[operator]
    assert info.value.code == code
    return info.value.detail


def test_every_container_is_named(creds: Credentials) -> None:
    store = creds.store()
    jws = creds.jws()
    cases: list[tuple[object, str, int]] = [
        (qr_image(creds.hc1, transparent=True), "qr-image", 1),
        (qr_image(shc_texts(jws)[0], kind="jpeg"), "qr-image", 1),
        ("\n".join(chunked(jws, 3)), "shc-text", 1),
        (chunked(jws, 2), "shc-text", 1),  # several documents read together
        (jws, "jws", 1),
        (smart_health_card_file([jws, jws]).encode(), "smart-health-card-file", 2),
        (fhir_parameters([jws]), "fhir-parameters", 1),
        (creds.hc1, "text", 1),
    ]
    for document, container, count in cases:
        result = verify_document(document, store, AT)  # type: ignore[arg-type]
        assert result.failure is None and result.container == container, result
        assert len(result.verdicts) == count and result.valid
        assert all(v.extras["container"] == container for v in result.verdicts)


@needs_pdf
def test_pdf_container(creds: Credentials) -> None:
    result = verify_document(pdf_pages(qr_image(creds.hc1)), creds.store(), AT)
    assert result.container == "pdf" and result.valid


def test_dcc_kid_and_issuer_in_the_verdict(creds: Credentials) -> None:
    verdict = verify(creds.hc1, creds.store(), AT)
    assert verdict.valid and verdict.extras["kid"] == creds.dcc_kid_hex
    assert verdict.extras["issuer"] == DCC_ISSUER
    untrusted = verify(creds.hc1, type(creds.store())(), AT)  # as claimed, also when denied
    assert untrusted.failure == "DCC_KID_UNKNOWN" and untrusted.extras["kid"] == creds.dcc_kid_hex


@pytest.mark.parametrize("document", [
    b"", "", b"\x00" * 10, "   \n", "{", "[1, 2]", '{"verifiableCredential": "x"}',
    '{"verifiableCredential": [1]}', '{"resourceType": "Parameters"}',
    '{"resourceType": "Parameters", "parameter": [{"name": "verifiableCredential"}]}',
    b"%PDF-1.7 not really", b"\x89PNG\r\n\x1a\n broken", ["HC1:X"] * 17, [b"x", 3], 42, None,
])
def test_bad_documents_are_refused_never_raised(creds: Credentials, document: object) -> None:
    result = verify_document(document, creds.store(), AT)  # type: ignore[arg-type]
    assert not result.valid and result.failure is not None and result.container == "unknown"


# --- bounds: each at the bound and one past it ---

def test_document_bytes_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(containers, "MAX_DOCUMENT_BYTES", 1000)
    at_bound = b"HC1:" + b"A" * 996
    assert containers.unpack(at_bound)[1] == [Found("text", at_bound.decode())]
    refused("DOCUMENT_TOO_LARGE", containers.unpack, at_bound + b"A")
    refused("DOCUMENT_TOO_LARGE", containers.unpack, at_bound.decode() + "A")


def test_json_bytes_bound(creds: Credentials) -> None:
    jws = creds.jws()
    base = smart_health_card_file([jws])
    pad = containers.MAX_JSON_BYTES - len(base) - len(', "pad": ""')
    at_bound = base[:-1] + f', "pad": "{"x" * pad}"}}'
    assert len(at_bound.encode()) == containers.MAX_JSON_BYTES
    assert containers.unpack_text(at_bound)[0] == "smart-health-card-file"
    past = at_bound[:-2] + 'x"}'
    detail = refused("DOCUMENT_TOO_LARGE", containers.unpack_text, past)
    assert "larger than 1,048,576 bytes" in detail


def _nested(depth: int) -> str:
    """A `.smart-health-card` document whose deepest value sits at `depth` levels."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)  # the top-level object is level 1
    return '{"verifiableCredential": ["HC1:X"], "deep": ' + inner + "}"


def test_json_depth_bound() -> None:
    depth = containers.MAX_JSON_DEPTH
    assert containers.load_json(_nested(depth))["verifiableCredential"] == ["HC1:X"]
    assert "deeper than 16" in refused("DOCUMENT_JSON_INVALID", containers.load_json,
                                       _nested(depth + 1))
    refused("DOCUMENT_JSON_INVALID", containers.load_json, "[" * 100_000)  # no RecursionError


def _with_nodes(total: int) -> str:
    # object, its two keys, the credential array and string, the padding array: 6 nodes
    zeros = ", ".join(["0"] * (total - 6))
    return '{"verifiableCredential": ["HC1:X"], "pad": [' + zeros + "]}"


def test_json_node_bound() -> None:
    assert len(containers.load_json(_with_nodes(containers.MAX_JSON_NODES))["pad"]) == \
        containers.MAX_JSON_NODES - 6
    past = _with_nodes(containers.MAX_JSON_NODES + 1)
    refused("DOCUMENT_JSON_INVALID", containers.load_json, past)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_json_refuses_non_finite_numbers(value: str) -> None:
    refused("DOCUMENT_JSON_INVALID", containers.load_json, f'{{"verifiableCredential": [{value}]}}')


def test_json_strings_do_not_count_as_structure() -> None:
    """Brackets inside strings are text; an unterminated string ends the scan in one pass."""
    text = '{"verifiableCredential": ["' + "[" * 100 + '\\"{"]}'
    assert containers.load_json(text)["verifiableCredential"] == ["[" * 100 + '"{']
    refused("DOCUMENT_JSON_INVALID", containers.load_json, '{"a": "' + '\\"' * 50_000)


@pytest.mark.parametrize("build", [smart_health_card_file, fhir_parameters])
def test_credentials_per_document_bound(creds: Credentials,
                                        build: Callable[[list[Any]], str]) -> None:
    jws = creds.jws()
    bound = containers.MAX_CREDENTIALS
    result = verify_document(build([jws] * bound), creds.store(), AT)
    assert result.valid and len(result.verdicts) == bound
    past = build([jws] * (bound + 1))
    result = verify_document(past, creds.store(), AT)
    assert result.failure == "DOCUMENT_TOO_MANY_CREDENTIALS" and not result.verdicts


def test_lines_and_assembled_credentials_bound() -> None:
    lines = containers.MAX_TEXTS
    assert len(containers.unpack_text("\n".join(["HC1:X"] * lines))[1]) == lines
    past = "\n".join(["HC1:X"] * (lines + 1))
    refused("DOCUMENT_TOO_MANY_CREDENTIALS", containers.unpack_text, past)
    bound = containers.MAX_CREDENTIALS
    assert len(containers.assemble([Found("text", "HC1:X")] * bound)) == bound
    refused("DOCUMENT_TOO_MANY_CREDENTIALS", containers.assemble,
            [Found("text", "HC1:X")] * (bound + 1))


def test_a_text_of_max_chunks_lines_assembles_max_credentials(creds: Credentials) -> None:
    """MAX_TEXTS lines are MAX_CREDENTIALS cards of MAX_CHUNKS chunks each: all assembled."""
    cards = [chunked(creds.jws(rid=f"r{n}"), 16) for n in range(containers.MAX_CREDENTIALS)]
    text = "\n".join(line for card in cards for line in card)
    result = verify_document(text, creds.store(), AT)
    assert result.valid and len(result.verdicts) == containers.MAX_CREDENTIALS
    assert {v.extras["note"] for v in result.verdicts} == {"16 chunks assembled"}


def test_documents_per_call_bound() -> None:
    bound = containers.MAX_DOCUMENTS
    assert len(read_documents(["HC1:X"] * bound)[1]) == bound
    refused("DOCUMENT_TOO_MANY_CREDENTIALS", read_documents, ["HC1:X"] * (bound + 1))


def test_codes_per_image_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(containers, "MAX_TEXTS", 1)
    assert containers.unpack(qr_image("HC1:X"))[1] == [Found("qr-image", "HC1:X")]
    two = _side_by_side(qr_image("HC1:X"), qr_image("HC1:Y"))
    refused("DOCUMENT_TOO_MANY_CREDENTIALS", containers.unpack, two)


def _side_by_side(left: bytes, right: bytes) -> bytes:
    from PIL import Image
    a, b = Image.open(io.BytesIO(left)), Image.open(io.BytesIO(right))
    both = Image.new("RGB", (a.width + b.width + 40, max(a.height, b.height)), "white")
    both.paste(a, (0, 0))
    both.paste(b, (a.width + 40, 0))
    out = io.BytesIO()
    both.save(out, format="PNG")
    return out.getvalue()


def test_chunk_sets_interrupted_or_incomplete_are_reported(creds: Credentials) -> None:
    first, second = chunked(creds.jws(rid="a"), 3), chunked(creds.jws(rid="b"), 2)
    found = containers.assemble([Found("shc-text", t) for t in [first[0], second[0], second[1]]])
    assert [f.note for f in found] == ["1 of 3 chunks found", "2 chunks assembled"]
    result = verify_document([first[0], first[0], first[1]], creds.store(), AT)  # a duplicate
    [verdict] = result.verdicts
    assert verdict.failure == "SHC_CHUNKS_INCOMPLETE"
    assert verdict.extras["note"] == "2 of 3 chunks found"


@needs_pdf
def test_pdf_page_bound() -> None:
    bound = images.MAX_PDF_PAGES
    assert images.read_pdf_texts(pdf_pages(*[None] * bound, size=(100, 100))) == []
    with pytest.raises(images.TooManyPages):
        images.read_pdf_texts(pdf_pages(*[None] * (bound + 1), size=(100, 100)))
    past = pdf_pages(*[None] * (bound + 1), size=(100, 100))
    result = verify_document(past, None, AT)  # type: ignore[arg-type]
    assert result.failure == "DOCUMENT_TOO_LARGE"


@needs_pdf
def test_pdf_pages_render_within_the_pixel_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes: list[tuple[int, ...]] = []

    def record(rgb: Any) -> list[str]:
        shapes.append(rgb.shape)
        return []

    monkeypatch.setattr(images, "texts_in_rgb", record)
    images.read_pdf_texts(pdf_pages(None, size=(2000, 3000)), max_pixels=1_000_000)
    [(height, width, _)] = shapes
    assert height * width <= 1_000_000 and height * width > 900_000


def test_example_smart_health_card_file(shared_data: Path) -> None:
    """The spec's own `.smart-health-card` file unpacks to its one JWS."""
    path = shared_data / "shc-examples/examples/example-00-e-file.smart-health-card"
    container, found = containers.unpack(path.read_bytes())
    jws = json.loads(path.read_text())["verifiableCredential"][0]
    assert container == "smart-health-card-file"
    assert found == [Found(container, containers._unwrap_jws(jws))]
