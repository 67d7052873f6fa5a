"""DCC trust data: revocation hashes and lookup, signed signer lists, the trust folder, rules."""
from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.credentials import TrustStore, verify
from firmware.credentials.base45 import b45decode
from firmware.credentials.dcc import codec
from firmware.demo.issuers.dcc import issue_dcc
from firmware.credentials.dcc.pipeline import decode_dcc_sign1
from firmware.credentials.dcc.revocation import RevocationList, dcc_hashes, hash_entry
from firmware.credentials.dcc.trustlist import TrustListError, ingest_signer_list
from firmware.credentials.store import TrustDataError, load_trust_dir
from firmware.credentials.trust import dcc_kid
from fleet.trust import build_envelope
from tests.dcc_helpers import T0, make_cert, make_key, vaccination

AT = T0 + timedelta(days=10)


def _issue(key: object, der: bytes, dcc: dict | None = None) -> str:
    return issue_dcc(dcc or vaccination(), key, dcc_kid(der), T0, T0 + timedelta(days=365), "AT")


# --- revocation ------------------------------------------------------------------------------
def test_revocation_hashes_match_the_sample_data(shared_data: Path) -> None:
    samples = json.loads((shared_data / "dcc-spec/RevocationCalculationSampleData.json").read_text())
    assert len(samples) == 3
    for sample in samples:
        sign1 = decode_dcc_sign1(codec.inflate(b45decode(sample["barcodeData"][4:])))
        claims = codec.decode_claims(sign1.payload)
        entry = next(claims.dcc[k][0] for k in "vtr" if k in claims.dcc)
        hashes_ = dcc_hashes(entry["ci"], claims.iss, sign1)
        assert hashes_["UCI"].hex() == sample["expUCI"]
        assert hashes_["COUNTRYCODEUCI"].hex() == sample["expCOUNTRYCODEUCI"]
        assert hashes_["SIGNATURE"].hex() == sample["expSIGNATURE"], sample["description"]


@pytest.mark.parametrize("kind", ["UCI", "COUNTRYCODEUCI", "SIGNATURE"])
def test_revoked_dcc_is_refused_by_each_hash_type(kind: str) -> None:
    key = make_key("ec")
    der = make_cert(key)
    text = _issue(key, der)
    trust = TrustStore.from_certificates([der])
    verdict = verify(text, trust, AT)
    assert verdict.valid
    sign1 = decode_dcc_sign1(codec.inflate(b45decode(text[4:])))
    digest = dcc_hashes(verdict.credential_id, "AT", sign1)[kind]
    noise = [hash_entry(os.urandom(8)) for _ in range(1000)]
    trust.dcc_revocation = RevocationList.from_hashes({kind: noise + [digest]})
    verdict = verify(text, trust, AT)
    assert verdict.failure == "DCC_REVOKED" and verdict.checks["revocation"] is False
    trust.dcc_revocation = RevocationList.from_hashes({kind: noise})
    verdict = verify(text, trust, AT)
    assert verdict.valid and verdict.checks["revocation"] is True


def test_revocation_list_lookup_save_and_mmap(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    entries = [bytes(b) for b in rng.integers(0, 256, size=(50_000, 16), dtype=np.uint8)]
    # two entries sharing their high 8 bytes exercise the low-half scan
    twin_a, twin_b = b"\x01" * 8 + b"\x02" * 8, b"\x01" * 8 + b"\x03" * 8
    revs = RevocationList.from_hashes({"UCI": entries + [twin_a, twin_b]})
    assert len(revs) == 50_002
    revs.save(tmp_path)
    loaded = RevocationList.load(tmp_path)
    assert isinstance(loaded.tables["UCI"], np.memmap)
    for lst in (revs, loaded):
        assert all(lst.contains("UCI", e) for e in entries[:200])
        assert lst.contains("UCI", twin_a) and lst.contains("UCI", twin_b)
        assert not lst.contains("UCI", b"\x01" * 8 + b"\x04" * 8)
        assert not lst.contains("SIGNATURE", entries[0])
        assert not any(lst.contains("UCI", bytes(b)) for b in rng.integers(0, 256, (200, 16), dtype=np.uint8))


def test_revocation_json_form_and_bad_input() -> None:
    digest = hash_entry(b"x")
    revs = RevocationList.from_json({"UCI": [digest.hex()], "SIGNATURE": [base64.b64encode(digest).decode()]})
    assert revs.contains("UCI", digest) and revs.contains("SIGNATURE", digest)
    for bad in ({"NOPE": []}, {"UCI": [12]}, {"UCI": ["abcd"]}, []):
        with pytest.raises(ValueError):
            RevocationList.from_json(bad)


# --- signed signer lists ---------------------------------------------------------------------
def _entry(der: bytes, country: str = "AT", **override: str) -> dict:
    entry = {"kid": base64.b64encode(dcc_kid(der)).decode(), "country": country,
             "certificateType": "DSC", "rawData": base64.b64encode(der).decode(),
             "signature": "", "thumbprint": hashlib.sha256(der).hexdigest(),
             "timestamp": "2021-06-01T00:00:00Z"}
    entry.update(override)
    return entry


def _signed(document: dict, anchor_key: ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    data = json.dumps(document).encode()
    return data, anchor_key.sign(data, ec.ECDSA(hashes.SHA256()))


def test_signer_list_ingest_checks_signature_kid_and_thumbprint() -> None:
    anchor = make_key("ec")
    good_key, other_der = make_key("ec"), make_cert(make_key("ec"))
    good_der = make_cert(good_key)
    document = {"certificates": [
        _entry(good_der),
        _entry(other_der, kid=base64.b64encode(b"12345678").decode()),  # kid of another cert
        _entry(other_der, thumbprint="00" * 32),                       # wrong thumbprint
        _entry(other_der, certificateType="CSCA"),                     # not a signer
    ]}
    data, signature = _signed(document, anchor)
    trust = TrustStore()
    report = ingest_signer_list(trust, data, signature, [anchor.public_key()], AT)
    assert report.accepted == 1 and len(report.skipped) == 3
    assert list(trust.dcc_signers) == [dcc_kid(good_der)] and trust.updated_at == AT
    assert trust.dcc_signers[dcc_kid(good_der)][0].country == "AT"
    assert verify(_issue(good_key, good_der), trust, AT).valid


def test_signer_list_with_bad_signature_leaves_the_store_unchanged() -> None:
    anchor, intruder = make_key("ec"), make_key("ec")
    old_der = make_cert(make_key("ec"))
    trust = TrustStore.from_certificates([old_der])
    before = trust.dcc_signers
    data, signature = _signed({"certificates": [_entry(make_cert(make_key("ec")))]}, intruder)
    with pytest.raises(TrustListError):
        ingest_signer_list(trust, data, signature, [anchor.public_key()], AT)
    with pytest.raises(TrustListError):
        ingest_signer_list(trust, data, None, [anchor.public_key()], AT)
    with pytest.raises(TrustListError):
        ingest_signer_list(trust, data, signature, [], AT)
    tampered = data.replace(b'"AT"', b'"XX"')
    good_sig = anchor.sign(data, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(TrustListError):
        ingest_signer_list(trust, tampered, good_sig, [anchor.public_key()], AT)
    assert trust.dcc_signers is before and trust.updated_at is None


# --- the trust folder ------------------------------------------------------------------------
def test_load_trust_dir_with_every_part(tmp_path: Path, shared_data: Path) -> None:
    anchor = make_key("ec")
    key = make_key("ec")
    der = make_cert(key)
    data, signature = _signed({"certificates": [_entry(der)]}, anchor)
    (tmp_path / "dcc-signers.json").write_bytes(data)
    (tmp_path / "dcc-signers.json.sig").write_text(base64.b64encode(signature).decode())
    (tmp_path / "dcc-trust-anchors").mkdir()
    (tmp_path / "dcc-trust-anchors" / "anchor.pem").write_bytes(anchor.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    valuesets = {}
    for path in (shared_data / "dcc-spec/valuesets").glob("*.json"):
        document = json.loads(path.read_text())
        if "valueSetId" in document:
            valuesets[document["valueSetId"]] = document
    (tmp_path / "dcc-valuesets.json").write_text(json.dumps(valuesets))
    RevocationList.from_hashes({"UCI": [hash_entry(b"someone else")]}).save(tmp_path / "dcc-revocation")
    rules = [{"Identifier": "VR-AT-0001", "Type": "Acceptance", "Country": "AT", "Version": "1.0.0",
              "SchemaVersion": "1.3.0", "Engine": "CERTLOGIC", "EngineVersion": "1.0.0",
              "CertificateType": "Vaccination", "Description": [{"lang": "en", "desc": "full course"}],
              "ValidFrom": "2021-01-01T00:00:00Z", "ValidTo": "2030-01-01T00:00:00Z",
              "AffectedFields": ["v.0.dn", "v.0.sd"],
              "Logic": {"if": [{"var": "payload.v.0"},
                               {">=": [{"var": "payload.v.0.dn"}, {"var": "payload.v.0.sd"}]}, True]}}]
    (tmp_path / "dcc-rules.json").write_text(json.dumps(rules))
    trust = load_trust_dir(tmp_path, country="AT")
    assert trust.updated_at is not None and len(trust.dcc_rules) == 1
    verdict = verify(_issue(key, der), trust, AT)
    assert verdict.valid, verdict.extras
    assert all(verdict.checks[stage] is True for stage in verdict.checks)
    partial = vaccination()
    partial["v"][0]["dn"] = 1
    verdict = verify(_issue(key, der, partial), trust, AT)
    assert verdict.failure == "DCC_RULES_FAILED" and verdict.checks["rules"] is False


def test_rules_loaded_without_a_country_deny(tmp_path: Path) -> None:
    key = make_key("ec")
    der = make_cert(key)
    trust = TrustStore.from_certificates([der])
    from firmware.credentials import certlogic
    trust.dcc_rules = certlogic.parse_rules([])
    assert verify(_issue(key, der), trust, AT).valid  # an empty rule set: stage not run
    trust.dcc_rules = ["placeholder"]
    assert verify(_issue(key, der), trust, AT).failure == "DCC_RULES_UNAVAILABLE"


def test_load_trust_dir_refuses_unsigned_lists_and_names_bad_files(tmp_path: Path) -> None:
    der = make_cert(make_key("ec"))
    (tmp_path / "dcc-signers.json").write_text(json.dumps({"certificates": [_entry(der)]}))
    refused = load_trust_dir(tmp_path)  # unsigned: no signer of it trusted, and said so
    assert not refused.dcc_signers and "dcc-signers.json" in refused.problems[0]
    (tmp_path / "dcc-signers.json").unlink()
    (tmp_path / "dcc-certs").mkdir()
    (tmp_path / "dcc-certs" / "bad.der").write_bytes(b"not a certificate")
    skipped = load_trust_dir(tmp_path)
    assert not skipped.dcc_signers and "bad.der" in skipped.problems[0]
    (tmp_path / "dcc-certs" / "bad.der").write_bytes(der)
    assert dcc_kid(der) in load_trust_dir(tmp_path).dcc_signers
    with pytest.raises(TrustDataError):
        load_trust_dir(tmp_path / "missing")


def test_enveloped_signer_list_and_sync_state(tmp_path: Path) -> None:
    """The fleet-envelope form of dcc-signers.json, and updated_at from the sync state."""
    anchor, key = make_key("ec"), make_key("ec")
    der = make_cert(key)
    data, signature = _signed({"certificates": [_entry(der)]}, anchor)
    fleet_key = Ed25519PrivateKey.generate()
    content = {"list": base64.b64encode(data).decode(),
               "signature": base64.b64encode(signature).decode()}
    (tmp_path / "dcc-signers.json").write_bytes(
        build_envelope(fleet_key, "dcc-signers", 3, content, datetime(2021, 6, 1, tzinfo=timezone.utc)))
    (tmp_path / "dcc-trust-anchors").mkdir()
    (tmp_path / "dcc-trust-anchors" / "a.der").write_bytes(anchor.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "trust-state.json").write_text(json.dumps(
        {"items": {"dcc-signers": {"checked_at": "2021-06-05T12:00:00+00:00"}}}))
    trust = load_trust_dir(tmp_path, pinned_keys=[fleet_key.public_key()])
    assert trust.updated_at.isoformat() == "2021-06-05T12:00:00+00:00"
    assert verify(_issue(key, der), trust, AT).valid
    # an envelope means nothing unless its signature is checked: without a pinned key, refused
    unpinned = load_trust_dir(tmp_path)
    assert not unpinned.dcc_signers and "no pinned fleet key" in unpinned.problems[0]
    assert verify(_issue(key, der), unpinned, AT).failure == "DCC_KID_UNKNOWN"
    foreign = load_trust_dir(tmp_path, pinned_keys=[Ed25519PrivateKey.generate().public_key()])
    assert not foreign.dcc_signers and "envelope rejected" in foreign.problems[0]


def test_revocation_json_is_cached_as_memory_mapped_tables(tmp_path: Path) -> None:
    listed = hash_entry(b"revoked uvci")
    (tmp_path / "dcc-revocation.json").write_text(json.dumps({"UCI": [listed.hex()]}))
    first = load_trust_dir(tmp_path).dcc_revocation
    assert first.contains("UCI", listed)
    caches = list((tmp_path / ".dcc-revocation-cache").iterdir())
    assert len(caches) == 1 and (caches[0] / "UCI.npy").exists()
    second = load_trust_dir(tmp_path).dcc_revocation
    assert isinstance(second.tables["UCI"], np.memmap) and second.contains("UCI", listed)
    other = hash_entry(b"another")
    (tmp_path / "dcc-revocation.json").write_text(json.dumps({"UCI": [other.hex()]}))
    third = load_trust_dir(tmp_path).dcc_revocation
    assert third.contains("UCI", other) and not third.contains("UCI", listed)
    assert len(list((tmp_path / ".dcc-revocation-cache").iterdir())) == 1


def test_undecidable_rule_denies() -> None:
    from firmware.credentials import certlogic
    key = make_key("ec")
    der = make_cert(key)
    trust = TrustStore.from_certificates([der])
    trust.dcc_country = "AT"
    rule = {"Identifier": "GR-AT-0001", "Type": "Acceptance", "Country": "AT", "Version": "1.0.0",
            "SchemaVersion": "1.3.0", "Engine": "CERTLOGIC", "EngineVersion": "1.0.0",
            "CertificateType": "General", "Description": [{"lang": "en", "desc": "odd"}],
            "ValidFrom": "2021-01-01T00:00:00Z", "ValidTo": "2030-01-01T00:00:00Z",
            "AffectedFields": [], "Logic": {"var": "payload.v.0.dn"}}  # a number, not a boolean
    trust.dcc_rules = certlogic.parse_rules([rule])
    verdict = verify(_issue(key, der), trust, AT)
    assert verdict.failure == "DCC_RULES_OPEN" and verdict.checks["rules"] is False
    trust.dcc_country = "DE"  # no rule of the kiosk's country applies: the stage passes
    verdict = verify(_issue(key, der), trust, AT)
    assert verdict.valid and verdict.checks["rules"] is True


def test_published_rules_declaring_engine_0_7_5_pass_a_good_dcc(tmp_path: Path) -> None:
    """The field case of issue 11: rules as member states publish them (EngineVersion 0.7.5)
    used to run OPEN, so every DCC was denied with DCC_RULES_OPEN."""
    key = make_key("ec")
    der = make_cert(key)
    (tmp_path / "dcc-certs").mkdir()
    (tmp_path / "dcc-certs" / "signer.der").write_bytes(der)
    rules = [{"Identifier": f"VR-{country}-0001", "Type": "Acceptance", "Country": country,
              "Version": "1.0.1", "SchemaVersion": "1.0.0", "Engine": "CERTLOGIC",
              "EngineVersion": engine, "CertificateType": "Vaccination",
              "Description": [{"lang": "en", "desc": "full course"}],
              "ValidFrom": "2021-06-01T00:00:00Z", "ValidTo": "2030-06-01T00:00:00Z",
              "AffectedFields": ["v.0.dn", "v.0.sd"],
              "Logic": {"if": [{"var": "payload.v.0"},
                               {">=": [{"var": "payload.v.0.dn"}, {"var": "payload.v.0.sd"}]}, True]}}
             for country, engine in (("AT", "0.7.5"), ("DE", "1.0.0"), ("IT", "1.3.0"))]
    (tmp_path / "dcc-rules.json").write_text(json.dumps(rules))
    for country in ("AT", "DE", "IT"):
        trust = load_trust_dir(tmp_path, country=country)
        verdict = verify(_issue(key, der), trust, AT)
        assert verdict.valid and verdict.checks["rules"] is True, (country, verdict.failure)
        assert "1 rule(s)" in verdict.extras["details"]["rules"]
