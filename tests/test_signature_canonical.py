"""ECDSA malleability: (r, s) and (r, n - s) both verify. We sign low-s; our own formats refuse a
high s; the issuer formats accept it (their field data carries it) but no identity or revocation
lookup depends on which of the two encodings was scanned."""
from __future__ import annotations

import base64
import json
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from firmware.credentials import TrustStore, verify
from firmware.demo.issuers import nzcp, shc, status
from firmware.credentials.base45 import b45decode, b45encode
from firmware.credentials.cose_sign1 import ALG_ES256, decode_sign1, verify_signature
from firmware.demo.issuers.cose import encode_sign1
from firmware.credentials.dcc.clock import parse_iso8601
from firmware.demo.issuers.dcc import encode_hc1, issue_dcc
from firmware.credentials.dcc.pipeline import decode_dcc_sign1
from firmware.credentials.dcc.revocation import RevocationList, dcc_hashes
from firmware.credentials.es256 import (
    NON_CANONICAL_DETAIL,
    P256_ORDER,
    canonical_signature,
    es256_verify,
    is_high_s,
)
from firmware.demo.issuers.cose import es256_sign
from firmware.credentials.nzcp.codec import base32_decode, base32_encode, split_text
from firmware.credentials.shc.codec import (
    b64url_decode,
    b64url_encode,
    jws_to_qr_texts,
    numeric_to_jws,
    parse_chunk,
)
from firmware.credentials.status.code import PREFIX as HG1_PREFIX
from firmware.credentials.status.code import split_code
from firmware.credentials.status.records import (
    StatusFormatError,
    StatusIssuerKey,
    StatusRecord,
    verify_status_record,
)
from firmware.demo.issuers.status import sign_status_record
from firmware.credentials.trust import dcc_kid
from tests.dcc_helpers import T0, make_cert, make_key, vaccination

SIGNATURES_PER_KEY = 64  # an unnormalised signer gives a high s half of the time: 2**-64 to pass


def twin(signature: bytes) -> bytes:
    """The other valid encoding of an r||s signature: (r, n - s)."""
    r, s = signature[:32], int.from_bytes(signature[32:], "big")
    return r + (P256_ORDER - s).to_bytes(32, "big")


def twin_cose(cose: bytes) -> bytes:
    """The same COSE_Sign1 (tag kept) with its ES256 signature replaced by its twin."""
    obj = cbor2.loads(cose)
    tagged = isinstance(obj, cbor2.CBORTag)
    body = list(obj.value if tagged else obj)
    body[3] = twin(body[3])
    return cbor2.dumps(cbor2.CBORTag(obj.tag, body) if tagged else body)


# --- the primitive -------------------------------------------------------------------------

def test_our_signatures_are_always_low_s() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    for n in range(SIGNATURES_PER_KEY):
        data = n.to_bytes(2, "big")
        signature = es256_sign(key, data)
        assert not is_high_s(signature) and canonical_signature(signature) == signature
        assert es256_verify(key.public_key(), data, signature)


def test_high_s_is_refused_unless_the_caller_allows_it() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    low = es256_sign(key, b"data")
    high = twin(low)
    assert is_high_s(high) and canonical_signature(high) == low
    assert not es256_verify(key.public_key(), b"data", high)
    assert es256_verify(key.public_key(), b"data", high, allow_high_s=True)
    # Allowing a high s allows nothing else: the twin of a wrong signature is still wrong.
    assert not es256_verify(key.public_key(), b"other", high, allow_high_s=True)
    assert canonical_signature(b"\xff" * 10) == b"\xff" * 10  # not r||s: left alone


def test_cose_verify_signature_refuses_high_s_by_default() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    high = decode_sign1(twin_cose(encode_sign1(b"payload", key, kid=b"k")))
    assert high.alg == ALG_ES256
    assert not verify_signature(high, key.public_key())
    assert verify_signature(high, key.public_key(), allow_high_s=True)


# --- our own formats: refused ------------------------------------------------------------

def test_status_code_with_high_s_is_refused() -> None:
    text, trust, at = status.bench_samples()[0]  # the ES256 sample
    assert verify(text, trust, at).valid
    high = HG1_PREFIX + b45encode(twin_cose(split_code(text)))
    verdict = verify(high, trust, at)
    assert not verdict.valid and verdict.failure == "STATUS_SIGNATURE_INVALID"
    assert verdict.extras.get("detail") == NON_CANONICAL_DETAIL
    assert verdict.checks["signature"] is False and verdict.checks["revocation"] is None


def test_status_record_with_high_s_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    keys = {b"k1": StatusIssuerKey("hg-test", key.public_key())}
    record = StatusRecord("hg-test", bytes(range(16)), "green", issued_at=1, valid_until=2)
    blob = sign_status_record(record, key, kid=b"k1")
    assert verify_status_record(blob, keys) == record
    with pytest.raises(StatusFormatError) as refused:
        verify_status_record(twin_cose(blob), keys)
    assert refused.value.code == "STATUS_RECORD_SIGNATURE"


def test_eddsa_status_code_is_unaffected() -> None:
    text, trust, at = status.bench_samples()[1]
    assert decode_sign1(split_code(text)).alg != ALG_ES256
    assert verify(text, trust, at).valid
    assert isinstance(next(iter(trust.status.keys.values())).public_key, ed25519.Ed25519PublicKey)


# --- issuer formats: accepted, identity and revocation canonical -----------------------------

@pytest.fixture(scope="module")
def dcc_signer() -> tuple[Any, bytes]:
    key = make_key("ec")
    return key, make_cert(key)


def _dcc_twin(text: str) -> str:
    return encode_hc1(twin_cose(zlib.decompress(b45decode(text[4:]))))


def test_dcc_high_s_verifies_and_names_the_same_credential(dcc_signer: tuple[Any, bytes]) -> None:
    key, der = dcc_signer
    text = issue_dcc(vaccination(), key, dcc_kid(der), T0, T0 + timedelta(days=365), "XA")
    high = _dcc_twin(text)
    trust, at = TrustStore.from_certificates([der]), T0 + timedelta(days=1)
    assert is_high_s(decode_dcc_sign1(zlib.decompress(b45decode(high[4:]))).signature)
    low_verdict, high_verdict = verify(text, trust, at), verify(high, trust, at)
    assert low_verdict.valid and high_verdict.valid
    assert low_verdict.credential_id == high_verdict.credential_id


@pytest.mark.parametrize("listed", ["low", "high"])
def test_revoked_dcc_stays_revoked_when_re_encoded_with_the_other_s(
        dcc_signer: tuple[Any, bytes], listed: str) -> None:
    """The SIGNATURE revocation hash covers only r (EU revocation scheme): neither encoding of a
    revoked DCC's signature escapes, whichever of the two the list was computed from."""
    key, der = dcc_signer
    text = issue_dcc(vaccination(uvci="URN:UVCI:01:XA:REVOKED0001#R"), key, dcc_kid(der), T0,
                     T0 + timedelta(days=365), "XA")
    high = _dcc_twin(text)
    source = text if listed == "low" else high
    sign1 = decode_dcc_sign1(zlib.decompress(b45decode(source[4:])))
    signature_hash = dcc_hashes("URN:UVCI:01:XA:REVOKED0001#R", "XA", sign1)["SIGNATURE"]
    trust = TrustStore.from_certificates([der])
    trust.dcc_revocation = RevocationList.from_hashes({"SIGNATURE": [signature_hash]})
    for scanned in (text, high):
        verdict = verify(scanned, trust, T0 + timedelta(days=1))
        assert not verdict.valid and verdict.failure == "DCC_REVOKED"
        assert verdict.checks["signature"] is True and verdict.checks["revocation"] is False


def test_eu_field_data_carries_high_s_and_it_verifies(shared_data: Path) -> None:
    """Why the DCC allows a high s: about half of the EU test signatures have one (BE case 1)."""
    case = json.loads((shared_data / "dcc-testdata/BE/2DCode/raw/1.json").read_text("utf-8"))
    trust = TrustStore.from_certificates([base64.b64decode(case["TESTCTX"]["CERTIFICATE"])])
    at = parse_iso8601(case["TESTCTX"]["VALIDATIONCLOCK"])
    sign1 = decode_dcc_sign1(zlib.decompress(b45decode(case["PREFIX"][4:])))
    assert is_high_s(sign1.signature)
    assert verify(case["PREFIX"], trust, at).checks["signature"] is True
    assert verify(_dcc_twin(case["PREFIX"]), trust, at).checks["signature"] is True


def _shc_twin(text: str) -> str:
    head, body, signature = numeric_to_jws(parse_chunk(text).digits).split(".")
    flipped = b64url_encode(twin(b64url_decode(signature)))
    (twin_text,) = jws_to_qr_texts(f"{head}.{body}.{flipped}")
    return twin_text


def test_shc_either_s_verifies_with_one_credential_id() -> None:
    """The id of a card without `rid` hashes the JWS: it must not change with the s form."""
    from firmware.demo.issuers.shc import card_claims, issue_card, new_issuer

    issuer = new_issuer()
    _, _, at = shc.bench_samples()[0]
    (text,) = issue_card(issuer, card_claims(issuer.iss, at.timestamp() - 86400))
    trust = TrustStore(shc=issuer.trust())
    high = _shc_twin(text)
    low_verdict, high_verdict = verify(text, trust, at), verify(high, trust, at)
    assert low_verdict.valid and high_verdict.valid, (low_verdict.failure, high_verdict.failure)
    assert (low_verdict.credential_id or "").startswith("jws-sha256:")
    assert high_verdict.credential_id == low_verdict.credential_id


def test_shc_spec_example_with_high_s_keeps_its_id(shared_data: Path) -> None:
    """Spec example 00 is signed with a high s; its low-s twin is the same card, same id."""
    from firmware.credentials.shc.trust import ShcTrust

    examples = shared_data / "shc-examples/examples"
    text = (examples / "example-00-f-qr-code-numeric-value-0.txt").read_text().strip()
    jws = numeric_to_jws(parse_chunk(text).digits)
    assert is_high_s(b64url_decode(jws.split(".")[2]))
    trust_obj = ShcTrust()
    trust_obj.add_jwks(json.loads((examples / "example-00-b-jws-payload-expanded.json")
                                  .read_text())["iss"],
                       json.loads((examples / "issuer/.well-known/jwks.json").read_text()), "spec")
    trust = TrustStore(shc=trust_obj)
    at = T0 + timedelta(days=30)
    original, low = verify(text, trust, at), verify(_shc_twin(text), trust, at)
    assert original.checks["signature"] is True and low.checks["signature"] is True
    assert original.credential_id == low.credential_id


def test_nzcp_either_s_verifies_with_one_credential_id() -> None:
    text, trust, at = nzcp.bench_samples()[0]
    _, body = split_text(text)
    high = "NZCP:/1/" + base32_encode(twin_cose(base32_decode(body)))
    low_verdict, high_verdict = verify(text, trust, at), verify(high, trust, at)
    assert low_verdict.valid and high_verdict.valid
    assert high_verdict.credential_id == low_verdict.credential_id
