"""Property tests: the DCC verifier never raises and never accepts on arbitrary or broken input."""
from __future__ import annotations

import zlib
from datetime import timedelta

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.credentials import TrustStore, verify
from firmware.credentials.base45 import ALPHABET, Base45Error, b45decode, b45encode
from firmware.credentials.dcc.clock import parse_iso8601
from firmware.credentials.dcc.der import DerError, parse_certificate
from firmware.demo.issuers.dcc import issue_dcc
from firmware.credentials.dcc.signer import DccSigner, SignerError
from firmware.credentials.trust import dcc_kid
from tests import cbor_attacks
from tests.dcc_helpers import T0, make_cert, make_key, vaccination

AT = T0 + timedelta(days=10)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_KEY = make_key("ec")
_DER = make_cert(_KEY)
TRUST = TrustStore.from_certificates([_DER])
VALID = issue_dcc(vaccination(), _KEY, dcc_kid(_DER), T0, T0 + timedelta(days=365))


def _never_valid(text: str) -> None:
    verdict = verify(text, TRUST, AT)
    assert not verdict.valid and verdict.failure
    assert verdict.failure != "INTERNAL_ERROR"  # a reasoned refusal, not a caught crash


def test_the_reference_credential_is_valid() -> None:
    assert verify(VALID, TRUST, AT).valid


@FAST
@given(st.text(max_size=300))
def test_arbitrary_text(text: str) -> None:
    _never_valid(text)
    _never_valid("HC1:" + text)


@FAST
@given(st.text(alphabet=ALPHABET, max_size=600))
def test_arbitrary_base45(text: str) -> None:
    _never_valid("HC1:" + text)


@FAST
@given(st.binary(max_size=600))
def test_arbitrary_compressed_bytes(data: bytes) -> None:
    _never_valid("HC1:" + b45encode(zlib.compress(data)))
    _never_valid("HC1:" + b45encode(data))


@FAST
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.binary(max_size=20) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.integers(-300, 300) | st.text(max_size=5), inner, max_size=4),
                    max_leaves=30))
def test_arbitrary_cbor_structures(value: object) -> None:
    for wrapped in (value, cbor2.CBORTag(18, value), [cbor2.dumps({1: -7}), {}, cbor2.dumps(value), b"\0" * 64]):
        try:
            encoded = cbor2.dumps(wrapped)
        except Exception:
            continue
        _never_valid("HC1:" + b45encode(zlib.compress(encoded)))


@FAST
@given(st.integers(min_value=0, max_value=len(VALID) - 1))
def test_truncations(cut: int) -> None:
    _never_valid(VALID[:cut])


@FAST
@given(st.integers(min_value=4, max_value=len(VALID) - 1), st.sampled_from(ALPHABET))
def test_single_character_changes(position: int, char: str) -> None:
    if VALID[position] == char:
        return
    _never_valid(VALID[:position] + char + VALID[position + 1:])


@settings(max_examples=8, deadline=None)
@given(st.integers(min_value=70_000, max_value=20_000_000), st.sampled_from([b"\0", b"ab", b"\xa1"]))
def test_decompression_bombs(size: int, unit: bytes) -> None:
    bomb = zlib.compress(unit * (size // len(unit)), 9)
    verdict = verify("HC1:" + b45encode(bomb), TRUST, AT)
    assert not verdict.valid and verdict.failure in ("DCC_TOO_LARGE", "DCC_BASE45_INVALID")


@pytest.mark.parametrize("depth", [100, 10_000, 60_000])
def test_deeply_nested_cbor(depth: int) -> None:
    payload = b"\x81" * depth + b"\x00"  # [[[[...0...]]]]
    _never_valid("HC1:" + b45encode(zlib.compress(payload)))
    cose = cbor2.dumps([cbor2.dumps({1: -7, 4: dcc_kid(_DER)}), {}, payload, b"\0" * 64])
    _never_valid("HC1:" + b45encode(zlib.compress(cose)))


@FAST
@given(st.binary(max_size=200))
def test_base45_round_trip(data: bytes) -> None:
    assert b45decode(b45encode(data)) == data


@FAST
@given(st.text(max_size=40))
def test_base45_decode_only_raises_its_error(text: str) -> None:
    try:
        b45decode(text)
    except Base45Error:
        pass


@FAST
@given(st.binary(max_size=400))
def test_certificate_parsers_only_raise_their_errors(data: bytes) -> None:
    try:
        parse_certificate(data)
    except (DerError, IndexError, ValueError):
        pass
    with pytest.raises(SignerError):
        DccSigner.from_der(data)


@FAST
@given(st.integers(min_value=0, max_value=len(_DER) - 1))
def test_truncated_certificates(cut: int) -> None:
    with pytest.raises(SignerError):
        DccSigner.from_der(_DER[:cut])


@FAST
@given(st.text(max_size=40))
def test_clock_parser(text: str) -> None:
    try:
        parse_iso8601(text)
    except ValueError:
        pass


_CBOR_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.binary(max_size=12)
                            | st.text(max_size=8) | st.floats(allow_nan=False),
                            lambda inner: st.lists(inner, max_size=3), max_leaves=8)


@FAST
@given(st.dictionaries(st.integers(-5, 5), _CBOR_VALUES, max_size=4),
       st.dictionaries(st.integers(-5, 5), _CBOR_VALUES, max_size=4), st.binary(max_size=80))
def test_arbitrary_cose_headers(protected: dict, unprotected: dict, signature: bytes) -> None:
    """Any header values (alg as a list, kid as text, ...) give a reasoned refusal."""
    from firmware.demo.issuers.dcc import cwt_payload
    payload = cwt_payload(vaccination(), T0, T0 + timedelta(days=365))
    cose = cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps(protected), unprotected, payload, signature]))
    verdict = verify("HC1:" + b45encode(zlib.compress(cose)), TRUST, AT)
    assert not verdict.valid and verdict.failure != "INTERNAL_ERROR"


_ANCHOR = make_key("ec")


@FAST
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["certificates", "kid", "rawData", "thumbprint",
                                         "certificateType", "country", "x"]), inner, max_size=5),
                    max_leaves=20))
def test_signed_but_malformed_signer_lists(document: object) -> None:
    """A correctly signed list with any content: refused as a whole or entry by entry."""
    import json

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from firmware.credentials.dcc.trustlist import TrustListError, ingest_signer_list
    data = json.dumps(document).encode()
    signature = _ANCHOR.sign(data, ec.ECDSA(hashes.SHA256()))
    trust = TrustStore()
    try:
        report = ingest_signer_list(trust, data, signature, [_ANCHOR.public_key()], AT)
    except TrustListError:
        assert trust.dcc_signers == {}
        return
    assert report.accepted == 0 and trust.dcc_signers == {}


# -- issue 15: shared references and tagged CBOR inside a correctly signed DCC -------------------
@FAST
@given(cbor_attacks.shared_reference_cbor(), st.sampled_from(["dcc", "dcc-unprotected"]))
def test_shared_reference_cbor_is_refused_within_budget(hostile: bytes, fmt: str) -> None:
    """Value sharing anywhere (signed payload or unprotected header) is refused with
    DCC_CBOR_REFUSED, never raises, and stays within the memory budget."""
    outcome, peak = cbor_attacks.peak_bytes(lambda: cbor_attacks.run_format(fmt, hostile))
    assert outcome == cbor_attacks.Outcome(True, "DCC_CBOR_REFUSED")
    assert peak < cbor_attacks.MEMORY_BUDGET_BYTES


@FAST
@given(cbor_attacks.cbor_items(), st.sampled_from(["dcc", "dcc-unprotected"]))
def test_tagged_cbor_never_raises_and_stays_within_budget(hostile: bytes, fmt: str) -> None:
    outcome, peak = cbor_attacks.peak_bytes(lambda: cbor_attacks.run_format(fmt, hostile))
    assert outcome.code != "INTERNAL_ERROR"
    assert peak < cbor_attacks.MEMORY_BUDGET_BYTES
