"""Issue 15 §2: NaN is not a time. Every time field of every format, correctly signed, with NaN,
+/-Infinity, -1, 2**63, the first second after 9999, True and a string: always refused."""
from __future__ import annotations

import base64
import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.credentials import TrustStore, verify
from firmware.demo.issuers.shc import card_claims, new_issuer
from firmware.credentials.shc.codec import jws_to_qr_texts
from firmware.demo.issuers.shc import sign_compact_jws
from firmware.credentials.shc.trust import ShcTrustError, parse_crl
from firmware.credentials.status.code import StatusFormatError
from firmware.credentials.status.records import verify_status_record
from firmware.credentials.trust_json import TrustFileError, read_trust_json, synced_at
from firmware.protocol import finite_json
from firmware.protocol.envelope import EnvelopeError, envelope_signing_bytes, verify_envelope
from firmware.protocol.keys import key_id
from firmware.protocol.numericdate import (
    MAX_NUMERICDATE,
    NumericDateError,
    iso_time,
    numeric_date,
    optional_numeric_date,
)
from tests import cbor_attacks as attacks

# What issue 15 lists, plus the first second a datetime cannot hold.
BAD_TIMES: tuple[Any, ...] = (math.nan, math.inf, -math.inf, -1, 2**63, MAX_NUMERICDATE + 1,
                              True, "1700000000")
PROPERTY = settings(max_examples=30, deadline=None)
# Integers within CBOR's 64-bit heads (beyond them cbor2 writes a bignum, tag 2/3, which the
# formats refuse as an unused tag: test_bignum_times_are_refused).
bad_times = st.sampled_from(BAD_TIMES) | st.floats(allow_nan=True).filter(
    lambda x: not math.isfinite(x) or x < 0 or x > MAX_NUMERICDATE) | st.integers(
    MAX_NUMERICDATE + 1, 2**64 - 1) | st.integers(-(2**64), -1)


# -- the helper ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value", BAD_TIMES + (None, [], b"1", -0.5))
def test_numeric_date_refuses(value: Any) -> None:
    with pytest.raises(NumericDateError):
        numeric_date(value, "exp")


@pytest.mark.parametrize("value", [0, 0.0, 1.5, 1_700_000_000, MAX_NUMERICDATE, float(MAX_NUMERICDATE)])
def test_numeric_date_accepts(value: Any) -> None:
    assert numeric_date(value) == value


def test_the_range_ends_at_the_last_second_of_9999() -> None:
    assert datetime.fromtimestamp(MAX_NUMERICDATE, timezone.utc) == datetime(
        9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
    assert optional_numeric_date(None) is None


@pytest.mark.parametrize("text", ["NaN", "inf", "", "1969-12-31T23:59:59Z", "9999-12-31T23:59:59-01:00",
                                  "2021-13-01T00:00:00Z"])
def test_iso_time_refuses(text: str) -> None:
    with pytest.raises(NumericDateError):
        iso_time(text)


def test_iso_time_accepts_and_takes_naive_as_utc() -> None:
    assert iso_time("2025-06-01T00:00:00") == datetime(2025, 6, 1, tzinfo=timezone.utc)
    assert iso_time("2025-06-01T00:00:00Z") == datetime(2025, 6, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "[1e400]", '{"exp": -1e999}',
                                  "[" * 100_000])
def test_finite_json_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        finite_json.loads(text)


def test_finite_json_accepts_json() -> None:
    assert finite_json.loads('{"a": [1, 2.5, 1e300, -0.0, null]}') == {"a": [1, 2.5, 1e300, -0.0, None]}


# -- DCC: iat, exp ------------------------------------------------------------------------------
@PROPERTY
@given(st.sampled_from(["iat", "exp"]), bad_times)
def test_dcc_time_claims(field: str, value: Any) -> None:
    text = attacks.signed_dcc(cbor2.dumps(attacks.dcc_claims(**{field: value})))
    verdict = verify(text, attacks.DCC_TRUST, attacks.DCC_AT)
    assert not verdict.valid and verdict.failure == "DCC_CLAIMS_INVALID"
    assert verdict.checks["signature"] is True and verdict.checks["expiry"] is False


@pytest.mark.parametrize("value", [2**64, -(2**64) - 1])
def test_bignum_times_are_refused(value: int) -> None:
    text = attacks.signed_dcc(cbor2.dumps(attacks.dcc_claims(exp=value)))
    assert verify(text, attacks.DCC_TRUST, attacks.DCC_AT).failure == "DCC_CBOR_INVALID"
    text = attacks.signed_nzcp(cbor2.dumps(attacks.nzcp_claims(exp=value)))
    assert verify(text, attacks.NZCP_TRUST, attacks.NZCP_AT).failure == "NZCP_PAYLOAD_INVALID"


def test_dcc_good_times_still_verify() -> None:
    assert verify(attacks.signed_dcc(cbor2.dumps(attacks.dcc_claims())), attacks.DCC_TRUST,
                  attacks.DCC_AT).valid


# -- NZCP: nbf, exp -----------------------------------------------------------------------------
@PROPERTY
@given(st.sampled_from(["nbf", "exp"]), bad_times)
def test_nzcp_time_claims(field: str, value: Any) -> None:
    text = attacks.signed_nzcp(cbor2.dumps(attacks.nzcp_claims(**{field: value})))
    verdict = verify(text, attacks.NZCP_TRUST, attacks.NZCP_AT)
    assert not verdict.valid and verdict.failure == "NZCP_CLAIMS_INVALID"


# -- status code: issued_at; status record: issued_at, valid_until, codes_not_before ---------------
@PROPERTY
@given(bad_times)
def test_status_code_issued_at(value: Any) -> None:
    text = attacks.signed_status_code(cbor2.dumps(attacks.status_code_claims(issued_at=value)))
    verdict = verify(text, attacks.STATUS_TRUST, attacks.STATUS_AT)
    assert not verdict.valid and verdict.failure == "STATUS_PAYLOAD_INVALID"


@PROPERTY
@given(st.sampled_from(["issued_at", "valid_until", "codes_not_before"]), bad_times)
def test_status_record_times(field: str, value: Any) -> None:
    blob = attacks.signed_status_record(cbor2.dumps(attacks.status_record_claims(**{field: value})))
    with pytest.raises(StatusFormatError) as caught:
        verify_status_record(blob, attacks.STATUS_KEYS)
    assert caught.value.code == "STATUS_RECORD_INVALID"


def test_status_good_times_still_verify() -> None:
    code = cbor2.dumps(attacks.status_code_claims())
    assert verify(attacks.signed_status_code(code), attacks.STATUS_TRUST, attacks.STATUS_AT).valid
    record = attacks.signed_status_record(cbor2.dumps(attacks.status_record_claims(codes_not_before=0)))
    assert verify_status_record(record, attacks.STATUS_KEYS).codes_not_before == 0


# -- SHC: nbf, exp (JSON: NaN and Infinity are written as literals, 2**63 as an integer) ---------
_SHC_ISSUER = new_issuer()
_SHC_STORE = TrustStore(shc=_SHC_ISSUER.trust())
_SHC_AT = datetime(2025, 6, 1, tzinfo=timezone.utc)
_SHC_NBF = datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()


def _card(claims: dict[str, Any]) -> str:
    texts = jws_to_qr_texts(sign_compact_jws(claims, _SHC_ISSUER.key))
    return "shc:/" + "".join(t.split("/")[-1] for t in texts)


@PROPERTY
@given(st.sampled_from(["nbf", "exp"]), bad_times)
def test_shc_time_claims(field: str, value: Any) -> None:
    claims = card_claims(_SHC_ISSUER.iss, _SHC_NBF, exp=_SHC_NBF + 86400 * 365)
    claims[field] = value
    verdict = verify(_card(claims), _SHC_STORE, _SHC_AT)
    assert not verdict.valid and verdict.failure == "SHC_PAYLOAD_INVALID"


def test_shc_overflowing_number_is_refused() -> None:
    claims = card_claims(_SHC_ISSUER.iss, _SHC_NBF, exp=12345)
    jws = sign_compact_jws(claims, _SHC_ISSUER.key)
    # Re-sign a payload whose exp is the literal 1e400 (json.dumps never writes it).
    from firmware.credentials.shc.codec import b64url_encode, deflate_raw
    from firmware.demo.issuers.cose import es256_sign

    header = jws.split(".")[0]
    body = json.dumps(claims, separators=(",", ":")).replace('"exp":12345', '"exp":1e400')
    payload = b64url_encode(deflate_raw(body.encode()))
    signature = es256_sign(_SHC_ISSUER.key, f"{header}.{payload}".encode())
    text = "shc:/" + "".join(t.split("/")[-1] for t in jws_to_qr_texts(
        f"{header}.{payload}.{b64url_encode(signature)}"))
    verdict = verify(text, _SHC_STORE, _SHC_AT)
    assert verdict.failure == "SHC_PAYLOAD_INVALID"
    assert verify(_card(card_claims(_SHC_ISSUER.iss, _SHC_NBF)), _SHC_STORE, _SHC_AT).valid


@pytest.mark.parametrize("stamp", ["nan", "inf", "-1", "1e400", "9e99", "x"])
def test_shc_crl_cutoff_must_be_a_numericdate(stamp: str) -> None:
    with pytest.raises(ShcTrustError):
        parse_crl({"kid": "k", "method": "rid", "ctr": 1, "rids": [f"cmlkMQ.{stamp}"]})
    assert parse_crl({"kid": "k", "method": "rid", "ctr": 1,
                      "rids": ["cmlkMQ.1700000000"]}).rids == {"cmlkMQ": 1_700_000_000.0}


# -- fleet envelopes and trust files --------------------------------------------------------------
_FLEET_KEY = Ed25519PrivateKey.generate()


def _envelope(issued_at: Any, content: Any = None) -> bytes:
    envelope: dict[str, Any] = {"name": "shc-issuers", "version": 1, "issued_at": issued_at,
                                "key_id": key_id(_FLEET_KEY.public_key()),
                                "content": content if content is not None else {"a": 1}}
    envelope["sig"] = base64.b64encode(_FLEET_KEY.sign(envelope_signing_bytes(envelope))).decode()
    return json.dumps(envelope).encode()


@pytest.mark.parametrize("issued_at", ["NaN", "", "1969-12-31T23:59:59Z", "not a time"])
def test_envelope_issued_at_must_be_a_time(issued_at: str) -> None:
    verify_envelope(_envelope("2025-06-01T00:00:00Z"), [_FLEET_KEY.public_key()])
    with pytest.raises(EnvelopeError) as caught:
        verify_envelope(_envelope(issued_at), [_FLEET_KEY.public_key()])
    assert caught.value.code == "TRUST_MALFORMED"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_envelope_with_a_non_finite_number_is_refused(literal: str) -> None:
    raw = _envelope("2025-06-01T00:00:00Z", {"n": 7}).replace(b'{"n": 7}', f'{{"n": {literal}}}'.encode())
    with pytest.raises(EnvelopeError) as caught:
        verify_envelope(raw, [_FLEET_KEY.public_key()])
    assert caught.value.code == "TRUST_MALFORMED"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e400"])
def test_trust_file_with_a_non_finite_number_is_refused(tmp_path: Path, literal: str) -> None:
    path = tmp_path / "nzcp-issuers.json"
    path.write_text(f'{{"trusted_issuers": [], "did_documents": [], "t": {literal}}}')
    with pytest.raises(TrustFileError):
        read_trust_json(path)


@pytest.mark.parametrize("checked_at", ["NaN", "0001-01-01T00:00:00Z", 1e300])
def test_sync_state_time_outside_the_range_is_not_used(tmp_path: Path, checked_at: Any) -> None:
    (tmp_path / "x.json").write_text("{}")
    state = {"items": {"x": {"checked_at": checked_at}}}
    (tmp_path / "trust-state.json").write_text(json.dumps(state))
    mtime = datetime.fromtimestamp((tmp_path / "x.json").stat().st_mtime, timezone.utc)
    assert synced_at(tmp_path, "x") == mtime  # falls back to the file time
    state["items"]["x"]["checked_at"] = "2025-06-01T00:00:00Z"
    (tmp_path / "trust-state.json").write_text(json.dumps(state))
    assert synced_at(tmp_path, "x") == datetime(2025, 6, 1, tzinfo=timezone.utc)
    assert timedelta(0) <= datetime.now(timezone.utc) - mtime


def test_finite_json_depth_bound_at_and_one_past() -> None:
    bound = finite_json.MAX_DEPTH
    assert finite_json.loads("[" * bound + "]" * bound) is not None
    with pytest.raises(ValueError, match="nested deeper"):
        finite_json.loads("[" * (bound + 1) + "]" * (bound + 1))
    # brackets inside strings (escaped quotes included) are text, not nesting
    text = '["' + '[\\"' * (bound * 2) + '"]'
    assert finite_json.loads(text) == ['[\\"'.replace('\\"', '"') * (bound * 2)]
    assert finite_json.nesting_depth(b'{"a": [1, {"b": "]]]"}]}') == 3
