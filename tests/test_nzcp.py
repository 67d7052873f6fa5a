"""NZ COVID Pass: the spec's valid and invalid examples, trust loading, and property tests."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.credentials import TrustStore, verify
from firmware.demo.issuers.cose import encode_sign1
from firmware.credentials.nzcp import NzcpTrust, did_web_url, load_trust
from firmware.demo.issuers.nzcp import bench_samples
from firmware.credentials.nzcp.codec import (
    NzcpFormatError,
    base32_decode,
    base32_encode,
    cti_to_jti,
    jti_to_cti,
)
from firmware.demo.issuers.nzcp import issue_pass
from firmware.credentials.shc.codec import jwk_from_public_key

EXAMPLE_ISSUER = "did:web:nzcp.covid19.health.nz"
AT = datetime(2026, 1, 1, tzinfo=timezone.utc)
FAST = settings(max_examples=60, deadline=None)

# Every example pass in the spec with the outcome the spec states for it, as our reason code.
EXAMPLES = [
    ("valid/nzcp.txt", None),
    ("invalid/nzcp-bad-public-key.txt", "NZCP_SIGNATURE_INVALID"),  # "unable to validate the signature"
    ("invalid/nzcp-not-associated-public-key.txt", "NZCP_KEY_NOT_FOUND"),  # "public key not found"
    ("invalid/nzcp-modified-sig.txt", "NZCP_SIGNATURE_INVALID"),
    ("invalid/nzcp-modified-payload.txt", "NZCP_SIGNATURE_INVALID"),
    ("invalid/nzcp-expired-payload.txt", "NZCP_EXPIRED"),  # "EXPIRED"
    ("invalid/nzcp-notactive-payload.txt", "NZCP_NOT_ACTIVE"),  # "NOT ACTIVE"
]


@pytest.fixture(scope="module")
def examples(shared_data: Path) -> Path:
    return shared_data / "nzcp-examples" / "examples"


@pytest.fixture(scope="module")
def trust_dir(examples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cached did:web document of the example issuer, which the spec says to trust for tests."""
    directory = tmp_path_factory.mktemp("nzcp-trust")
    doc = json.loads((examples / "valid/did.json").read_text())
    (directory / "nzcp-issuers.json").write_text(
        json.dumps({"trusted_issuers": [EXAMPLE_ISSUER], "did_documents": [doc]}))
    return directory


@pytest.fixture(scope="module")
def store(trust_dir: Path) -> TrustStore:
    return TrustStore(nzcp=load_trust(trust_dir))


@pytest.mark.parametrize("name, failure", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_spec_examples(examples: Path, store: TrustStore, name: str, failure: str | None) -> None:
    verdict = verify((examples / name).read_text().strip(), store, AT)
    assert verdict.format == "nzcp"
    assert (verdict.valid, verdict.failure) == (failure is None, failure)


def test_valid_example_payload_and_jti(examples: Path, store: TrustStore) -> None:
    verdict = verify((examples / "valid/nzcp.txt").read_text().strip(), store, AT)
    expected = json.loads((examples / "valid/nzcp.json").read_text())
    assert verdict.payload == expected
    assert verdict.credential_id == "urn:uuid:60a4f54d-4e30-4332-be33-ad78b1eafa4b"
    assert all(verdict.checks[k] for k in ("prefix", "base45", "cose", "cbor", "signature", "schema", "expiry"))


def test_revoked_key_example_from_its_qr_image(examples: Path, store: TrustStore) -> None:
    """The PNG-only example (not described in SPEC.md) names an issuer we do not trust."""
    zxingcpp = pytest.importorskip("zxingcpp")
    from PIL import Image

    with Image.open(examples / "invalid/nzcp-revoked-public-key.png") as image:
        texts = [r.text for r in zxingcpp.read_barcodes(image)]
    assert len(texts) == 1 and texts[0].startswith("NZCP:/1/")
    assert verify(texts[0], store, AT).failure == "NZCP_ISSUER_UNTRUSTED"


def test_valid_example_qr_image_matches_text(examples: Path) -> None:
    zxingcpp = pytest.importorskip("zxingcpp")
    from PIL import Image

    with Image.open(examples / "valid/nzcp.png") as image:
        assert [r.text for r in zxingcpp.read_barcodes(image)] == [(examples / "valid/nzcp.txt").read_text().strip()]


def test_issuer_must_be_trusted_even_with_its_document(examples: Path) -> None:
    doc = json.loads((examples / "valid/did.json").read_text())
    text = (examples / "valid/nzcp.txt").read_text().strip()
    untrusted = NzcpTrust(trusted_issuers={"did:web:nzcp.identity.health.nz"})
    untrusted.add_did_document(doc)
    assert verify(text, TrustStore(nzcp=untrusted), AT).failure == "NZCP_ISSUER_UNTRUSTED"
    no_document = NzcpTrust(trusted_issuers={EXAMPLE_ISSUER})
    assert verify(text, TrustStore(nzcp=no_document), AT).failure == "NZCP_DID_UNAVAILABLE"
    assert verify(text, TrustStore(), AT).failure == "NZCP_ISSUER_UNTRUSTED"


def test_did_document_rules(examples: Path) -> None:
    doc = json.loads((examples / "valid/did.json").read_text())
    text = (examples / "valid/nzcp.txt").read_text().strip()
    not_asserted = dict(doc, assertionMethod=[])
    wrong_type = json.loads(json.dumps(doc))
    wrong_type["verificationMethod"][0]["type"] = "Ed25519VerificationKey2018"
    private = json.loads(json.dumps(doc))
    private["verificationMethod"][0]["publicKeyJwk"]["d"] = "AAAA"
    for bad, reason in ((not_asserted, "NZCP_KEY_NOT_FOUND"), (wrong_type, "NZCP_KEY_INVALID"),
                        (private, "NZCP_KEY_INVALID")):
        trust = NzcpTrust(trusted_issuers={EXAMPLE_ISSUER})
        trust.add_did_document(bad)
        assert verify(text, TrustStore(nzcp=trust), AT).failure == reason


def test_load_trust_errors(tmp_path: Path) -> None:
    assert load_trust(tmp_path) is None
    (tmp_path / "nzcp-issuers.json").write_text('{"trusted_issuers": "did:web:x", "did_documents": []}')
    with pytest.raises(ValueError, match="trusted_issuers"):
        load_trust(tmp_path)


def test_did_web_urls() -> None:
    assert did_web_url("did:web:nzcp.identity.health.nz") == "https://nzcp.identity.health.nz/.well-known/did.json"
    assert did_web_url("did:web:example.com:user:alice") == "https://example.com/user/alice/did.json"
    assert did_web_url("did:web:localhost%3A8443") == "https://localhost:8443/.well-known/did.json"


def test_cti_jti_mapping_from_spec() -> None:
    cti = bytes.fromhex("f81d4fae7dec11d0a76500a0c91e6bf6")
    assert cti_to_jti(cti) == "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
    assert jti_to_cti("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6") == cti
    with pytest.raises(NzcpFormatError):
        cti_to_jti(b"short")


@pytest.mark.parametrize("text, failure", [
    ("NZCP:/", "NZCP_VERSION_UNSUPPORTED"),
    ("NZCP:/2/AAAA", "NZCP_VERSION_UNSUPPORTED"),
    ("NZCP:/x/AAAA", "NZCP_VERSION_UNSUPPORTED"),
    ("NZCP:/1/", "NZCP_BASE32_INVALID"),
    ("NZCP:/1/AAAA=", "NZCP_BASE32_INVALID"),
    ("NZCP:/1/abcd", "NZCP_BASE32_INVALID"),
    ("NZCP:/1/A", "NZCP_BASE32_INVALID"),
    ("NZCP:/1/AE", "NZCP_COSE_INVALID"),
    ("NZCP:/1/" + "A" * 20000, "NZCP_TOO_LARGE"),
])
def test_malformed_texts(text: str, failure: str) -> None:
    verdict = verify(text, TrustStore(), AT)
    assert (verdict.valid, verdict.failure) == (False, failure)


def _own_issuer() -> tuple[ec.EllipticCurvePrivateKey, TrustStore]:
    key = ec.generate_private_key(ec.SECP256R1())
    did = "did:web:issuer.test"
    jwk = {k: v for k, v in jwk_from_public_key(key.public_key()).items() if k in ("kty", "crv", "x", "y")}
    trust = NzcpTrust(trusted_issuers={did})
    trust.add_did_document({"id": did, "assertionMethod": [f"{did}#k1"],
                            "verificationMethod": [{"id": f"{did}#k1", "type": "JsonWebKey2020",
                                                    "controller": did, "publicKeyJwk": jwk}]})
    return key, TrustStore(nzcp=trust)


_KEY, _STORE = _own_issuer()
_NOW = int(AT.timestamp())


def _pass(**overrides: object) -> str:
    fields: dict = dict(iss="did:web:issuer.test", kid="k1", nbf=_NOW - 10, exp=_NOW + 10,
                        jti="urn:uuid:00000000-0000-4000-8000-000000000001",
                        subject={"givenName": "Pat", "dob": "1970-01-01"})
    fields.update(overrides)
    return issue_pass(_KEY, **fields)


def test_claims_and_header_rules() -> None:
    assert verify(_pass(), _STORE, AT).valid
    assert verify(_pass(subject={"dob": "1970-01-01"}), _STORE, AT).failure == "NZCP_CLAIMS_INVALID"
    assert verify(_pass(subject={"givenName": "x" * 101, "dob": "1970-01-01"}), _STORE, AT).failure == "NZCP_CLAIMS_INVALID"
    assert verify(_pass(nbf=_NOW), _STORE, AT).valid  # nbf equal to now is active
    assert verify(_pass(exp=_NOW), _STORE, AT).failure == "NZCP_EXPIRED"
    # An untagged COSE_Sign1 and a payload that is not a map.
    claims = cbor2.dumps({1: "did:web:issuer.test"})
    untagged = encode_sign1(claims, _KEY, kid=b"k1", tagged=False)
    assert verify("NZCP:/1/" + base32_encode(untagged), _STORE, AT).failure == "NZCP_COSE_INVALID"
    not_map = encode_sign1(cbor2.dumps([1, 2]), _KEY, kid=b"k1")
    assert verify("NZCP:/1/" + base32_encode(not_map), _STORE, AT).failure == "NZCP_PAYLOAD_INVALID"
    odd_iss = encode_sign1(cbor2.dumps({1: ["did:web:issuer.test"]}), _KEY, kid=b"k1")
    assert verify("NZCP:/1/" + base32_encode(odd_iss), _STORE, AT).failure == "NZCP_ISSUER_UNTRUSTED"
    no_kid = encode_sign1(claims, _KEY, kid=b"")
    assert verify("NZCP:/1/" + base32_encode(no_kid), _STORE, AT).failure == "NZCP_HEADER_INVALID"


def test_bench_samples_verify() -> None:
    for text, store, at in bench_samples():
        assert verify(text, store, at).valid


def test_nothing_personal_is_logged(examples: Path, store: TrustStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name, _ in EXAMPLES:
        verify((examples / name).read_text().strip(), store, AT)
    for secret in ("Jack", "Sparrow", "1960-04-16", "60a4f54d"):
        assert secret not in caplog.text


@FAST
@given(st.binary(max_size=300))
def test_base32_round_trip(data: bytes) -> None:
    assert base32_decode(base32_encode(data)) == data if data else True


@FAST
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises_never_accepts(tail: str) -> None:
    verdict = verify("NZCP:/1/" + tail, _STORE, AT)
    assert not verdict.valid and verdict.failure


@FAST
@given(st.binary(max_size=400))
def test_arbitrary_cose_bytes_never_accept(data: bytes) -> None:
    verdict = verify("NZCP:/1/" + base32_encode(data), _STORE, AT)
    assert not verdict.valid and verdict.failure


_GOOD = _pass()


@FAST
@given(st.integers(min_value=0, max_value=len(_GOOD) - 1))
def test_truncations_are_denied(cut: int) -> None:
    verdict = verify(_GOOD[:cut], _STORE, AT)
    assert not verdict.valid and verdict.failure


@FAST
@given(st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=100),
       st.uuids(), st.integers(min_value=0, max_value=2**32))
def test_issue_verify_round_trip(given_name: str, jti: object, nbf: int) -> None:
    text = _pass(subject={"givenName": given_name, "dob": "2000-02-29"}, jti=f"urn:uuid:{jti}",
                 nbf=nbf, exp=nbf + 1)
    verdict = verify(text, _STORE, datetime.fromtimestamp(nbf, timezone.utc))
    assert verdict.valid
    assert verdict.credential_id == f"urn:uuid:{jti}"
    assert verdict.payload and verdict.payload["vc"]["credentialSubject"]["givenName"] == given_name


def test_trust_file_may_be_a_fleet_envelope(examples: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from fleet.trust import build_envelope

    content = {"trusted_issuers": [EXAMPLE_ISSUER],
               "did_documents": [json.loads((examples / "valid/did.json").read_text())]}
    fleet_key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "nzcp-issuers.json").write_bytes(
        build_envelope(fleet_key, "nzcp-issuers", 1, content, AT))
    store = TrustStore(nzcp=load_trust(tmp_path, [fleet_key.public_key()]))
    assert verify((examples / "valid/nzcp.txt").read_text().strip(), store, AT).valid
    with pytest.raises(ValueError, match="no pinned fleet key"):  # an unchecked envelope: refused
        load_trust(tmp_path)
