"""One credential, one text: SHC chunk headers and the NZCP version are ASCII numbers written
exactly one way (no leading zeros, no other scripts' digits); `shc:/1/1/` is a single-QR card;
a card has at most MAX_CHUNKS chunks."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from firmware.credentials import TrustStore, verify
from firmware.demo.issuers import nzcp, shc
from firmware.credentials.shc.chunks import COMPLETE, INVALID, PENDING, ChunkAssembler
from firmware.credentials.shc.codec import (
    MAX_CHUNKS,
    ShcFormatError,
    jws_to_numeric,
    numeric_to_jws,
    parse_chunk,
)

ARABIC_ONE, ARABIC_TWO = "\u0661", "\u0662"  # ١ ٢
FULLWIDTH_ONE, FULLWIDTH_TWO = "\uff11", "\uff12"  # １ ２
AT = datetime(2025, 6, 1, tzinfo=timezone.utc)


def _card() -> tuple[str, TrustStore, datetime]:
    """A verifiable single-QR card (its digits), its trust and clock."""
    text, trust, at = shc.bench_samples()[0]
    return parse_chunk(text).digits, trust, at


def _chunked(digits: str, count: int) -> list[str]:
    """The card's JWS split into `count` chunks, each `shc:/i/count/...`."""
    jws = numeric_to_jws(digits)
    size = -(-len(jws) // count)
    parts = [jws[i:i + size] for i in range(0, len(jws), size)]
    assert len(parts) == count
    return [f"shc:/{i}/{count}/{jws_to_numeric(p)}" for i, p in enumerate(parts, 1)]


@pytest.mark.parametrize("header", [
    "01/2/", "1/02/", "00/2/", "1/002/", "0/2/", "2/1/", "1/17/", "17/17/",
    f"{ARABIC_ONE}/{ARABIC_TWO}/", f"1/{ARABIC_TWO}/", f"{FULLWIDTH_ONE}/{FULLWIDTH_TWO}/",
    f"{FULLWIDTH_ONE}/2/", "+1/2/", " 1/2/", "1/2/3/", "1//", "/1/",
])
def test_malformed_chunk_headers_are_refused(header: str) -> None:
    with pytest.raises(ShcFormatError) as refused:
        parse_chunk(f"shc:/{header}5676")
    assert refused.value.code == "SHC_CHUNK_INVALID"
    verdict = verify(f"shc:/{header}5676", TrustStore(), AT)
    assert (verdict.valid, verdict.failure) == (False, "SHC_CHUNK_INVALID")


@pytest.mark.parametrize("body", [f"{ARABIC_ONE}{ARABIC_TWO}", f"{FULLWIDTH_ONE}{FULLWIDTH_TWO}"])
def test_non_ascii_digits_in_the_body_are_refused(body: str) -> None:
    for text in (f"shc:/{body}", f"shc:/1/2/{body}"):
        with pytest.raises(ShcFormatError) as refused:
            parse_chunk(text)
        assert refused.value.code == "SHC_NUMERIC_INVALID"


@pytest.mark.parametrize("header, index, total", [
    ("1/1/", 1, 1), ("1/2/", 1, 2), ("2/2/", 2, 2), ("9/16/", 9, 16), ("16/16/", 16, 16),
])
def test_well_formed_chunk_headers(header: str, index: int, total: int) -> None:
    chunk = parse_chunk(f"shc:/{header}5676")
    assert (chunk.index, chunk.total, chunk.digits) == (index, total, "5676")


def test_single_chunk_header_verifies_like_a_plain_card() -> None:
    """`shc:/1/1/...` (the SMART dev tools accept it with a warning): a single-QR card."""
    digits, trust, at = _card()
    plain, headed = f"shc:/{digits}", f"shc:/1/1/{digits}"
    assert verify(headed, trust, at).valid
    assert verify(headed, trust, at).credential_id == verify(plain, trust, at).credential_id
    result = ChunkAssembler(clock=lambda: 0.0).feed(headed)
    assert result.status == COMPLETE and result.text == headed


def test_sixteen_chunks_assemble_and_seventeen_are_refused() -> None:
    digits, trust, at = _card()
    assert MAX_CHUNKS == 16
    assembler = ChunkAssembler(clock=lambda: 0.0)
    results = [assembler.feed(text) for text in _chunked(digits, MAX_CHUNKS)]
    assert [r.status for r in results] == [PENDING] * (MAX_CHUNKS - 1) + [COMPLETE]
    assert verify(results[-1].text or "", trust, at).valid
    over = [assembler.feed(text) for text in _chunked(digits, MAX_CHUNKS + 1)]
    assert {(r.status, r.failure) for r in over} == {(INVALID, "SHC_CHUNK_INVALID")}
    assert assembler.pending == (0, 0)


@pytest.mark.parametrize("first_header, second_header", [
    (f"{ARABIC_ONE}/{ARABIC_TWO}", f"{ARABIC_TWO}/{ARABIC_TWO}"),
    (f"{FULLWIDTH_ONE}/{FULLWIDTH_TWO}", f"{FULLWIDTH_TWO}/{FULLWIDTH_TWO}"),
    ("01/2", "02/2"), ("1/02", "2/02"),
])
def test_assembler_refuses_other_spellings_of_chunk_numbers(first_header: str,
                                                           second_header: str) -> None:
    digits, _, _ = _card()
    first, second = _chunked(digits, 2)
    assembler = ChunkAssembler(clock=lambda: 0.0)
    spelled = [first.replace("shc:/1/2/", f"shc:/{first_header}/"),
               second.replace("shc:/2/2/", f"shc:/{second_header}/")]
    assert [assembler.feed(t).status for t in spelled] == [INVALID, INVALID]


# --- NZCP ----------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["001", "01", "+1", " 1", "1 ", ARABIC_ONE,
                                     FULLWIDTH_ONE, "2", "0"])
def test_nzcp_version_is_exactly_1(version: str) -> None:
    text, trust, at = nzcp.bench_samples()[0]
    assert text.startswith("NZCP:/1/") and verify(text, trust, at).valid
    verdict = verify(text.replace("NZCP:/1/", f"NZCP:/{version}/", 1), trust, at)
    assert (verdict.valid, verdict.failure) == (False, "NZCP_VERSION_UNSUPPORTED")
