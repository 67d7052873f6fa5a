"""Property tests for the SHC parsers: round trips, arbitrary input, truncations, bombs, chunk order."""
from __future__ import annotations

import json
import zlib
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.credentials import TrustStore, verify
from firmware.credentials.shc.chunks import COMPLETE, ChunkAssembler
from firmware.credentials.shc.codec import (
    MAX_INFLATED_BYTES,
    ShcFormatError,
    b64url_decode,
    b64url_encode,
    deflate_raw,
    inflate_raw,
    jws_to_numeric,
    numeric_to_jws,
)
from firmware.demo.issuers.shc import card_claims, issue_card, new_issuer

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
AT = datetime(2025, 6, 1, tzinfo=timezone.utc)
NBF = datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()
JWS_ALPHABET = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")

_ISSUER = new_issuer()
_STORE = TrustStore(shc=_ISSUER.trust())
_CARD = issue_card(_ISSUER, card_claims(_ISSUER.iss, NBF, rid="cHJvcGVydHk"))[0]


@FAST
@given(st.text(JWS_ALPHABET, min_size=1, max_size=300))
def test_numeric_round_trip(jws: str) -> None:
    assert numeric_to_jws(jws_to_numeric(jws)) == jws


@FAST
@given(st.binary(max_size=200))
def test_b64url_round_trip(data: bytes) -> None:
    assert b64url_decode(b64url_encode(data)) == data


@FAST
@given(st.binary(max_size=2000))
def test_deflate_round_trip_and_arbitrary_inflate(data: bytes) -> None:
    assert inflate_raw(deflate_raw(data)) == data
    try:
        out = inflate_raw(data)  # arbitrary bytes: a clean error or bounded output
    except ShcFormatError as exc:
        assert exc.code in ("SHC_INFLATE_FAILED", "SHC_PAYLOAD_TOO_LARGE")
    else:
        assert len(out) <= MAX_INFLATED_BYTES


@settings(max_examples=5, deadline=None)
@given(st.integers(min_value=MAX_INFLATED_BYTES + 1, max_value=50 * 1024 * 1024))
def test_decompression_bombs_are_cut_off(size: int) -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = bomb.compress(b"\0" * size) + bomb.flush()
    with pytest.raises(ShcFormatError) as info:
        inflate_raw(data)
    assert info.value.code == "SHC_PAYLOAD_TOO_LARGE"


@FAST
@given(st.text(max_size=400))
def test_arbitrary_text_never_raises_never_accepts(tail: str) -> None:
    verdict = verify("shc:/" + tail, _STORE, AT)
    assert not verdict.valid and verdict.failure


@FAST
@given(st.text(st.sampled_from("0123456789"), max_size=600))
def test_arbitrary_digits_never_accept(digits: str) -> None:
    verdict = verify("shc:/" + digits, _STORE, AT)
    assert not verdict.valid and verdict.failure


@FAST
@given(st.integers(min_value=5, max_value=len(_CARD) - 1))
def test_truncated_card_is_denied(cut: int) -> None:
    verdict = verify(_CARD[:cut], _STORE, AT)
    assert not verdict.valid and verdict.failure


@FAST
@given(st.integers(min_value=5, max_value=len(_CARD) - 1), st.sampled_from("0123456789"))
def test_any_changed_digit_is_denied(position: int, digit: str) -> None:
    changed = _CARD[:position] + digit + _CARD[position + 1:]
    verdict = verify(changed, _STORE, AT)
    assert verdict.valid == (changed == _CARD)


def test_issued_card_verifies() -> None:
    assert verify(_CARD, _STORE, AT).valid


@FAST
@given(st.data())
def test_chunks_assemble_in_any_order_with_repeats(data: st.DataObject) -> None:
    digits = _CARD[len("shc:/"):]
    pairs = len(digits) // 2
    count = data.draw(st.integers(min_value=2, max_value=6))
    cuts = sorted(data.draw(st.lists(st.integers(1, pairs - 1), min_size=count - 1,
                                     max_size=count - 1, unique=True)))
    bounds = [0, *cuts, pairs]
    chunks = [f"shc:/{i + 1}/{count}/{digits[2 * a:2 * b]}" for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]
    feed = data.draw(st.permutations(chunks))
    repeats = data.draw(st.lists(st.sampled_from(chunks), max_size=4))
    assembler = ChunkAssembler(clock=lambda: 0.0)
    results = [assembler.feed(t) for t in [*repeats, *feed]]
    complete = [r for r in results if r.status == COMPLETE]
    assert complete and complete[-1].text == _CARD
    assert verify(complete[-1].text or "", _STORE, AT).valid


@FAST
@given(st.lists(st.floats(min_value=0.0, max_value=8.0), min_size=2, max_size=2))
def test_chunk_set_completes_only_within_the_timeout(gaps: list[float]) -> None:
    """Three chunks with random gaps: complete iff the last arrives within 10 s of the first."""
    digits = _CARD[len("shc:/"):]
    third = (len(digits) // 2 // 3) * 2
    chunks = [f"shc:/{i + 1}/3/{digits[a:b]}" for i, (a, b) in
              enumerate([(0, third), (third, 2 * third), (2 * third, len(digits))])]
    now = [0.0]
    assembler = ChunkAssembler(timeout_s=10.0, clock=lambda: now[0])
    results = [assembler.feed(chunks[0])]
    for gap, chunk in zip(gaps, chunks[1:]):
        now[0] += gap
        results.append(assembler.feed(chunk))
    completed = results[-1].status == COMPLETE
    assert completed == (sum(gaps) <= 10.0)
    if completed:
        assert results[-1].text == _CARD


# -- issue 15: a time that is not a number (JSON literals json.dumps writes, and ones it never does)
@FAST
@given(st.sampled_from(["nbf", "exp"]),
       st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "-1", "9223372036854775808",
                        "253402300800", "true", '"1700000000"', "[]", "null"]))
def test_time_literals_that_are_not_numeric_dates(field: str, literal: str) -> None:
    from firmware.demo.issuers.cose import es256_sign
    from firmware.credentials.shc.codec import jws_to_qr_texts
    from firmware.demo.issuers.shc import sign_compact_jws

    claims = card_claims(_ISSUER.iss, NBF, exp=NBF + 1234567)
    header = sign_compact_jws(claims, _ISSUER.key).split(".")[0]
    body = json.dumps(claims, separators=(",", ":"))
    body = body.replace(f'"{field}":{claims[field]!r}', f'"{field}":{literal}')
    assert f'"{field}":{literal}' in body
    if field == "nbf" and literal == "null":
        return  # nbf null is "missing": refused too, but covered by the structure tests
    payload = b64url_encode(deflate_raw(body.encode()))
    signature = b64url_encode(es256_sign(_ISSUER.key, f"{header}.{payload}".encode()))
    texts = jws_to_qr_texts(f"{header}.{payload}.{signature}")
    verdict = verify("shc:/" + "".join(t.split("/")[-1] for t in texts), _STORE, AT)
    if field == "exp" and literal == "null":
        assert verdict.valid  # exp is optional in SHC
    else:
        assert not verdict.valid and verdict.failure == "SHC_PAYLOAD_INVALID"
