"""SHC revocation as kiosks hold it: CRLs per (issuer, kid), and one bad CRL never blinds the rest."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from firmware.credentials import TrustStore, verify
from firmware.credentials.shc import load_trust
from firmware.demo.issuers.shc import DemoIssuer, card_claims, issue_card, new_issuer

NBF = datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()
LATER = datetime(2025, 6, 1, tzinfo=timezone.utc)
RID = "dXNlcjEyMw"


def _issuer_info(issuer: DemoIssuer, crl_version: int | None = None,
                 crls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    jwk = issuer.jwk
    if crl_version is not None:
        jwk["crlVersion"] = crl_version
    entry: dict[str, Any] = {"issuer": {"iss": issuer.iss}, "keys": [jwk]}
    if crls is not None:
        entry["crls"] = crls
    return entry


def _crl(issuer: DemoIssuer, ctr: int, rids: list[str], **extra: Any) -> dict[str, Any]:
    return {"kid": issuer.jwk["kid"], "method": "rid", "ctr": ctr, "rids": rids, **extra}


def _card(issuer: DemoIssuer, rid: str = RID) -> str:
    return issue_card(issuer, card_claims(issuer.iss, NBF, rid=rid))[0]


def test_two_issuers_sharing_a_key_each_have_their_own_crl(tmp_path: Path) -> None:
    """Issuer A revoked the card; issuer B lists the same key with a newer, empty CRL. Keyed
    by kid alone, B's CRL replaced A's and A's revoked card passed."""
    a = new_issuer("https://a.example/shc")
    b = DemoIssuer(a.key, "https://b.example/shc")  # the same key, published by two issuers
    assert a.jwk["kid"] == b.jwk["kid"]
    info = [_issuer_info(a, 1, [_crl(a, 1, [RID])]), _issuer_info(b, 1, [_crl(b, 5, [])])]
    (tmp_path / "shc-issuers.json").write_text(json.dumps({"issuerInfo": info}))
    store = TrustStore(shc=load_trust(tmp_path))
    assert verify(_card(a), store, LATER).failure == "SHC_REVOKED"
    assert verify(_card(b), store, LATER).valid  # B never revoked its card with that rid
    # The same from shc-crl.json, each CRL filed under the issuer that published it.
    (tmp_path / "shc-issuers.json").write_text(
        json.dumps({"issuerInfo": [_issuer_info(a, 1), _issuer_info(b, 1)]}))
    (tmp_path / "shc-crl.json").write_text(json.dumps({"crls": [
        _crl(b, 5, [], iss=b.iss), _crl(a, 1, [RID], iss=a.iss)]}))
    store = TrustStore(shc=load_trust(tmp_path))
    assert verify(_card(a), store, LATER).failure == "SHC_REVOKED"
    assert verify(_card(b), store, LATER).valid


def test_one_malformed_crl_is_skipped_and_reported_and_fails_only_its_key(tmp_path: Path) -> None:
    a, b, c = (new_issuer(f"https://{name}.example/shc") for name in "abc")
    info = [_issuer_info(a, 1), _issuer_info(b), _issuer_info(c)]
    (tmp_path / "shc-issuers.json").write_text(json.dumps({"issuerInfo": info}))
    (tmp_path / "shc-crl.json").write_text(json.dumps({"crls": [
        _crl(a, 1, [RID], iss=a.iss),
        _crl(b, "two", [RID], iss=b.iss),            # malformed counter: B's CRL is unusable
        _crl(c, 1, ["not a rid!"]),                  # no issuer and a bad rid: attributable to none
        "not a CRL",
    ]}))
    trust = load_trust(tmp_path)
    assert trust is not None and len(trust.problems) == 3, trust.problems
    store = TrustStore(shc=trust)
    assert verify(_card(a), store, LATER).failure == "SHC_REVOKED"      # A's CRL still applies
    assert verify(_card(a, "b3RoZXI"), store, LATER).valid
    # B published a CRL the kiosk cannot read: B's cards may be revoked in it, so B fails closed.
    assert verify(_card(b), store, LATER).failure == "SHC_CRL_UNAVAILABLE"
    assert verify(_card(c), store, LATER).valid                          # C has no CRL at all
    assert any(b.iss in problem and "denied" in problem for problem in trust.problems)


def test_a_crl_with_a_non_finite_cut_off_is_refused(tmp_path: Path) -> None:
    """`rid.nan` would make `nbf < cut-off` false for every card: the revocation would vanish."""
    a = new_issuer("https://a.example/shc")
    (tmp_path / "shc-issuers.json").write_text(json.dumps({"issuerInfo": [
        _issuer_info(a, None, [_crl(a, 1, [f"{RID}.nan"])])]}))
    trust = load_trust(tmp_path)
    assert trust is not None and trust.problems
    assert verify(_card(a), TrustStore(shc=trust), LATER).failure == "SHC_CRL_UNAVAILABLE"


def test_unreadable_trust_files_are_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "shc-issuers.json").write_text("{not json")
    (tmp_path / "shc-crl.json").write_text(json.dumps({"crls": "none"}))
    trust = load_trust(tmp_path)
    assert trust is not None and not trust.issuer_names
    assert [p.split(" ")[0] for p in trust.problems] == ["shc-issuers.json", "shc-crl.json"]
