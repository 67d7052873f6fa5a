"""EU DCC verifier: self-issued credentials through every stage, both algorithms, odd certs."""
from __future__ import annotations

import base64
import json
import zlib
from datetime import timedelta
from pathlib import Path

import cbor2
import pytest

from firmware.credentials import TrustStore, verify
from firmware.credentials.base45 import Base45Error, b45decode, b45encode
from firmware.credentials.dcc.clock import parse_iso8601
from firmware.demo.issuers.dcc import cwt_payload, encode_hc1, issue_dcc, sign1
from firmware.credentials.dcc.signer import DccSigner
from firmware.credentials.reasons import REASONS
from firmware.credentials.trust import dcc_kid
from tests.dcc_helpers import OID_RECOVERY, OID_TEST, OID_VACC, T0, lab_test_dcc, make_cert, make_key, vaccination

ISSUED, EXPIRES, AT = T0, T0 + timedelta(days=365), T0 + timedelta(days=10)


@pytest.fixture(scope="module")
def ec_signer() -> tuple[object, bytes]:
    key = make_key("ec")
    return key, make_cert(key)


def _issue(key: object, der: bytes, dcc: dict | None = None) -> str:
    return issue_dcc(dcc or vaccination(), key, dcc_kid(der), ISSUED, EXPIRES, "XA")


def test_valid_es256_passes_every_stage(ec_signer: tuple[object, bytes]) -> None:
    key, der = ec_signer
    verdict = verify(_issue(key, der), TrustStore.from_certificates([der]), AT)
    assert verdict.valid and verdict.failure is None and verdict.format == "dcc"
    assert verdict.checks == {"prefix": True, "base45": True, "zlib": True, "cose": True,
                              "cbor": True, "signature": True, "expiry": True, "key_usage": True,
                              "schema": True, "rules": None, "revocation": None}
    assert verdict.payload["dcc"]["v"][0]["dn"] == 2 and verdict.payload["iss"] == "XA"
    assert verdict.credential_id == "URN:UVCI:01:XA:TESTCASE0001#X"


def test_valid_ps256_passes() -> None:
    key = make_key("rsa")
    der = make_cert(key)
    verdict = verify(_issue(key, der), TrustStore.from_certificates([der]), AT)
    assert verdict.valid, verdict.extras


def test_forged_signature_is_refused(ec_signer: tuple[object, bytes]) -> None:
    key, der = ec_signer
    forger = make_key("ec")  # signs with a different key but names the trusted kid
    text = issue_dcc(vaccination(), forger, dcc_kid(der), ISSUED, EXPIRES)
    verdict = verify(text, TrustStore.from_certificates([der]), AT)
    assert not verdict.valid and verdict.failure == "DCC_SIGNATURE_INVALID"
    assert verdict.checks["signature"] is False and verdict.checks["key_usage"] is None


def test_several_certificates_share_a_kid(ec_signer: tuple[object, bytes]) -> None:
    key, der = ec_signer
    other_der = make_cert(make_key("ec"))
    trust = TrustStore()
    trust.add_dcc_signer(other_der, kid=dcc_kid(der))  # a kid collision: tried first, fails
    trust.add_dcc_signer(der)
    assert len(trust.dcc_signers[dcc_kid(der)]) == 2
    assert verify(_issue(key, der), trust, AT).valid


def test_kid_only_in_unprotected_header(ec_signer: tuple[object, bytes]) -> None:
    key, der = ec_signer
    cose = sign1(cwt_payload(vaccination(), ISSUED, EXPIRES), key, dcc_kid(der), kid_unprotected=True)
    assert verify(encode_hc1(cose), TrustStore.from_certificates([der]), AT).valid


def test_untagged_cose_and_unknown_kid(ec_signer: tuple[object, bytes]) -> None:
    key, der = ec_signer
    cose = sign1(cwt_payload(vaccination(), ISSUED, EXPIRES), key, dcc_kid(der), tagged=False)
    assert verify(encode_hc1(cose), TrustStore.from_certificates([der]), AT).valid
    verdict = verify(encode_hc1(cose), TrustStore(), AT)
    assert verdict.failure == "DCC_KID_UNKNOWN"


def test_rsa_key_never_verifies_es256_message() -> None:
    rsa_key = make_key("rsa")
    der = make_cert(rsa_key)
    ec_key = make_key("ec")
    text = issue_dcc(vaccination(), ec_key, dcc_kid(der), ISSUED, EXPIRES)  # alg ES256
    assert verify(text, TrustStore.from_certificates([der]), AT).failure == "DCC_SIGNATURE_INVALID"


@pytest.mark.parametrize(("at", "code"), [
    (ISSUED - timedelta(seconds=1), "DCC_NOT_YET_VALID"),
    (EXPIRES + timedelta(seconds=1), "DCC_EXPIRED"),
])
def test_clock_outside_iat_exp(ec_signer: tuple[object, bytes], at, code: str) -> None:
    key, der = ec_signer
    verdict = verify(_issue(key, der), TrustStore.from_certificates([der]), at)
    assert verdict.failure == code and verdict.checks["expiry"] is False


def test_naive_clock_is_utc(ec_signer: tuple[object, bytes]) -> None:
    key, der = ec_signer
    assert verify(_issue(key, der), TrustStore.from_certificates([der]), AT.replace(tzinfo=None)).valid


def test_dcc_outliving_its_signing_certificate_is_refused_under_covers_dcc() -> None:
    key = make_key("ec")
    der = make_cert(key, not_after=T0 + timedelta(days=100))  # DCC expires after day 365
    trust = TrustStore.from_certificates([der])
    trust.dcc_signer_validity = "covers-dcc"  # the default accepts it: test_dsc_validity_policy
    verdict = verify(_issue(key, der), trust, AT)
    assert verdict.failure == "DCC_SIGNER_VALIDITY"


@pytest.mark.parametrize(("ekus", "dcc", "ok"), [
    ([OID_VACC], vaccination(), True),
    ([OID_TEST], vaccination(), False),
    ([OID_RECOVERY, OID_TEST], lab_test_dcc(), True),
    (["1.3.6.1.4.1.0.1847.2021.1.2"], vaccination(), True),  # the other OID spelling
    (["1.3.6.1.4.1.0.1847.2021.1.1"], vaccination(), False),
    (["1.3.6.1.5.5.7.3.3"], vaccination(), True),  # no DCC OID at all: any type
    ([], vaccination(), True),  # empty EKU list: rejected by strict DER parsers
])
def test_key_usage(ekus: list[str], dcc: dict, ok: bool) -> None:
    key = make_key("ec")
    der = make_cert(key, ekus=ekus)
    verdict = verify(_issue(key, der, dcc), TrustStore.from_certificates([der]), AT)
    assert verdict.checks["signature"] is True
    assert verdict.checks["key_usage"] is ok
    assert verdict.valid is ok


def test_lenient_certificate_keeps_the_signature_check() -> None:
    key = make_key("ec")
    der = make_cert(key, ekus=[])  # strict parsers refuse its extensions
    signer = DccSigner.from_der(der)
    assert signer.eku_oids == frozenset()
    forged = issue_dcc(vaccination(), make_key("ec"), dcc_kid(der), ISSUED, EXPIRES)
    assert verify(forged, TrustStore.from_certificates([der]), AT).failure == "DCC_SIGNATURE_INVALID"


def test_real_certificate_with_encoded_default(shared_data: Path) -> None:
    case = json.loads((shared_data / "dcc-testdata/FI/2DCode/raw/1.json").read_text("utf-8"))
    der = base64.b64decode(case["TESTCTX"]["CERTIFICATE"])
    signer = DccSigner.from_der(der)  # cryptography refuses its BasicConstraints extension
    assert signer.not_before < signer.not_after
    verdict = verify(case["PREFIX"], TrustStore.from_certificates([der]),
                     parse_iso8601(case["TESTCTX"]["VALIDATIONCLOCK"]))
    assert verdict.checks["signature"] is True


def test_schema_failure_and_multiple_entries(ec_signer: tuple[object, bytes]) -> None:
    key, der = ec_signer
    bad = vaccination()
    bad["v"][0]["dn"] = "two"
    verdict = verify(_issue(key, der, bad), TrustStore.from_certificates([der]), AT)
    assert verdict.failure == "DCC_SCHEMA_INVALID" and verdict.checks["signature"] is True
    both = vaccination() | {"t": lab_test_dcc()["t"]}
    verdict = verify(_issue(key, der, both), TrustStore.from_certificates([der]), AT)
    assert verdict.failure == "DCC_SCHEMA_INVALID" and verdict.checks["key_usage"] is None


def test_value_sets_catch_unknown_codes(shared_data: Path, ec_signer: tuple[object, bytes]) -> None:
    from firmware.credentials.store import load_valuesets
    key, der = ec_signer
    trust = TrustStore.from_certificates([der])
    trust.dcc_valuesets = load_valuesets(shared_data / "dcc-spec" / "valuesets")
    assert verify(_issue(key, der), trust, AT).valid
    assert verify(_issue(key, der, vaccination(country="XX")), trust, AT).failure == "DCC_VALUESET_UNKNOWN"


@pytest.mark.parametrize("ver", ["1.0.0", "1.2.1", "1.3.0"])
@pytest.mark.parametrize("case", [7, 8, 9])
def test_value_sets_catch_pl_cases(shared_data: Path, ver: str, case: int) -> None:
    """PL 7-9 expect schema failure for bad codes; schema 1.3.x leaves that to the value sets."""
    from firmware.credentials.store import load_valuesets
    data = json.loads((shared_data / f"dcc-testdata/PL/{ver}/2DCode/raw/{case}.json").read_text("utf-8"))
    trust = TrustStore.from_certificates([base64.b64decode(data["TESTCTX"]["CERTIFICATE"])])
    at = parse_iso8601(data["TESTCTX"]["VALIDATIONCLOCK"])
    assert verify(data["PREFIX"], trust, at).checks["schema"] is True  # without value sets
    trust.dcc_valuesets = load_valuesets(shared_data / "dcc-spec" / "valuesets")
    assert verify(data["PREFIX"], trust, at).failure == "DCC_VALUESET_UNKNOWN"


def test_decompression_bomb_is_refused_cheaply() -> None:
    bomb = zlib.compress(b"\0" * (50 * 1024 * 1024), 9)  # 50 MB of zeros in ~50 KB
    verdict = verify("HC1:" + b45encode(bomb[:5000]), TrustStore(), AT)
    assert verdict.failure == "DCC_TOO_LARGE" and verdict.checks["zlib"] is False


def test_uncompressed_cose_is_refused(ec_signer: tuple[object, bytes]) -> None:
    key, der = ec_signer
    cose = sign1(cwt_payload(vaccination(), ISSUED, EXPIRES), key, dcc_kid(der))
    verdict = verify("HC1:" + b45encode(cose), TrustStore.from_certificates([der]), AT)
    assert verdict.failure == "DCC_ZLIB_INVALID"


@pytest.mark.parametrize(("text", "code"), [
    ("HC1:", "DCC_ZLIB_INVALID"),
    ("HC1:abc", "DCC_BASE45_INVALID"),
    ("HC1:A", "DCC_BASE45_INVALID"),
    ("HC1:" + "0" * 9000, "DCC_TOO_LARGE"),
    ("HC1:" + b45encode(zlib.compress(b"\xff")), "DCC_COSE_INVALID"),
    ("HC1:" + b45encode(zlib.compress(cbor2.dumps([b"", {}, cwt_payload(vaccination(), ISSUED, EXPIRES), b""]))),
     "DCC_ALG_UNSUPPORTED"),
    ("HC1:" + b45encode(zlib.compress(cbor2.dumps(cbor2.CBORTag(98, [])))), "DCC_COSE_INVALID"),
    ("HC1:" + b45encode(zlib.compress(cbor2.dumps([cbor2.dumps({1: [1, 2], 4: {"k": 1}}), {},
                                                   cwt_payload(vaccination(), ISSUED, EXPIRES), b""]))),
     "DCC_ALG_UNSUPPORTED"),
    ("HC1:" + b45encode(zlib.compress(cbor2.dumps([cbor2.dumps({1: -7, 4: [1]}), {},
                                                   cwt_payload(vaccination(), ISSUED, EXPIRES), b""]))),
     "DCC_KID_MISSING"),
])
def test_broken_inputs_have_reasons(text: str, code: str) -> None:
    verdict = verify(text, TrustStore(), AT)
    assert not verdict.valid and verdict.failure == code


def test_every_dcc_reason_code_has_a_display_message() -> None:
    import re
    source = "".join(p.read_text("utf-8") for p in Path("firmware/credentials/dcc").glob("*.py"))
    codes = set(re.findall(r'"(DCC_[A-Z0-9_]+)"', source))
    assert codes and codes <= REASONS.keys(), codes - REASONS.keys()
    assert all(len(REASONS[c]) <= 32 for c in codes)


def test_base45_known_vectors() -> None:
    assert b45encode(b"AB") == "BB8" and b45decode("BB8") == b"AB"
    assert b45encode(b"Hello!!") == "%69 VD92EX0" and b45decode("%69 VD92EX0") == b"Hello!!"
    assert b45decode("QED8WEX0") == b"ietf!"
    for bad in ("GGW", "ZZZ", "A", "a"):  # 65535+ triple, out of range, dangling, lowercase
        with pytest.raises(Base45Error):
            b45decode(bad)


@pytest.mark.parametrize("text", ["2021-07-02T07:39:53+0000", "2021-06-08T20:17:27.9906293Z",
                                  "2021-05-30T13:38:52.023853", "2021-06-10T16:10:00+02:00",
                                  "2021-05-20T20:32:03Z", "2021-06-15T12:00:00.1234+02:00"])
def test_clock_shapes(text: str) -> None:
    stamp = parse_iso8601(text)
    assert stamp.tzinfo is not None and stamp.year == 2021


def test_reason_table_in_docs_lists_every_code() -> None:
    """docs/credentials.md documents every reason code with the message the display shows."""
    text = (Path(__file__).parent.parent / "docs" / "credentials.md").read_text("utf-8")
    # Enforced for the DCC and generic codes; other formats' authors keep their own rows current.
    ours = [c for c in REASONS if c.startswith("DCC_") or c in
            ("UNKNOWN_FORMAT", "INTERNAL_ERROR", "CLOCK_UNTRUSTED", "TRUST_DATA_STALE")]
    missing = [code for code in ours if f"| `{code}` | {REASONS[code]} |" not in text]
    assert not missing, f"add these rows to the reason table in docs/credentials.md: {missing}"


@pytest.mark.parametrize("mutation", ["long_signature", "short_kid", "long_kid", "rsa_alg_on_ec"])
def test_basic_list_co24_to_co27(ec_signer: tuple[object, bytes], mutation: str) -> None:
    """BasicDgcTestsList CO24-CO27: odd signature length, kid length, wrong alg: invalid."""
    key, der = ec_signer
    kid = dcc_kid(der)
    payload = cwt_payload(vaccination(), ISSUED, EXPIRES)
    message = cbor2.loads(sign1(payload, key, kid))
    protected, unprotected, body, signature = message.value
    if mutation == "long_signature":
        signature = b"\x30\x46" + signature + b"\x00\x00\x00\x00\x00\x00"
    elif mutation in ("short_kid", "long_kid"):
        protected = cbor2.dumps({1: -7, 4: kid[:5] if mutation == "short_kid" else kid + b"\x00"})
    else:
        protected = cbor2.dumps({1: -37, 4: kid})
    forged = cbor2.dumps(cbor2.CBORTag(18, [protected, dict(unprotected), body, signature]))
    verdict = verify(encode_hc1(forged), TrustStore.from_certificates([der]), AT)
    assert not verdict.valid and verdict.checks["signature"] is False


def test_no_personal_data_in_logs_or_stdout(ec_signer: tuple[object, bytes], caplog: pytest.LogCaptureFixture,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import logging
    key, der = ec_signer
    caplog.set_level(logging.DEBUG)
    trust = TrustStore.from_certificates([der])
    texts = [_issue(key, der), _issue(make_key("ec"), der), _issue(key, der)[:-7]]
    for at in (AT, EXPIRES + timedelta(days=1)):
        for text in texts:
            verdict = verify(text, trust, at)
            assert verdict.format == "dcc"
    captured = capsys.readouterr()
    seen = caplog.text + captured.out + captured.err
    for secret in ("Muster", "MUSTER", "Erika", "1980-01-02", "TESTCASE0001"):
        assert secret not in seen
