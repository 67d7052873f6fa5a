"""DCC signing certificates must be document signers (RFC 5280): not a CA, and a KeyUsage, when
present, with digitalSignature. Refused at trust-list load (skipped alone, reported) and at
verification (DCC_SIGNER_NOT_DSC)."""
from __future__ import annotations

import base64
import hashlib
import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from firmware.credentials import TrustStore, verify
from firmware.credentials.dcc.clock import parse_iso8601
from firmware.credentials.dcc.der import parse_certificate
from firmware.demo.issuers.dcc import issue_dcc
from firmware.credentials.dcc.signer import DccSigner
from firmware.credentials.dcc.trustlist import ingest_signer_list
from firmware.credentials.store import load_trust_dir
from firmware.credentials.trust import dcc_kid
from tests.dcc_helpers import T0, make_key, vaccination

AT = T0 + timedelta(days=10)
USAGE_FLAGS = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
               "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")


def _cert(key: Any, *, ca: bool | None = None, usage: set[str] | None = None) -> bytes:
    """A self-signed DER certificate with optional BasicConstraints and KeyUsage extensions."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "DSC constraints"),
                      x509.NameAttribute(NameOID.COUNTRY_NAME, "XA")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(T0 - timedelta(days=30)).not_valid_after(T0 + timedelta(days=730)))
    if ca is not None:
        constraints = x509.BasicConstraints(ca=ca, path_length=None)
        builder = builder.add_extension(constraints, critical=True)
    if usage is not None:
        flags = {flag: flag in usage for flag in USAGE_FLAGS}
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _issue(key: Any, der: bytes) -> str:
    return issue_dcc(vaccination(), key, dcc_kid(der), T0, T0 + timedelta(days=365), "XA")


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "ca": ({"ca": True}, "BasicConstraints cA=TRUE"),
    "ca_with_signing_usage": ({"ca": True, "usage": {"digital_signature", "key_cert_sign"}},
                              "BasicConstraints cA=TRUE"),
    "usage_cert_sign_only": ({"usage": {"key_cert_sign", "crl_sign"}}, "without digitalSignature"),
    "usage_non_repudiation_only": ({"usage": {"content_commitment"}}, "without digitalSignature"),
}
ACCEPTED: dict[str, dict[str, Any]] = {
    "no_extensions": {},
    "end_entity": {"ca": False},
    "digital_signature": {"ca": False, "usage": {"digital_signature"}},
    "digital_signature_and_more": {"usage": {"digital_signature", "content_commitment"}},
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_signer_that_is_not_a_dsc_is_refused_at_verification(name: str) -> None:
    extensions, why = REFUSED[name]
    key = make_key("ec")
    der = _cert(key, **extensions)
    assert why in (DccSigner.from_der(der).constraint_problem or "")
    verdict = verify(_issue(key, der), TrustStore.from_certificates([der]), AT)
    assert not verdict.valid and verdict.failure == "DCC_SIGNER_NOT_DSC"
    assert verdict.checks["signature"] is False and verdict.checks["key_usage"] is None
    assert why in verdict.extras["details"]["signature"]


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_a_document_signer_is_accepted(name: str) -> None:
    key = make_key("ec")
    der = _cert(key, **ACCEPTED[name])
    assert DccSigner.from_der(der).constraint_problem is None
    assert verify(_issue(key, der), TrustStore.from_certificates([der]), AT).valid


@pytest.mark.parametrize("name", sorted(REFUSED) + sorted(ACCEPTED))
def test_the_lenient_reader_sees_the_same_constraints(name: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Certificates that strict parsers reject are read leniently: same verdict on constraints."""
    extensions = REFUSED[name][0] if name in REFUSED else ACCEPTED[name]
    der = _cert(make_key("ec"), **extensions)
    strict = DccSigner.from_der(der).constraint_problem
    fields = parse_certificate(der)
    assert fields.ca is bool(extensions.get("ca"))
    usage = extensions.get("usage")
    assert fields.digital_signature == (None if usage is None else "digital_signature" in usage)

    def reject(_: bytes) -> x509.Certificate:
        raise ValueError("strict parser refuses this certificate")

    monkeypatch.setattr(x509, "load_der_x509_certificate", reject)
    assert DccSigner.from_der(der).constraint_problem == strict


def test_a_document_signer_sharing_the_kid_still_verifies() -> None:
    """Kids can collide: a CA certificate under the kid must not hide the real DSC."""
    key = make_key("ec")
    dsc, ca = _cert(key), _cert(key, ca=True)
    trust = TrustStore()
    trust.add_dcc_signer(ca, kid=dcc_kid(dsc))  # tried first, verifies, but is no DSC
    trust.add_dcc_signer(dsc)
    verdict = verify(_issue(key, dsc), trust, AT)
    assert verdict.valid, verdict.failure


def _entry(der: bytes) -> dict[str, str]:
    return {"kid": base64.b64encode(dcc_kid(der)).decode(), "country": "XA",
            "certificateType": "DSC", "rawData": base64.b64encode(der).decode(),
            "signature": "", "thumbprint": hashlib.sha256(der).hexdigest(),
            "timestamp": "2021-06-01T00:00:00Z"}


def test_trust_list_skips_each_non_dsc_alone_and_reports_it() -> None:
    anchor = make_key("ec")
    good_key, ca_key, usage_key = make_key("ec"), make_key("ec"), make_key("ec")
    good = _cert(good_key, ca=False, usage={"digital_signature"})
    ca = _cert(ca_key, ca=True, usage={"key_cert_sign", "crl_sign"})
    no_signing = _cert(usage_key, usage={"key_encipherment"})
    data = json.dumps({"certificates": [_entry(ca), _entry(good), _entry(no_signing)]}).encode()
    trust = TrustStore()
    report = ingest_signer_list(trust, data, anchor.sign(data, ec.ECDSA(hashes.SHA256())),
                                [anchor.public_key()], AT)
    assert report.accepted == 1 and len(report.skipped) == 2
    assert "entry 0" in report.skipped[0] and "cA=TRUE" in report.skipped[0]
    assert "entry 2" in report.skipped[1] and "digitalSignature" in report.skipped[1]
    assert list(trust.dcc_signers) == [dcc_kid(good)]
    assert verify(_issue(good_key, good), trust, AT).valid
    assert verify(_issue(ca_key, ca), trust, AT).failure == "DCC_KID_UNKNOWN"


def test_trust_folder_skips_a_non_dsc_certificate_and_keeps_the_others(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good_key, ca_key = make_key("ec"), make_key("ec")
    good, ca = _cert(good_key), _cert(ca_key, ca=True)
    (tmp_path / "dcc-certs").mkdir()
    (tmp_path / "dcc-certs" / "a-ca.der").write_bytes(ca)
    (tmp_path / "dcc-certs" / "b-good.der").write_bytes(good)
    with caplog.at_level(logging.WARNING):
        trust = load_trust_dir(tmp_path)
    assert list(trust.dcc_signers) == [dcc_kid(good)]
    assert verify(_issue(good_key, good), trust, AT).valid
    assert any("a-ca.der" in r.getMessage() and "cA=TRUE" in r.getMessage() for r in caplog.records)


def _case(shared_data: Path, name: str) -> dict[str, Any]:
    return json.loads((shared_data / "dcc-testdata" / name).read_text("utf-8"))


def test_lv_test_signer_is_a_ca_and_is_refused(shared_data: Path) -> None:
    """The known case in the EU test data: LV's test DCCs are signed by a CA certificate
    (cA=TRUE, KeyUsage keyCertSign|cRLSign). Policy: refused; listed in the conformance test's
    OUR_FINDINGS."""
    for n in (1, 2, 3):
        case = _case(shared_data, f"LV/2DCode/raw/{n}.json")
        der = base64.b64decode(case["TESTCTX"]["CERTIFICATE"])
        verdict = verify(case["PREFIX"], TrustStore.from_certificates([der]),
                         parse_iso8601(case["TESTCTX"]["VALIDATIONCLOCK"]))
        assert verdict.failure == "DCC_SIGNER_NOT_DSC", (n, verdict.failure)


def test_fi_signer_with_an_encoded_default_is_still_a_dsc(shared_data: Path) -> None:
    """FI's DSCs encode BasicConstraints cA FALSE explicitly (strict parsers refuse the DER): the
    lenient reader must read it as not-a-CA, and the DCC verifies."""
    case = _case(shared_data, "FI/2DCode/raw/1.json")
    der = base64.b64decode(case["TESTCTX"]["CERTIFICATE"])
    assert parse_certificate(der).ca is False
    assert DccSigner.from_der(der).constraint_problem is None
    verdict = verify(case["PREFIX"], TrustStore.from_certificates([der]),
                     parse_iso8601(case["TESTCTX"]["VALIDATIONCLOCK"]))
    assert verdict.checks["signature"] is True
