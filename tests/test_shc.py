"""SMART Health Cards: the spec's examples, chunk assembly, trust loading, CRLs and every deny path."""
from __future__ import annotations

import itertools
import json
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from firmware.credentials import TrustStore, verify
from firmware.demo.issuers.cose import es256_sign
from firmware.credentials.shc import load_trust
from firmware.credentials.shc.chunks import COMPLETE, EXPIRED, INVALID, PENDING, ChunkAssembler
from firmware.credentials.shc.codec import (
    b64url_encode,
    deflate_raw,
    jwk_thumbprint,
    jws_to_numeric,
    jws_to_qr_texts,
)
from firmware.demo.issuers.shc import sign_compact_jws
from firmware.demo.issuers.shc import card_claims, issue_card, new_issuer
from firmware.credentials.shc.trust import ShcTrust, ShcTrustError, parse_crl, verify_vci_snapshot

EXAMPLE_ISSUER = "https://spec.smarthealth.cards/examples/issuer"
# Inside every example's validity: nbf 2023-06-22; example 03 expires 2024-06-21.
AT = datetime(2024, 1, 1, tzinfo=timezone.utc)
NBF = datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()
LATER = datetime(2025, 6, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def shc_dir(shared_data: Path) -> Path:
    return shared_data / "shc-examples"


@pytest.fixture(scope="module")
def example_trust_dir(shc_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trust cache directory as the sync client would write it: JWKS + CRL + VCI snapshot."""
    directory = tmp_path_factory.mktemp("shc-trust")
    jwks = json.loads((shc_dir / "examples/issuer/.well-known/jwks.json").read_text())
    # Each CRL as fetched from <iss>/.well-known/crl/<kid>.json, filed under its issuer.
    crls = [dict(json.loads(p.read_text()), iss=EXAMPLE_ISSUER)
            for p in (shc_dir / "examples/issuer/.well-known/crl").glob("*.json")]
    issuers = {"issuerInfo": [{"issuer": {"iss": EXAMPLE_ISSUER, "name": "SMART example issuer"},
                               "keys": jwks["keys"]}]}
    (directory / "shc-issuers.json").write_text(json.dumps(issuers))
    (directory / "shc-crl.json").write_text(json.dumps({"crls": crls}))
    for name in ("vci_snapshot.json", "vci_snapshot.sig", "vci_snapshot.crt"):
        shutil.copy(shc_dir / "vci-directory" / name, directory / name)
    return directory


@pytest.fixture(scope="module")
def example_store(example_trust_dir: Path) -> TrustStore:
    trust = load_trust(example_trust_dir)
    assert trust is not None
    return TrustStore(shc=trust)


def example_texts(shc_dir: Path, number: str) -> list[str]:
    files = sorted((shc_dir / "examples").glob(f"example-{number}-f-qr-code-numeric-value-*.txt"))
    return [f.read_text().strip() for f in files]


def assemble(texts: list[str]) -> str:
    assembler = ChunkAssembler(clock=lambda: 0.0)
    result = None
    for text in texts:
        result = assembler.feed(text)
    assert result is not None and result.status == COMPLETE
    assert result.text is not None
    return result.text


@pytest.mark.parametrize("number, valid, failure", [
    ("00", True, None), ("01", True, None), ("02", True, None), ("03", False, "SHC_REVOKED"),
])
def test_spec_examples(shc_dir: Path, example_store: TrustStore, number: str, valid: bool,
                       failure: str | None) -> None:
    verdict = verify(assemble(example_texts(shc_dir, number)), example_store, AT)
    assert (verdict.valid, verdict.failure) == (valid, failure)
    assert verdict.format == "shc"
    assert verdict.checks["signature"] is True  # 03 is genuine, only revoked
    expected = json.loads((shc_dir / f"examples/example-{number}-b-jws-payload-expanded.json").read_text())
    assert verdict.payload == expected
    rid = expected["vc"].get("rid")
    if rid:
        assert verdict.credential_id == f"rid:{rid}"
    else:
        assert (verdict.credential_id or "").startswith("jws-sha256:")
    assert verdict.credential_id


def test_example_jws_matches_numeric_qr(shc_dir: Path) -> None:
    for number in ("00", "01", "03"):
        jws = (shc_dir / f"examples/example-{number}-d-jws.txt").read_text().strip()
        assert example_texts(shc_dir, number) == ["shc:/" + jws_to_numeric(jws)]


def test_example_03_expires(shc_dir: Path, example_store: TrustStore) -> None:
    verdict = verify(example_texts(shc_dir, "03")[0], example_store, datetime(2024, 7, 1, tzinfo=timezone.utc))
    assert verdict.failure == "SHC_EXPIRED"


def test_examples_not_yet_valid(shc_dir: Path, example_store: TrustStore) -> None:
    verdict = verify(example_texts(shc_dir, "00")[0], example_store, datetime(2023, 1, 1, tzinfo=timezone.utc))
    assert verdict.failure == "SHC_NOT_YET_VALID"


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_three_chunk_card_any_order(shc_dir: Path, example_store: TrustStore, order: tuple[int, ...]) -> None:
    texts = example_texts(shc_dir, "02")
    assembler = ChunkAssembler(clock=lambda: 0.0)
    results = [assembler.feed(texts[i]) for i in order]
    assert [r.status for r in results] == [PENDING, PENDING, COMPLETE]
    assert results[1].received == 2 and results[1].total == 3
    assert verify(results[2].text or "", example_store, AT).valid


def test_single_chunk_verify_says_incomplete(shc_dir: Path, example_store: TrustStore) -> None:
    verdict = verify(example_texts(shc_dir, "02")[1], example_store, AT)
    assert verdict.failure == "SHC_CHUNKS_INCOMPLETE"


def test_assembler_timeout_duplicates_and_new_card(shc_dir: Path) -> None:
    texts = example_texts(shc_dir, "02")
    now = [100.0]
    assembler = ChunkAssembler(timeout_s=10.0, clock=lambda: now[0])
    assert assembler.feed(texts[0]).status == PENDING
    assert assembler.feed(texts[0]).received == 1  # the camera sees the same QR many times
    now[0] += 9.0
    assert assembler.check_timeout() is None
    assert assembler.feed(texts[1]).received == 2
    now[0] += 2.0  # 11 s after the first chunk
    expired = assembler.check_timeout()
    assert expired is not None and expired.status == EXPIRED
    assert expired.failure == "SHC_CHUNKS_INCOMPLETE" and (expired.received, expired.total) == (2, 3)
    assert assembler.pending == (0, 0)
    # A timeout noticed by feed() itself is reported on the result it returns.
    assembler.feed(texts[0])
    now[0] += 11.0
    late = assembler.feed(texts[1])
    assert late.dropped_incomplete and late.status == PENDING and late.received == 1
    assembler.reset()
    # A chunk of a different card (different content at the same index) starts over.
    assembler.feed(texts[0])
    other = "shc:/1/3/" + "56" * 10
    assert assembler.feed(other).received == 1
    assert assembler.feed("shc:/9/3/00").status == INVALID
    # Non-SHC texts and single cards pass straight through.
    assert assembler.feed("HC1:ABC").text == "HC1:ABC"
    single = example_texts(shc_dir, "00")[0]
    assert assembler.feed(single).text == single


def test_large_card_is_chunked_and_assembles() -> None:
    issuer = new_issuer()
    texts = issue_card(issuer, card_claims(issuer.iss, NBF, doses=60))
    assert len(texts) == 2 and texts[0].startswith("shc:/1/2/")
    store = TrustStore(shc=issuer.trust())
    assert verify(assemble(list(reversed(texts))), store, LATER).valid


def test_trust_loading_reads_signed_vci_snapshot(example_trust_dir: Path) -> None:
    trust = load_trust(example_trust_dir)
    assert trust is not None
    assert trust.knows_issuer("https://myvaccinerecord.cdph.ca.gov/creds")
    assert len(trust.issuer_names) == 652  # 651 in the snapshot + the example issuer
    assert trust.snapshot_time == datetime(2026, 8, 22, 4, 43, 50, tzinfo=timezone.utc)
    assert not trust.problems
    assert trust.crls[(EXAMPLE_ISSUER, "3Kfdg-XwP-7gXyywtUfUADwBumDOPKMQx-iELL11W9s")].ctr == 1


def test_tampered_snapshot_is_skipped(example_trust_dir: Path, tmp_path: Path) -> None:
    for path in example_trust_dir.iterdir():
        shutil.copy(path, tmp_path / path.name)
    snapshot = (tmp_path / "vci_snapshot.json").read_bytes()
    (tmp_path / "vci_snapshot.json").write_bytes(snapshot.replace(b"State of California", b"State of Californ1a"))
    trust = load_trust(tmp_path)
    assert trust is not None
    assert not trust.knows_issuer("https://myvaccinerecord.cdph.ca.gov/creds")
    assert any("signature does not verify" in p for p in trust.problems)
    assert trust.knows_issuer(EXAMPLE_ISSUER)  # the operator's own issuer file still loads


def test_snapshot_certificate_must_be_pinned(shc_dir: Path) -> None:
    folder = shc_dir / "vci-directory"
    args = [(folder / n).read_bytes() for n in ("vci_snapshot.json", "vci_snapshot.sig", "vci_snapshot.crt")]
    assert verify_vci_snapshot(*args)["issuerInfo"]
    with pytest.raises(ShcTrustError, match="not pinned"):
        verify_vci_snapshot(*args, pins=frozenset({"00" * 32}))


def test_no_shc_files_means_no_trust(tmp_path: Path) -> None:
    assert load_trust(tmp_path) is None


def test_keys_are_indexed_by_thumbprint_and_bad_keys_refused(shc_dir: Path) -> None:
    jwks = json.loads((shc_dir / "examples/issuer/.well-known/jwks.json").read_text())
    assert all(jwk_thumbprint(k) == k["kid"] for k in jwks["keys"])
    wrong_kid = dict(jwks["keys"][0], kid="not-the-thumbprint")
    private = dict(jwks["keys"][0], d="AAAA")
    x5c_mismatch = dict(jwks["keys"][0], x5c=jwks["keys"][1]["x5c"])
    trust = ShcTrust()
    assert trust.add_jwks(EXAMPLE_ISSUER, {"keys": [wrong_kid, private, x5c_mismatch, jwks["keys"][1]]}) == 1
    assert len(trust.problems) == 3
    assert trust.add_jwks(EXAMPLE_ISSUER + "/", jwks) == 0  # trailing slash is not a valid iss


def test_crl_rid_and_timestamp_cutoff() -> None:
    crl = parse_crl({"kid": "k", "method": "rid", "ctr": "2",
                     "rids": ["always", "cut.1000", "cut.500", "wide.10", "wide"]})
    assert crl.ctr == 2
    assert crl.revokes("always", 10**10)
    assert crl.revokes("cut", 999.5) and not crl.revokes("cut", 1000)  # issued before the cut-off
    assert crl.revokes("wide", 10**10)
    assert not crl.revokes("other", 0)
    for bad in ({"kid": "k", "method": "hash-fhir", "ctr": 1, "rids": []},
                {"kid": "k", "method": "rid", "ctr": "x", "rids": []},
                {"kid": "k", "method": "rid", "ctr": 1, "rids": ["has space"]}):
        with pytest.raises(ShcTrustError):
            parse_crl(bad)


def test_revocation_by_own_issuer_crl() -> None:
    issuer = new_issuer()
    card = issue_card(issuer, card_claims(issuer.iss, NBF, rid="dXNlcjEyMw"))[0]
    trust = issuer.trust(crl_version=2)
    store = TrustStore(shc=trust)
    assert verify(card, store, LATER).failure == "SHC_CRL_UNAVAILABLE"  # advertised, not held
    trust.add_crl({"kid": issuer.jwk["kid"], "method": "rid", "ctr": 1, "rids": []}, issuer.iss)
    assert verify(card, store, LATER).failure == "SHC_CRL_UNAVAILABLE"  # held, but older
    trust.add_crl({"kid": issuer.jwk["kid"], "method": "rid", "ctr": 2, "rids": [f"dXNlcjEyMw.{int(NBF)}"]},
                  issuer.iss)
    assert verify(card, store, LATER).valid  # cut-off equals nbf: not issued *before* it
    trust.add_crl({"kid": issuer.jwk["kid"], "method": "rid", "ctr": 3, "rids": ["dXNlcjEyMw"]}, issuer.iss)
    verdict = verify(card, store, LATER)
    assert verdict.failure == "SHC_REVOKED" and verdict.checks["revocation"] is False


def test_deny_paths_with_own_issuer() -> None:
    issuer, stranger = new_issuer(), new_issuer("https://stranger.example")
    store = TrustStore(shc=issuer.trust())
    good = issue_card(issuer, card_claims(issuer.iss, NBF))[0]
    assert verify(good, store, LATER).valid
    assert verify(good, TrustStore(), LATER).failure == "SHC_ISSUER_UNTRUSTED"
    foreign = issue_card(stranger, card_claims(stranger.iss, NBF))[0]
    assert verify(foreign, store, LATER).failure == "SHC_ISSUER_UNTRUSTED"
    # A trusted issuer URL signed with a key it never published.
    rogue = issue_card(stranger, card_claims(issuer.iss, NBF))[0]
    assert verify(rogue, store, LATER).failure == "SHC_KEY_UNKNOWN"
    # The trusted key used to sign a card naming another issuer.
    mismatch = issue_card(issuer, card_claims("https://other.example", NBF))[0]
    assert verify(mismatch, store, LATER).failure == "SHC_ISSUER_MISMATCH"
    expired = issue_card(issuer, card_claims(issuer.iss, NBF, exp=NBF + 10))[0]
    assert verify(expired, store, LATER).failure == "SHC_EXPIRED"
    no_type = card_claims(issuer.iss, NBF)
    no_type["vc"]["type"] = ["https://example.org#other"]
    assert verify(issue_card(issuer, no_type)[0], store, LATER).failure == "SHC_PAYLOAD_INVALID"
    text_nbf = card_claims(issuer.iss, NBF)
    text_nbf["nbf"] = "yesterday"
    assert verify(issue_card(issuer, text_nbf)[0], store, LATER).failure == "SHC_PAYLOAD_INVALID"


def _forge(header: dict, payload: bytes, signature: bytes = b"\x00" * 64) -> str:
    parts = [b64url_encode(json.dumps(header).encode()), b64url_encode(payload), b64url_encode(signature)]
    return "shc:/" + jws_to_numeric(".".join(parts))


def test_header_and_signature_failures() -> None:
    issuer = new_issuer()
    store = TrustStore(shc=issuer.trust())
    kid = issuer.jwk["kid"]
    payload = deflate_raw(json.dumps(card_claims(issuer.iss, NBF)).encode())
    assert verify(_forge({"alg": "none", "zip": "DEF", "kid": kid}, payload), store, LATER).failure == "SHC_ALG_UNSUPPORTED"
    assert verify(_forge({"alg": "ES256", "kid": kid}, payload), store, LATER).failure == "SHC_ZIP_UNSUPPORTED"
    assert verify(_forge({"alg": "ES256", "zip": "DEF", "kid": kid}, payload), store, LATER).failure == "SHC_SIGNATURE_INVALID"
    jws = sign_compact_jws(card_claims(issuer.iss, NBF), issuer.key)
    head, body, sig = jws.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    assert verify("shc:/" + jws_to_numeric(f"{head}.{body}.{flipped}"), store, LATER).failure == "SHC_SIGNATURE_INVALID"
    assert verify("shc:/" + jws_to_numeric(f"{head}.{body}"), store, LATER).failure == "SHC_JWS_MALFORMED"


def test_signed_decompression_bomb_is_bounded() -> None:
    """Even a correctly signed payload may not inflate beyond the cap."""
    issuer = new_issuer()
    store = TrustStore(shc=issuer.trust())
    bomb = deflate_raw(b"[" + b" " * (8 * 1024 * 1024) + b"]")
    header = {"alg": "ES256", "zip": "DEF", "kid": issuer.jwk["kid"]}
    signing_input = b64url_encode(json.dumps(header).encode()) + "." + b64url_encode(bomb)
    jws = signing_input + "." + b64url_encode(es256_sign(issuer.key, signing_input.encode()))
    texts = jws_to_qr_texts(jws)
    verdict = verify(assemble(texts) if len(texts) > 1 else texts[0], store, LATER)
    assert verdict.failure == "SHC_PAYLOAD_TOO_LARGE"
    assert verdict.checks["signature"] is True and verdict.checks["zlib"] is False


@pytest.mark.parametrize("text, failure", [
    ("shc:/", "SHC_NUMERIC_INVALID"),
    ("shc:/123", "SHC_NUMERIC_INVALID"),
    ("shc:/99", "SHC_NUMERIC_INVALID"),  # 99 + 45 is past 'z'
    ("shc:/5676x0", "SHC_NUMERIC_INVALID"),
    ("shc:/1/1/5676", "SHC_JWS_MALFORMED"),  # a 1/1 header is accepted (issue 11): body decides
    ("shc:/0/2/5676", "SHC_CHUNK_INVALID"),
    ("shc:/" + "56" * 30000, "SHC_TOO_LARGE"),
    ("shc:/5676", "SHC_JWS_MALFORMED"),
])
def test_malformed_texts(text: str, failure: str) -> None:
    verdict = verify(text, TrustStore(), LATER)
    assert (verdict.valid, verdict.failure, verdict.format) == (False, failure, "shc")


def test_nothing_personal_is_logged(shc_dir: Path, example_store: TrustStore,
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for number in ("00", "01", "02", "03"):
        verdict = verify(assemble(example_texts(shc_dir, number)), example_store, AT)
        assert verdict.credential_id is not None
        for secret in ("Anyperson", "Revoked", "1951-01-20", "1960-04-22", verdict.credential_id):
            assert secret not in caplog.text


def test_trust_files_may_be_fleet_envelopes(shc_dir: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from fleet.trust import build_envelope

    jwks = json.loads((shc_dir / "examples/issuer/.well-known/jwks.json").read_text())
    crl = json.loads(next((shc_dir / "examples/issuer/.well-known/crl").glob("*.json")).read_text())
    content = {"issuerInfo": [{"issuer": {"iss": EXAMPLE_ISSUER}, "keys": jwks["keys"], "crls": [crl]}]}
    fleet_key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "shc-issuers.json").write_bytes(build_envelope(fleet_key, "shc-issuers", 3, content, AT))
    unchecked = load_trust(tmp_path)  # an unchecked envelope: refused, and said so
    assert unchecked is not None and not unchecked.issuer_names
    assert any("no pinned fleet key" in problem for problem in unchecked.problems)
    store = TrustStore(shc=load_trust(tmp_path, [fleet_key.public_key()]))
    assert verify(example_texts(shc_dir, "00")[0], store, AT).valid
    assert verify(example_texts(shc_dir, "03")[0], store, AT).failure == "SHC_REVOKED"


def test_rid_derivation_and_issuer_revocation_flow() -> None:
    """The spec's recommended rid: base64url(HMAC-SHA-256(secret || kid, user_id)[:8])."""
    import hashlib
    import hmac

    from firmware.demo.issuers.shc import derive_rid

    issuer = new_issuer()
    kid, secret = issuer.jwk["kid"], bytes(range(32))
    rid = derive_rid(secret, kid, "patient-42")
    expected = hmac.new(secret + kid.encode(), b"patient-42", hashlib.sha256).digest()[:8]
    assert rid == b64url_encode(expected) and len(rid) == 11
    assert derive_rid(secret, kid, "patient-43") != rid
    assert derive_rid(secret[::-1], kid, "patient-42") != rid
    # The issuer revokes every card of patient-42 issued before a cut-off.
    early = issue_card(issuer, card_claims(issuer.iss, NBF, rid=rid))[0]
    late = issue_card(issuer, card_claims(issuer.iss, NBF + 100, rid=rid))[0]
    trust = issuer.trust(crl_version=1)
    trust.add_crl({"kid": kid, "method": "rid", "ctr": 1, "rids": [f"{rid}.{int(NBF) + 50}"]}, issuer.iss)
    store = TrustStore(shc=trust)
    assert verify(early, store, LATER).failure == "SHC_REVOKED"
    assert verify(late, store, LATER).valid


@pytest.mark.parametrize("nbf, exp", [(float("nan"), None), (NBF, float("nan")), (NBF, float("inf"))])
def test_non_finite_times_are_refused(nbf: float, exp: float | None) -> None:
    """Python's json would accept NaN/Infinity, and NaN compares false with every time."""
    issuer = new_issuer()
    card = issue_card(issuer, card_claims(issuer.iss, nbf, exp=exp))[0]
    assert verify(card, TrustStore(shc=issuer.trust()), LATER).failure == "SHC_PAYLOAD_INVALID"
