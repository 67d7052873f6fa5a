"""The shared COSE_Sign1 codec: every algorithm round-trips, and each caller's options stay narrow."""
from __future__ import annotations

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from firmware.credentials.cose_sign1 import (
    ALG_EDDSA,
    ALG_ES256,
    ALG_PS256,
    COSE_SIGN1_TAG,
    CWT_TAG,
    MAX_COSE_BYTES,
    CoseError,
    decode_sign1,
    sig_structure,
    verify_signature,
)
from firmware.demo.issuers.cose import encode_sign1
from firmware.credentials.es256 import es256_verify
from firmware.demo.issuers.cose import es256_sign

EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(("key", "alg"), [(EC_KEY, ALG_ES256), (ED_KEY, ALG_EDDSA), (RSA_KEY, ALG_PS256)])
def test_each_algorithm_round_trips_and_detects_tampering(key: object, alg: int) -> None:
    blob = encode_sign1(b"payload", key, kid=b"k1")  # type: ignore[arg-type]
    msg = decode_sign1(blob, require_tag=True)
    assert (msg.alg, msg.kid, msg.payload, msg.tagged) == (alg, b"k1", b"payload", True)
    assert verify_signature(msg, key.public_key())  # type: ignore[attr-defined]
    forged = decode_sign1(cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [
        msg.protected_raw, {}, b"payloaD", msg.signature])))
    assert not verify_signature(forged, key.public_key())  # type: ignore[attr-defined]


def test_a_key_of_another_type_never_verifies() -> None:
    msg = decode_sign1(encode_sign1(b"x", EC_KEY, kid=b"k"))
    assert not verify_signature(msg, RSA_KEY.public_key())
    assert not verify_signature(msg, ED_KEY.public_key())
    assert not verify_signature(msg, ec.generate_private_key(ec.SECP256R1()).public_key())


def test_non_p256_ec_keys_are_refused_for_signing() -> None:
    with pytest.raises(ValueError):
        encode_sign1(b"x", ec.generate_private_key(ec.SECP384R1()), kid=b"k")


def _alg_unprotected_message() -> bytes:
    """Empty protected header, alg and kid unprotected (as the EU DCC test case CO20)."""
    payload = b"claims"
    signature = es256_sign(EC_KEY, sig_structure(b"", payload))
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [b"", {1: ALG_ES256, 4: b"k"}, payload, signature]))


def test_alg_comes_from_the_protected_header_unless_the_caller_allows_otherwise() -> None:
    strict = decode_sign1(_alg_unprotected_message())
    assert strict.alg is None and strict.kid == b"k"
    assert not verify_signature(strict, EC_KEY.public_key())
    lenient = decode_sign1(_alg_unprotected_message(), unprotected_alg=True)
    assert lenient.alg == ALG_ES256
    assert verify_signature(lenient, EC_KEY.public_key())


def test_cwt_tag_is_accepted_once_outside_and_only_when_asked() -> None:
    body = cbor2.loads(encode_sign1(b"x", EC_KEY, kid=b"k", tagged=False))
    cwt = cbor2.dumps(cbor2.CBORTag(CWT_TAG, cbor2.CBORTag(COSE_SIGN1_TAG, body)))
    assert decode_sign1(cwt, allow_cwt_tag=True).payload == b"x"
    assert decode_sign1(cbor2.dumps(cbor2.CBORTag(CWT_TAG, body)), allow_cwt_tag=True).tagged is False
    nested = [cbor2.CBORTag(COSE_SIGN1_TAG, cbor2.CBORTag(COSE_SIGN1_TAG, body)),
              cbor2.CBORTag(CWT_TAG, cbor2.CBORTag(CWT_TAG, body)),
              cbor2.CBORTag(COSE_SIGN1_TAG, cbor2.CBORTag(CWT_TAG, body))]
    for bad in [cwt, *(cbor2.dumps(n) for n in nested)]:
        with pytest.raises(CoseError):
            decode_sign1(bad, allow_cwt_tag=bad != cwt)


def test_bounds_tag_and_structure_errors_carry_a_code() -> None:
    cases = {
        "too_large": b"\x00" * (MAX_COSE_BYTES + 1),
        "cbor": b"\xff",
        "tag": cbor2.dumps(cbor2.CBORTag(98, [])),
        "structure": cbor2.dumps([b"", {}, b""]),
        "header": cbor2.dumps([cbor2.dumps([1]), {}, b"", b""]),
    }
    for code, blob in cases.items():
        with pytest.raises(CoseError) as caught:
            decode_sign1(blob)
        assert caught.value.code == code
    with pytest.raises(CoseError) as caught:
        decode_sign1(encode_sign1(b"x", EC_KEY, kid=b"k", tagged=False), require_tag=True)
    assert caught.value.code == "tag"


def test_kid_is_a_byte_string_and_may_sit_in_the_unprotected_header() -> None:
    unprotected = decode_sign1(encode_sign1(b"x", RSA_KEY, kid=b"k2", kid_unprotected=True))
    assert unprotected.protected == {1: ALG_PS256} and unprotected.kid == b"k2"
    assert decode_sign1(encode_sign1(b"x", ED_KEY, kid="text")).kid == b"text"  # written as bytes
    text_kid = cbor2.dumps([cbor2.dumps({1: ALG_ES256, 4: "text"}), {}, b"", b""])
    assert decode_sign1(text_kid).kid is None
    assert decode_sign1(encode_sign1(b"x", EC_KEY, kid=None)).kid is None


def test_raw_es256_needs_p256_and_64_bytes() -> None:
    signature = es256_sign(EC_KEY, b"data")
    assert len(signature) == 64 and es256_verify(EC_KEY.public_key(), b"data", signature)
    assert not es256_verify(EC_KEY.public_key(), b"data", signature[:-1])
    assert not es256_verify(EC_KEY.public_key(), b"datA", signature)
    assert not es256_verify(ec.generate_private_key(ec.SECP384R1()).public_key(), b"data", signature)
