"""Bad trust data, per loader: skipped and reported, failing closed only for the issuer it concerns."""
from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from firmware.credentials import TrustStore, verify
from firmware.demo.issuers.dcc import issue_dcc
from firmware.demo.issuers.shc import card_claims, issue_card, new_issuer
from firmware.credentials.store import load_trust_dir
from firmware.credentials.trust import dcc_kid
from tests.dcc_helpers import T0, make_cert, make_key, vaccination

AT = T0 + timedelta(days=10)
SHC_NBF = (T0 - timedelta(days=1)).timestamp()


class Issuer:
    """A DCC signer of one country, trusted through dcc-certs/."""

    def __init__(self, country: str) -> None:
        self.country = country
        self.key = make_key("ec")
        self.der = make_cert(self.key)

    def dcc(self, payload: dict[str, Any] | None = None) -> str:
        return issue_dcc(payload or vaccination(country=self.country), self.key, dcc_kid(self.der),
                         T0, T0 + timedelta(days=365), self.country)


def _trust_dir(tmp_path: Path, *issuers: Issuer) -> Path:
    (tmp_path / "dcc-certs").mkdir(exist_ok=True)
    for issuer in issuers:
        (tmp_path / "dcc-certs" / f"{issuer.country}.der").write_bytes(issuer.der)
    return tmp_path


def _rule(identifier: str, logic: Any, **fields: Any) -> dict[str, Any]:
    rule = {"Identifier": identifier, "Type": "Acceptance", "Country": identifier.split("-")[1],
            "Version": "1.0.0", "SchemaVersion": "1.0.0", "Engine": "CERTLOGIC",
            "EngineVersion": "1.0.0", "CertificateType": "General",
            "Description": [{"lang": "en", "desc": identifier}],
            "ValidFrom": "2020-01-01T00:00:00Z", "ValidTo": "2030-01-01T00:00:00Z",
            "AffectedFields": [], "Logic": logic}
    rule.update(fields)
    return rule


def test_a_bad_signer_certificate_file_skips_that_signer_only(tmp_path: Path) -> None:
    at, de = Issuer("AT"), Issuer("DE")
    _trust_dir(tmp_path, at, de)
    (tmp_path / "dcc-certs" / "DE.der").write_bytes(b"damaged in transit")
    trust = load_trust_dir(tmp_path)
    assert verify(at.dcc(), trust, AT).valid
    assert verify(de.dcc(), trust, AT).failure == "DCC_KID_UNKNOWN"
    assert len(trust.problems) == 1 and "DE.der" in trust.problems[0]


def test_a_bad_signer_list_entry_is_reported(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    anchor, at = make_key("ec"), Issuer("AT")
    entry = {"kid": base64.b64encode(dcc_kid(at.der)).decode(), "country": "AT",
             "certificateType": "DSC", "rawData": base64.b64encode(at.der).decode(),
             "signature": "", "thumbprint": hashlib.sha256(at.der).hexdigest(),
             "timestamp": "2021-06-01T00:00:00Z"}
    broken = dict(entry, rawData="not base64!", kid="AAAAAAAAAAA=")
    data = json.dumps({"certificates": [entry, broken]}).encode()
    (tmp_path / "dcc-signers.json").write_bytes(data)
    (tmp_path / "dcc-signers.json.sig").write_bytes(anchor.sign(data, ec.ECDSA(hashes.SHA256())))
    (tmp_path / "dcc-trust-anchors").mkdir()
    (tmp_path / "dcc-trust-anchors" / "anchor.pem").write_bytes(anchor.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    trust = load_trust_dir(tmp_path)
    assert verify(at.dcc(), trust, AT).valid
    assert len(trust.problems) == 1 and "dcc-signers.json: skipped" in trust.problems[0]


def test_a_malformed_rule_fails_closed_only_where_it_applies(tmp_path: Path) -> None:
    at, de = Issuer("AT"), Issuer("DE")
    _trust_dir(tmp_path, at, de)
    rules = [
        _rule("GR-NL-0001", {"if": [{"var": "payload.dob"}, True, False]}),
        _rule("IR-DE-0001", True, Type="Invalidation", ValidFrom="soon"),   # malformed, of DE
        _rule("GR-FR-0001", True, Version="one"),                           # malformed, of FR
    ]
    (tmp_path / "dcc-rules.json").write_text(json.dumps(rules))
    in_nl = load_trust_dir(tmp_path, country="NL")
    assert len(in_nl.dcc_rules) == 1 and len(in_nl.problems) == 2
    assert verify(at.dcc(), in_nl, AT).valid            # AT's holders are judged by good rules
    # DE's invalidation rule could have revoked this DCC: DE's holders are denied, not passed.
    verdict = verify(de.dcc(), in_nl, AT)
    assert verdict.failure == "DCC_RULES_UNAVAILABLE"
    # A kiosk in FR cannot apply its own acceptance rules: every DCC is denied there.
    in_fr = load_trust_dir(tmp_path, country="FR")
    assert verify(at.dcc(), in_fr, AT).failure == "DCC_RULES_UNAVAILABLE"
    # A rule whose country cannot be read could be any country's: every DCC is denied.
    (tmp_path / "dcc-rules.json").write_text(json.dumps(rules[:1] + [_rule("GR-XX-0002", True,
                                                                          Country=None)]))
    assert verify(at.dcc(), load_trust_dir(tmp_path, country="NL"), AT).failure \
        == "DCC_RULES_UNAVAILABLE"


def test_unreadable_value_sets_deny_through_the_rules_that_need_them(tmp_path: Path) -> None:
    at = Issuer("AT")
    _trust_dir(tmp_path, at)
    (tmp_path / "dcc-valuesets.json").write_text("{broken")
    (tmp_path / "dcc-rules.json").write_text(json.dumps([_rule("VR-NL-0001", {"in": [
        {"var": "payload.v.0.mp"}, {"var": "external.valueSets.vaccines-covid-19-names"}]})]))
    trust = load_trust_dir(tmp_path, country="NL")
    assert trust.dcc_valuesets == {} and "dcc-valuesets" in trust.problems[0]
    assert verify(at.dcc(), trust, AT).failure == "DCC_RULES_OPEN"


def test_a_bad_revocation_entry_denies_rather_than_drops_the_list(tmp_path: Path) -> None:
    at = Issuer("AT")
    _trust_dir(tmp_path, at)
    (tmp_path / "dcc-revocation.json").write_text(json.dumps({"UCI": ["00" * 16, "not a hash"]}))
    issuer = new_issuer()
    (tmp_path / "shc-issuers.json").write_text(json.dumps({"issuerInfo": [
        {"issuer": {"iss": issuer.iss}, "keys": [issuer.jwk]}]}))
    trust = load_trust_dir(tmp_path)
    # The entries name no issuer: the list cannot be trusted for anyone, and dropping it would
    # accept revoked certificates. Other formats are untouched.
    assert verify(at.dcc(), trust, AT).failure == "DCC_REVOCATION_UNAVAILABLE"
    card = issue_card(issuer, card_claims(issuer.iss, SHC_NBF))[0]
    assert verify(card, trust, AT).valid
    assert any("DCC_REVOCATION_UNAVAILABLE" in problem for problem in trust.problems)


def test_a_bad_dcc_file_never_blinds_the_other_formats(tmp_path: Path) -> None:
    issuer = new_issuer()
    (tmp_path / "shc-issuers.json").write_text(json.dumps({"issuerInfo": [
        {"issuer": {"iss": issuer.iss}, "keys": [issuer.jwk]}]}))
    (tmp_path / "dcc-rules.json").write_text("not json")
    (tmp_path / "dcc-trust-anchors").mkdir()
    (tmp_path / "dcc-trust-anchors" / "bad.pem").write_text("not a key")
    trust = load_trust_dir(tmp_path, country="NL")
    card = issue_card(issuer, card_claims(issuer.iss, SHC_NBF))[0]
    assert verify(card, trust, AT).valid
    assert {p.split(":")[0].split("/")[0] for p in trust.problems} == {"dcc-trust-anchors",
                                                                       "dcc-rules.json"}


def test_nzcp_issuer_entries_are_skipped_one_by_one(tmp_path: Path) -> None:
    from firmware.credentials.nzcp import load_trust

    (tmp_path / "nzcp-issuers.json").write_text(json.dumps(
        {"trusted_issuers": ["did:web:a.example", 42], "did_documents": []}))
    trust = load_trust(tmp_path)
    assert trust is not None and trust.trusted_issuers == {"did:web:a.example"}
    assert trust.problems


def test_problems_of_every_format_reach_the_store(tmp_path: Path) -> None:
    (tmp_path / "shc-crl.json").write_text(json.dumps({"crls": [{"kid": "k"}]}))
    (tmp_path / "status-issuers.json").write_text(json.dumps({"keys": [{"issuer": "x"}]}))
    trust = load_trust_dir(tmp_path)
    assert sorted(p.split(":")[0] for p in trust.problems) == ["shc", "status"]


def test_kiosk_logs_the_problems_of_the_trust_it_uses(tmp_path: Path) -> None:
    from firmware.eventlog.outbox import Outbox
    from tests.kiosk_harness import make_rig

    rig = make_rig(tmp_path, trust_problems=["shc: shc-crl.json entry #1 refused: ctr"])
    try:
        events = [e for e in Outbox(rig.eventlog).pending(limit=100, newest_first=False)
                  if e.kind == "trust_problems"]
        assert len(events) == 1
        assert events[0].body == {"count": 1, "problems": ["shc: shc-crl.json entry #1 refused: ctr"]}
    finally:
        rig.stop()


def test_check_prints_the_trust_problems(tmp_path: Path) -> None:
    import io

    from firmware.credentials.check import main

    at = Issuer("AT")
    _trust_dir(tmp_path, at)
    (tmp_path / "dcc-certs" / "DE.der").write_bytes(b"damaged")
    out = io.StringIO()
    code = main([at.dcc(), "--trust", str(tmp_path), "--at", AT.isoformat()], out)
    assert code == 0 and "trust problem: dcc-certs/DE.der skipped" in out.getvalue()




def test_a_refused_status_record_keeps_the_cache_from_looking_fresh(tmp_path: Path) -> None:
    """A partial sync whose record for a subject is refused must not vouch for the subject's
    older cached record: the cache keeps its sync time and turns stale."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from firmware.credentials.status import load_trust
    from firmware.demo.issuers.status import issue_status_code
    from firmware.credentials.status.records import StatusRecord, records_content
    from firmware.demo.issuers.status import sign_status_record

    at = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
    now, kid, issuer, subject = int(at.timestamp()), b"k1", "hg-test", bytes(16)
    signer = ec.generate_private_key(ec.SECP256R1())
    pem = signer.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    (tmp_path / "status-issuers.json").write_text(json.dumps({"max_cache_age_seconds": 3600, "keys": [
        {"issuer": issuer, "kid": base64.urlsafe_b64encode(kid).decode().rstrip("="),
         "public_key_pem": pem}]}))

    def sync(blobs: list[bytes], complete: bool, checked: datetime) -> Any:
        (tmp_path / "status-records.json").write_text(json.dumps(records_content(blobs, complete=complete)))
        (tmp_path / "trust-state.json").write_text(json.dumps(
            {"items": {"status-records": {"checked_at": checked.isoformat()}}}))
        return load_trust(tmp_path)

    green = StatusRecord(issuer=issuer, subject=subject, colour="green", issued_at=now - 7200,
                         valid_until=now + 86400)
    code = issue_status_code(signer, kid=kid, issuer=issuer, subject=subject, issued_at=now - 60)
    first = sync([sign_status_record(green, signer, kid=kid)], True, at - timedelta(hours=2))
    assert first is not None and not first.problems
    # Two hours later a partial sync brings a record the kiosk refuses (damaged or forged).
    later = sync([b"damaged record"], False, at)
    assert later is not None and "records refused" in later.problems[0]
    assert later.cache is not None and later.cache.synced_at == at - timedelta(hours=2)
    assert verify(code, TrustStore(status=later), at).failure == "STATUS_CACHE_STALE"


def test_the_largest_trust_problems_event_fits_the_event_schema() -> None:
    from firmware.kiosk import MAX_TRUST_PROBLEMS_LOGGED, TRUST_PROBLEM_CHARS
    from firmware.protocol.events import check_body

    worst = ['"' * TRUST_PROBLEM_CHARS] * MAX_TRUST_PROBLEMS_LOGGED  # every character escaped
    check_body("trust_problems", {"count": 10_000, "problems": worst})
