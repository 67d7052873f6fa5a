"""`healthgate check` on every container a technician holds, run as the real command: the
container it saw, the stage-by-stage answer, and one-line errors with their exit codes."""
from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from firmware.credentials import check
from tests.container_helpers import (
    AT,
    DCC_ISSUER,
    Credentials,
    at_iso,
    chunked,
    fhir_parameters,
    make_credentials,
    pdf_pages,
    qr_image,
    shc_texts,
    shuffled,
    smart_health_card_file,
)

ROOT = Path(__file__).resolve().parent.parent
DCC_STAGES = {"prefix": "ok", "base45": "ok", "zlib": "ok", "cose": "ok", "cbor": "ok",
              "signature": "ok", "expiry": "ok", "key_usage": "ok", "schema": "ok",
              "rules": "-", "revocation": "-"}
SHC_STAGES = {**DCC_STAGES, "key_usage": "-", "revocation": "ok"}


def run_check(*args: str) -> tuple[int, str, str]:
    """The real command in a subprocess (PYTHONPATH carries this checkout, as installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p])
    result = subprocess.run([sys.executable, "-m", "firmware.credentials.check", *args],
                            capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    return result.returncode, result.stdout, result.stderr


def blocks(out: str) -> list[dict[str, Any]]:
    """Each credential's report: its header fields and its stage marks."""
    reports: list[dict[str, Any]] = []
    for chunk in out.split("container: ")[1:]:
        lines = ("container: " + chunk).splitlines()
        fields = dict(line.split(": ", 1) for line in lines
                      if ": " in line and not line.startswith(" "))
        start = lines.index("stages:") + 1
        stages = {}
        for line in lines[start:]:
            if not line.startswith("  ") or line.startswith("payload"):
                break
            parts = line.split()
            stages[parts[0]] = parts[1]
        reports.append({**fields, "stages": stages})
    return reports


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    return make_credentials(tmp_path_factory.mktemp("containers"))


def check_valid(creds: Credentials, *documents: str) -> list[dict[str, Any]]:
    code, out, err = run_check(*documents, "--trust", str(creds.trust_dir), "--at", at_iso())
    assert code == 0, out + err
    assert err == "" and "Traceback" not in out
    return blocks(out)


def test_qr_image_png_with_transparent_background_dcc(creds: Credentials, tmp_path: Path) -> None:
    image = tmp_path / "dcc.png"
    image.write_bytes(qr_image(creds.hc1, transparent=True))
    [report] = check_valid(creds, str(image))
    assert report["container"] == "qr-image" and report["format"] == "dcc"
    assert report["verdict"] == "VALID" and report["stages"] == DCC_STAGES
    # The DCC's key id and issuer country are shown (not personal data).
    assert report["kid"] == creds.dcc_kid_hex and report["issuer"] == DCC_ISSUER


def test_qr_image_jpeg_shc(creds: Credentials, tmp_path: Path) -> None:
    [text] = shc_texts(creds.jws())
    image = tmp_path / "card.jpg"
    image.write_bytes(qr_image(text, kind="jpeg"))
    [report] = check_valid(creds, str(image))
    assert report["container"] == "qr-image" and report["format"] == "shc"
    assert report["stages"] == SHC_STAGES
    assert str(report["issuer"]).startswith(creds.shc_issuer.iss)


def test_chunked_shc_lines_in_a_text_file_are_assembled(creds: Credentials, tmp_path: Path) -> None:
    texts = chunked(creds.jws(), 3)
    path = tmp_path / "chunks.txt"
    path.write_text("\n".join(shuffled(texts)) + "\n")
    [report] = check_valid(creds, str(path))
    assert report["container"] == "shc-text" and report["note"] == "3 chunks assembled"
    assert report["stages"] == SHC_STAGES and report["verdict"] == "VALID"


def test_chunks_as_arguments_and_as_images_are_assembled(creds: Credentials,
                                                         tmp_path: Path) -> None:
    texts = chunked(creds.jws(), 2)
    [report] = check_valid(creds, texts[1], texts[0])
    assert report["container"] == "shc-text" and report["note"] == "2 chunks assembled"
    images = []
    for index, text in enumerate(texts):
        images.append(tmp_path / f"chunk{index}.png")
        images[-1].write_bytes(qr_image(text))
    [report] = check_valid(creds, *map(str, images))
    assert report["container"] == "qr-image" and report["stages"] == SHC_STAGES


def test_a_missing_chunk_is_reported(creds: Credentials) -> None:
    texts = chunked(creds.jws(), 3)
    code, out, _ = run_check(texts[0], texts[2], "--trust", str(creds.trust_dir), "--at", at_iso())
    assert code == 1
    [report] = blocks(out)
    assert report["note"] == "2 of 3 chunks found"
    assert str(report["reason"]).startswith("SHC_CHUNKS_INCOMPLETE")


def test_bare_jws_as_argument_and_file(creds: Credentials, tmp_path: Path) -> None:
    jws = creds.jws()
    [report] = check_valid(creds, jws)
    assert report["container"] == "jws" and report["stages"] == SHC_STAGES
    path = tmp_path / "card.jws"
    path.write_text(jws + "\n")
    [report] = check_valid(creds, str(path))
    assert report["container"] == "jws" and report["verdict"] == "VALID"


def test_smart_health_card_file_with_two_cards(creds: Credentials, tmp_path: Path) -> None:
    path = tmp_path / "cards.smart-health-card"
    path.write_text(smart_health_card_file([creds.jws(), creds.jws(doses=60)]))
    reports = check_valid(creds, str(path))
    assert [r["container"] for r in reports] == ["smart-health-card-file"] * 2
    assert all(r["stages"] == SHC_STAGES for r in reports)


def test_fhir_health_cards_issue_response(creds: Credentials, tmp_path: Path) -> None:
    path = tmp_path / "issue-response.json"
    path.write_text(fhir_parameters([creds.jws()]))
    [report] = check_valid(creds, str(path))
    assert report["container"] == "fhir-parameters" and report["stages"] == SHC_STAGES


def test_hc1_text_file(creds: Credentials, tmp_path: Path) -> None:
    path = tmp_path / "dcc.txt"
    path.write_text(creds.hc1 + "\n")
    [report] = check_valid(creds, str(path))
    assert report["container"] == "text" and report["stages"] == DCC_STAGES
    assert report["kid"] == creds.dcc_kid_hex


@pytest.mark.skipif(importlib.util.find_spec("pypdfium2") is None,
                    reason="PDF reading needs the optional extra healthgate[pdf] (pypdfium2), "
                           "not installed here")
def test_pdf_page_with_a_code(creds: Credentials, tmp_path: Path) -> None:
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf_pages(None, qr_image(creds.hc1)))  # the code is on page 2
    [report] = check_valid(creds, str(path))
    assert report["container"] == "pdf" and report["stages"] == DCC_STAGES


def test_pdf_without_the_extra_says_how_to_get_it(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf_pages(None))
    monkeypatch.setitem(sys.modules, "pypdfium2", None)  # import now raises ImportError
    out = io.StringIO()
    assert check.main([str(path)], out=out) == 2
    assert out.getvalue().splitlines() == [
        f"error: {path}: reading a PDF needs the optional extra: pip install 'healthgate[pdf]' "
        "(pypdfium2)"]


def test_shc_examples_from_the_spec(shared_data: Path, tmp_path: Path) -> None:
    """The SMART Health Cards spec's own `.smart-health-card` file and 3-chunk QR texts."""
    examples = shared_data / "shc-examples" / "examples"
    jwks = json.loads((examples / "issuer/.well-known/jwks.json").read_text())
    trust = tmp_path / "trust"
    trust.mkdir()
    iss = "https://spec.smarthealth.cards/examples/issuer"
    (trust / "shc-issuers.json").write_text(json.dumps(
        {"issuerInfo": [{"issuer": {"iss": iss, "name": "SMART example issuer"},
                         "keys": jwks["keys"]}]}))
    crls = [{**json.loads(p.read_text()), "iss": iss}  # filed by the issuer they came from
            for p in (examples / "issuer/.well-known/crl").glob("*.json")]
    (trust / "shc-crl.json").write_text(json.dumps({"crls": crls}))  # the keys name a CRL version
    at = "2024-01-01T00:00:00Z"
    code, out, _ = run_check(str(examples / "example-00-e-file.smart-health-card"),
                             "--trust", str(trust), "--at", at)
    assert code == 0, out
    [report] = blocks(out)
    assert report["container"] == "smart-health-card-file" and report["stages"]["signature"] == "ok"
    chunks = sorted(examples.glob("example-02-f-qr-code-numeric-value-*.txt"))
    code, out, _ = run_check(*map(str, reversed(chunks)), "--trust", str(trust), "--at", at)
    [report] = blocks(out)
    assert code == 0 and report["note"] == "3 chunks assembled", out
    assert report["container"] == "shc-text" and report["verdict"] == "VALID"


def _error_cases(tmp: Path) -> list[tuple[list[str], int, str | None]]:
    """(arguments, exit code, the one line printed)."""
    (tmp / "folder").mkdir()
    (tmp / "notes.txt").write_text("remember to buy milk\n")
    (tmp / "noise.bin").write_bytes(bytes(range(256)) * 4)
    (tmp / "other.json").write_text('{"resourceType": "Patient"}')
    (tmp / "nan.smart-health-card").write_text('{"verifiableCredential": [NaN]}')
    (tmp / "blank.png").write_bytes(_blank_png())
    return [
        ([str(tmp / "missing.png")], 2, f"error: no such file: {tmp / 'missing.png'}"),
        (["nowhere"], 2, "error: no such file: nowhere"),
        ([str(tmp / "folder")], 2, f"error: is a directory: {tmp / 'folder'}"),
        ([str(tmp / "notes.txt")], 2, f"error: not a credential or image: {tmp / 'notes.txt'}"),
        ([str(tmp / "noise.bin")], 2, f"error: not a credential or image: {tmp / 'noise.bin'}"),
        ([str(tmp / "other.json")], 2, f"error: not a credential or image: {tmp / 'other.json'}"),
        ([str(tmp / "nan.smart-health-card")], 2,
         f"error: {tmp / 'nan.smart-health-card'}: not valid JSON: NaN is not JSON"),
        ([str(tmp / "blank.png")], 1, f"no code found in the image: {tmp / 'blank.png'}"),
        (["HC1:X"] * 17, 2, "error: 17 documents, more than 16"),
        (["HC1:X", "--at", "yesterday"], 2, None),  # the --at message is the parser's own
    ]


def _blank_png() -> bytes:
    from PIL import Image
    out = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(out, format="PNG")
    return out.getvalue()


def test_every_typical_mistake_gets_one_line_and_its_exit_code(tmp_path: Path) -> None:
    for args, status, line in _error_cases(tmp_path):
        code, out, err = run_check(*args)
        assert code == status, (args, out, err)
        assert len(out.splitlines()) == 1 and err == "" and "Traceback" not in out, (args, out)
        if line is not None:
            assert out.splitlines() == [line], args


@pytest.mark.parametrize("text, failure", [
    ("HC1:NOT*BASE45", "DCC_BASE45_INVALID"),
    ("HC1:NUL\x00", "DCC_BASE45_INVALID"),  # no valid path name at all
    ("shc:/5676", "SHC_JWS_MALFORMED"),
    ("eyJhbGciOiJFUzI1NiJ9.e30.c2ln", "SHC_ZIP_UNSUPPORTED"),
    ("NZCP:/1/AAAA", None),
    ("HG1:AAAA", None),
    ("HC2:XYZ", "UNKNOWN_FORMAT"),
])
def test_credential_text_is_not_taken_for_a_missing_file(text: str, failure: str | None) -> None:
    """Text that names no file but looks like a code is verified, not called a missing file."""
    out = io.StringIO()
    assert check.main([text, "--at", AT.isoformat()], out=out) == 1
    assert "no such file" not in out.getvalue() and "stages:" in out.getvalue()
    if failure is not None:
        assert f"reason: {failure} " in out.getvalue()
