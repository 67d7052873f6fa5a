"""Issue 11 item 8: every text, decompression and nesting bound on the decision path not covered
elsewhere, each at the bound and one past it (docs/credentials.md, "Bounds on outside input")."""
from __future__ import annotations

import zlib
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from firmware.codes import reader
from firmware.credentials import TrustStore, verify
from firmware.credentials import base45
from firmware.credentials.nzcp import codec as nzcp_codec
from firmware.credentials.shc import codec as shc_codec
from firmware.credentials.status import code as status_code
from firmware.credentials.dcc import pipeline
from firmware.credentials.shc.codec import (
    MAX_CLAIMS_DEPTH,
    MAX_CLAIMS_NODES,
    MAX_INFLATED_BYTES,
    MAX_JWS_CHARS,
    ShcFormatError,
    inflate_raw,
    jws_to_numeric,
)
from firmware.demo.issuers.shc import sign_compact_jws
from firmware.demo.issuers.shc import card_claims, new_issuer

AT = datetime(2025, 6, 1, tzinfo=timezone.utc)
NOT_BASE45 = "!"  # outside the base45 alphabet: a text that fails for another reason


def test_base45_input_bound() -> None:
    assert base45.MAX_INPUT_CHARS == 8192
    decoded = base45.b45decode("0" * base45.MAX_INPUT_CHARS)
    assert len(decoded) == base45.MAX_INPUT_CHARS // 3 * 2 + 1
    with pytest.raises(base45.Base45Error, match="longer than 8192"):
        base45.b45decode("0" * (base45.MAX_INPUT_CHARS + 1))


@pytest.mark.parametrize(("text_length", "code"), [
    (pipeline.MAX_TEXT_CHARS, "DCC_BASE45_INVALID"),
    (pipeline.MAX_TEXT_CHARS + 1, "DCC_TOO_LARGE"),
])
def test_dcc_text_bound(text_length: int, code: str) -> None:
    text = "HC1:" + NOT_BASE45 * (text_length - 4)
    assert verify(text, TrustStore(), AT).failure == code


@pytest.mark.parametrize(("text_length", "detail"), [
    (status_code.MAX_TEXT_CHARS, "STATUS_BASE45_INVALID"),
    (status_code.MAX_TEXT_CHARS + 1, "STATUS_BASE45_INVALID: too long"),
])
def test_status_text_bound(text_length: int, detail: str) -> None:
    with pytest.raises(status_code.StatusFormatError) as caught:
        status_code.split_code("HG1:" + NOT_BASE45 * (text_length - 4))
    assert str(caught.value) == detail


@pytest.mark.parametrize(("text_length", "code"), [
    (nzcp_codec.MAX_TEXT_CHARS, "NZCP_BASE32_INVALID"),
    (nzcp_codec.MAX_TEXT_CHARS + 1, "NZCP_TOO_LARGE"),
])
def test_nzcp_text_bound(text_length: int, code: str) -> None:
    text = "NZCP:/1/" + "1" * (text_length - 8)  # "1" is not base32
    assert verify(text, TrustStore(), AT).failure == code


@pytest.mark.parametrize(("text_length", "code"), [
    (shc_codec.MAX_TEXT_CHARS, "SHC_NUMERIC_INVALID"),
    (shc_codec.MAX_TEXT_CHARS + 1, "SHC_TOO_LARGE"),
])
def test_shc_text_bound(text_length: int, code: str) -> None:
    text = "shc:/" + "x" * (text_length - 5)
    assert verify(text, TrustStore(), AT).failure == code


@pytest.mark.parametrize(("jws_length", "code"), [
    (MAX_JWS_CHARS, "SHC_JWS_MALFORMED"),
    (MAX_JWS_CHARS + 1, "SHC_TOO_LARGE"),
])
def test_shc_jws_bound(jws_length: int, code: str) -> None:
    text = "shc:/" + jws_to_numeric("a" * jws_length)  # one part, not three
    assert len(text) <= shc_codec.MAX_TEXT_CHARS  # the JWS bound is the one reached
    assert verify(text, TrustStore(), AT).failure == code


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


def test_shc_inflated_size_bound() -> None:
    assert len(inflate_raw(_raw_deflate(b"{" * MAX_INFLATED_BYTES))) == MAX_INFLATED_BYTES
    with pytest.raises(ShcFormatError) as caught:
        inflate_raw(_raw_deflate(b"{" * (MAX_INFLATED_BYTES + 1)))
    assert caught.value.code == "SHC_PAYLOAD_TOO_LARGE"


def _values(value: Any) -> int:
    """Values as `finite_json.within_budget` counts them: each object, array and scalar."""
    if isinstance(value, dict):
        return 1 + sum(_values(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_values(v) for v in value)
    return 1


def _card(extra: Any) -> tuple[str, TrustStore]:
    issuer = new_issuer()
    claims = card_claims(issuer.iss, AT.timestamp() - 86400)
    claims["x"] = extra
    text = "shc:/" + jws_to_numeric(sign_compact_jws(claims, issuer.key))
    return text, TrustStore(shc=issuer.trust())


@pytest.mark.parametrize(("past", "code"), [(0, None), (1, "SHC_PAYLOAD_TOO_LARGE")])
def test_shc_claims_depth_bound(past: int, code: str | None) -> None:
    nested: Any = 0  # the claims object is level 0, "x" level 1: nest to MAX_CLAIMS_DEPTH
    for _ in range(MAX_CLAIMS_DEPTH - 1 + past):
        nested = [nested]
    text, trust = _card(nested)
    verdict = verify(text, trust, AT)
    assert verdict.failure == code and verdict.checks["signature"] is True


@pytest.mark.parametrize(("past", "code"), [(0, None), (1, "SHC_PAYLOAD_TOO_LARGE")])
def test_shc_claims_node_bound(past: int, code: str | None) -> None:
    issuer_free = card_claims("https://x.invalid", 0.0)
    issuer_free["x"] = []  # the list itself is one value
    fill = MAX_CLAIMS_NODES - _values(issuer_free) + past
    text, trust = _card([0] * fill)
    verdict = verify(text, trust, AT)
    assert verdict.failure == code and verdict.checks["signature"] is True


def _fake_barcode(text: str) -> Any:
    point = SimpleNamespace(x=0, y=0)
    position = SimpleNamespace(top_left=point, top_right=point, bottom_right=point,
                               bottom_left=point)
    return SimpleNamespace(text=text, valid=True, error=None, position=position,
                           format=SimpleNamespace(name="QRCode"))


@pytest.mark.parametrize(("length", "kept"), [(reader.MAX_TEXT_CHARS, True),
                                              (reader.MAX_TEXT_CHARS + 1, False)])
def test_qr_text_bound(monkeypatch: pytest.MonkeyPatch, length: int, kept: bool) -> None:
    # No printed QR holds 8,192 characters (version 40: 7,089 digits): the decoder is faked.
    monkeypatch.setattr(reader.zxingcpp, "read_barcodes",
                        lambda *args, **kwargs: [_fake_barcode("0" * length)])
    reads = reader.scan_frame(np.zeros((8, 8, 3), dtype=np.uint8))
    assert (reads[0].text is not None) is kept
    texts = reader.read_codes(np.zeros((8, 8, 3), dtype=np.uint8))
    assert texts == (["0" * length] if kept else [])
