"""Property tests for the status code and record parsers: round trips, arbitrary input, truncations."""
from __future__ import annotations

from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.credentials import TrustStore, verify
from firmware.credentials.base45 import b45encode
from firmware.credentials.status import StatusTrust
from firmware.credentials.status.code import StatusFormatError, decode_code_claims
from firmware.demo.issuers.status import issue_status_code
from firmware.credentials.status.records import (
    COLOURS,
    StatusIssuerKey,
    StatusRecord,
    StatusRecordCache,
    verify_status_record,
)
from firmware.demo.issuers.status import sign_status_record
from firmware.protocol.numericdate import MAX_NUMERICDATE
from tests import cbor_attacks

FAST = settings(max_examples=60, deadline=None)
AT = datetime(2025, 6, 1, tzinfo=timezone.utc)
NOW = int(AT.timestamp())
KID = b"prop"
_KEY = ec.generate_private_key(ec.SECP256R1())
_KEYS = {KID: StatusIssuerKey("hg-prop", _KEY.public_key())}
_CACHE = StatusRecordCache(_KEYS)
_SUBJECT = b"\x42" * 16
_CACHE.apply_sync([sign_status_record(StatusRecord("hg-prop", _SUBJECT, "green", NOW - 5, NOW + 60),
                                      _KEY, kid=KID)], AT)
_STORE = TrustStore(status=StatusTrust(keys=_KEYS, cache=_CACHE))
_GOOD = issue_status_code(_KEY, kid=KID, issuer="hg-prop", subject=_SUBJECT, issued_at=NOW - 100)


def test_good_code_verifies() -> None:
    assert verify(_GOOD, _STORE, AT).valid


@FAST
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises_never_accepts(tail: str) -> None:
    verdict = verify("HG1:" + tail, _STORE, AT)
    assert not verdict.valid and verdict.failure


@FAST
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_accept(data: bytes) -> None:
    verdict = verify("HG1:" + b45encode(data), _STORE, AT)
    assert not verdict.valid and verdict.failure
    try:
        verify_status_record(data, _KEYS)
    except StatusFormatError:
        pass
    try:
        decode_code_claims(data)
    except StatusFormatError:
        pass


@FAST
@given(st.integers(min_value=0, max_value=len(_GOOD) - 1))
def test_truncations_are_denied(cut: int) -> None:
    verdict = verify(_GOOD[:cut], _STORE, AT)
    assert not verdict.valid and verdict.failure


@FAST
@given(st.binary(min_size=8, max_size=32), st.integers(min_value=0, max_value=NOW),
       st.text(min_size=1, max_size=64))
def test_code_round_trip(subject: bytes, issued_at: int, issuer: str) -> None:
    keys = {KID: StatusIssuerKey(issuer, _KEY.public_key())}
    cache = StatusRecordCache(keys)
    cache.apply_sync([sign_status_record(StatusRecord(issuer, subject, "green", issued_at, NOW + 1),
                                         _KEY, kid=KID)], AT)
    text = issue_status_code(_KEY, kid=KID, issuer=issuer, subject=subject, issued_at=issued_at)
    verdict = verify(text, TrustStore(status=StatusTrust(keys=keys, cache=cache)), AT)
    assert verdict.valid and verdict.credential_id == subject.hex()


@FAST
# Times up to MAX_NUMERICDATE (9999-12-31): later ones are refused (test_numericdate.py).
@given(st.sampled_from(COLOURS), st.integers(min_value=0, max_value=MAX_NUMERICDATE),
       st.one_of(st.none(), st.binary(max_size=2048)),
       st.one_of(st.none(), st.integers(0, MAX_NUMERICDATE)))
def test_record_round_trip(colour: str, valid_until: int, template: bytes | None,
                           codes_not_before: int | None) -> None:
    original = StatusRecord("hg-prop", _SUBJECT, colour, NOW, valid_until,
                            face_key_id="k" if template is not None else None,
                            face_template=template, codes_not_before=codes_not_before)
    assert verify_status_record(sign_status_record(original, _KEY, kid=KID), _KEYS) == original


@FAST
@given(st.lists(st.binary(max_size=200), max_size=5))
def test_sync_of_garbage_refuses_everything(blobs: list[bytes]) -> None:
    cache = StatusRecordCache(_KEYS)
    report = cache.apply_sync(blobs, AT)
    assert report.stored == 0 and report.refused == len(blobs) and len(cache) == 0


# -- issue 15: shared references and tagged CBOR inside correctly signed codes and records ------
@FAST
@given(cbor_attacks.shared_reference_cbor(), st.sampled_from(["status-code", "status-record"]))
def test_shared_reference_cbor_is_refused_within_budget(hostile: bytes, fmt: str) -> None:
    outcome, peak = cbor_attacks.peak_bytes(lambda: cbor_attacks.run_format(fmt, hostile))
    assert outcome == cbor_attacks.Outcome(True, "STATUS_CBOR_REFUSED")
    assert peak < cbor_attacks.MEMORY_BUDGET_BYTES


@FAST
@given(cbor_attacks.cbor_items(), st.sampled_from(["status-code", "status-record"]))
def test_tagged_cbor_never_raises_and_stays_within_budget(hostile: bytes, fmt: str) -> None:
    outcome, peak = cbor_attacks.peak_bytes(lambda: cbor_attacks.run_format(fmt, hostile))
    assert outcome.code != "INTERNAL_ERROR"
    assert peak < cbor_attacks.MEMORY_BUDGET_BYTES
