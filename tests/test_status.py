"""Status codes (HG1:) and cached status records: every deny reason, persistence, atomic sync."""
from __future__ import annotations

import base64
import json
import logging
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from firmware.credentials import TrustStore, verify
from firmware.credentials.base45 import b45encode
from firmware.credentials.reasons import REASONS
from firmware.credentials.status import StatusTrust, load_trust
from firmware.demo.issuers.status import bench_samples
from firmware.credentials.status.code import split_code
from firmware.demo.issuers.status import issue_status_code
from firmware.credentials.status.records import (
    StatusIssuerKey,
    StatusRecord,
    StatusRecordCache,
    verify_status_record,
)
from firmware.demo.issuers.status import sign_status_record

AT = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
NOW = int(AT.timestamp())
ISSUER = "hg-test"
KID = b"test-key-1"
SUBJECT = bytes.fromhex("00112233445566778899aabbccddeeff")


@pytest.fixture(params=["ES256", "EdDSA"])
def signer(request: pytest.FixtureRequest) -> ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey:
    if request.param == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def record(colour: str = "green", **overrides: object) -> StatusRecord:
    fields: dict = dict(issuer=ISSUER, subject=SUBJECT, colour=colour, issued_at=NOW - 60,
                        valid_until=NOW + 3600)
    fields.update(overrides)
    return StatusRecord(**fields)


def setup(signer, records: list[StatusRecord], synced_at: datetime = AT,
          path: Path | None = None) -> TrustStore:
    keys = {KID: StatusIssuerKey(ISSUER, signer.public_key())}
    cache = StatusRecordCache(keys, path)
    cache.apply_sync([sign_status_record(r, signer, kid=KID) for r in records], synced_at)
    return TrustStore(status=StatusTrust(keys=keys, cache=cache, max_cache_age=timedelta(hours=6)))


def code(signer, issued_at: int = NOW - 86400, subject: bytes = SUBJECT, issuer: str = ISSUER,
         kid: bytes = KID) -> str:
    return issue_status_code(signer, kid=kid, issuer=issuer, subject=subject, issued_at=issued_at)


def test_green_and_fresh_is_valid(signer) -> None:
    template = b"\x01" * 600
    store = setup(signer, [record(face_key_id="vision-k1", face_template=template)])
    verdict = verify(code(signer), store, AT)
    assert verdict.valid and verdict.format == "status"
    assert verdict.credential_id == SUBJECT.hex()
    assert verdict.payload == {"issuer": ISSUER, "issued_at": NOW - 86400, "version": 1,
                               "colour": "green", "valid_until": NOW + 3600, "record_issued_at": NOW - 60}
    assert verdict.extras == {"face_template": template, "face_key_id": "vision-k1"}
    assert len(code(signer)) <= 221  # fits a version 8 QR (49x49) at error correction M


def test_code_survives_a_real_qr_round_trip(signer) -> None:
    """Printed as a QR (alphanumeric mode, version 8 at M) and read back with zxing-cpp."""
    import io

    segno = pytest.importorskip("segno")
    zxingcpp = pytest.importorskip("zxingcpp")
    from PIL import Image

    text = code(signer)
    qr = segno.make(text, error="m", micro=False)
    assert qr.mode == "alphanumeric" and qr.version <= 8
    buffer = io.BytesIO()
    qr.save(buffer, kind="png", scale=4, border=4)
    buffer.seek(0)
    with Image.open(buffer) as image:
        read = [r.text for r in zxingcpp.read_barcodes(image)]
    assert read == [text]
    assert verify(read[0], setup(signer, [record()]), AT).valid


@pytest.mark.parametrize("colour, failure", [("amber", "STATUS_AMBER"), ("red", "STATUS_RED")])
def test_amber_and_red_deny(signer, colour: str, failure: str) -> None:
    verdict = verify(code(signer), setup(signer, [record(colour)]), AT)
    assert verdict.failure == failure and verdict.checks["rules"] is False


def test_each_record_problem_has_its_reason(signer) -> None:
    assert verify(code(signer), setup(signer, []), AT).failure == "STATUS_NO_RECORD"
    other = code(signer, subject=b"\xff" * 16)
    assert verify(other, setup(signer, [record()]), AT).failure == "STATUS_NO_RECORD"
    stale = setup(signer, [record()], synced_at=AT - timedelta(hours=7))
    assert verify(code(signer), stale, AT).failure == "STATUS_CACHE_STALE"
    assert verify(code(signer), setup(signer, [record()], synced_at=AT - timedelta(hours=5)), AT).valid
    expired = setup(signer, [record(valid_until=NOW)])
    assert verify(code(signer), expired, AT).failure == "STATUS_RECORD_EXPIRED"
    replaced = setup(signer, [record(codes_not_before=NOW - 3600)])
    assert verify(code(signer, issued_at=NOW - 7200), replaced, AT).failure == "STATUS_CODE_REVOKED"
    assert verify(code(signer, issued_at=NOW - 3600), replaced, AT).valid


def test_no_cache_or_never_synced_is_stale(signer) -> None:
    keys = {KID: StatusIssuerKey(ISSUER, signer.public_key())}
    for trust in (StatusTrust(keys=keys), StatusTrust(keys=keys, cache=StatusRecordCache(keys))):
        assert verify(code(signer), TrustStore(status=trust), AT).failure == "STATUS_CACHE_STALE"


def test_code_signature_and_key_failures(signer) -> None:
    store = setup(signer, [record()])
    stranger = ec.generate_private_key(ec.SECP256R1())
    assert verify(code(stranger), store, AT).failure == "STATUS_SIGNATURE_INVALID"
    assert verify(code(signer, kid=b"other"), store, AT).failure == "STATUS_KEY_UNKNOWN"
    assert verify(code(signer), TrustStore(), AT).failure == "STATUS_KEY_UNKNOWN"
    assert verify(code(signer, issuer="someone-else"), store, AT).failure == "STATUS_ISSUER_MISMATCH"
    assert verify(code(signer, issued_at=NOW + 3600), store, AT).failure == "STATUS_CODE_NOT_YET_VALID"
    store.status.code_max_age = timedelta(days=30)
    assert verify(code(signer, issued_at=NOW - 31 * 86400), store, AT).failure == "STATUS_CODE_EXPIRED"


def test_a_record_is_not_a_code(signer) -> None:
    """The signed content type keeps records and codes apart (no cross-protocol replay)."""
    store = setup(signer, [record()])
    blob = sign_status_record(record(), signer, kid=KID)
    assert verify("HG1:" + b45encode(blob), store, AT).failure == "STATUS_COSE_INVALID"
    keys = {KID: StatusIssuerKey(ISSUER, signer.public_key())}
    with pytest.raises(ValueError):
        verify_status_record(split_code(code(signer)), keys)


def test_cache_persists_and_verifies_on_load(signer, tmp_path: Path) -> None:
    path = tmp_path / "status-records.sqlite"
    setup(signer, [record(), record("red", subject=b"\x01" * 16)], path=path)
    keys = {KID: StatusIssuerKey(ISSUER, signer.public_key())}
    reopened = StatusRecordCache(keys, path)
    assert len(reopened) == 2 and reopened.synced_at == AT
    assert reopened.lookup(ISSUER, SUBJECT) == record()
    # Tamper with a stored record: it is dropped on load, never trusted.
    with sqlite3.connect(path) as conn:
        blob = conn.execute("SELECT blob FROM status_records WHERE subject = ?", (SUBJECT,)).fetchone()[0]
        forged = bytes(blob).replace(b"green", b"gre3n")
        conn.execute("UPDATE status_records SET blob = ? WHERE subject = ?", (forged, SUBJECT))
    tampered = StatusRecordCache(keys, path)
    assert tampered.rejected_on_load == 1 and tampered.lookup(ISSUER, SUBJECT) is None
    # A key that is no longer trusted invalidates its records on load.
    other = {KID: StatusIssuerKey(ISSUER, ec.generate_private_key(ec.SECP256R1()).public_key())}
    assert len(StatusRecordCache(other, path)) == 0


def test_damaged_database_is_set_aside(signer, tmp_path: Path) -> None:
    path = tmp_path / "status-records.sqlite"
    path.write_bytes(b"this is not an sqlite database" * 100)
    keys = {KID: StatusIssuerKey(ISSUER, signer.public_key())}
    cache = StatusRecordCache(keys, path)
    assert len(cache) == 0 and cache.synced_at is None
    assert (tmp_path / "status-records.sqlite.corrupt").exists()
    cache.apply_sync([sign_status_record(record(), signer, kid=KID)], AT)
    assert StatusRecordCache(keys, path).lookup(ISSUER, SUBJECT) == record()


def test_sync_is_verified_monotonic_and_replaceable(signer, tmp_path: Path) -> None:
    keys = {KID: StatusIssuerKey(ISSUER, signer.public_key())}
    cache = StatusRecordCache(keys, tmp_path / "records.sqlite")
    newer = record("red", issued_at=NOW - 10)
    older = record("green", issued_at=NOW - 100)
    stranger = ec.generate_private_key(ec.SECP256R1())
    report = cache.apply_sync([sign_status_record(newer, signer, kid=KID),
                               sign_status_record(record(subject=b"\x02" * 16), stranger, kid=KID),
                               b"not cose"], AT)
    assert (report.stored, report.refused) == (1, 2)
    report = cache.apply_sync([sign_status_record(older, signer, kid=KID)], AT)
    assert report.kept_newer == 1 and cache.lookup(ISSUER, SUBJECT) == newer  # no rollback
    other = record(subject=b"\x03" * 16)
    report = cache.apply_sync([sign_status_record(other, signer, kid=KID)], AT, replace_all=True)
    assert report.removed == 1 and cache.lookup(ISSUER, SUBJECT) is None
    assert StatusRecordCache(keys, tmp_path / "records.sqlite").lookup(ISSUER, other.subject) == other


def test_load_trust_from_directory(tmp_path: Path) -> None:
    assert load_trust(tmp_path) is None
    es, ed = ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()

    def pem(key) -> str:
        return key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    config = {"max_cache_age_seconds": 600, "keys": [
        {"issuer": ISSUER, "kid": base64.urlsafe_b64encode(KID).decode().rstrip("="), "public_key_pem": pem(es)},
        {"issuer": ISSUER, "kid": "ZWQ", "public_key_pem": pem(ed)}]}
    (tmp_path / "status-issuers.json").write_text(json.dumps(config))
    trust = load_trust(tmp_path)
    assert trust is not None and set(trust.keys) == {KID, b"ed"} and trust.max_cache_age == timedelta(minutes=10)
    assert trust.cache is not None
    trust.cache.apply_sync([sign_status_record(record(), ed, kid=b"ed")], AT)
    store = TrustStore(status=load_trust(tmp_path))  # re-read: records persisted under the trust dir
    assert verify(code(es), store, AT).valid
    assert verify(code(es), store, AT + timedelta(minutes=11)).failure == "STATUS_CACHE_STALE"
    config["keys"][0]["public_key_pem"] = pem(ec.generate_private_key(ec.SECP384R1()))
    (tmp_path / "status-issuers.json").write_text(json.dumps(config))
    # A key that cannot be used is skipped and reported: that key's codes are denied, the
    # other key (here of the same issuer) still verifies.
    skipped = load_trust(tmp_path)
    assert skipped is not None and set(skipped.keys) == {b"ed"} and "keys[0]" in skipped.problems[0]
    assert verify(code(es), TrustStore(status=skipped), AT).failure is not None


@pytest.mark.parametrize("text, failure", [
    ("HG1:", "STATUS_COSE_INVALID"),
    ("HG1:A", "STATUS_BASE45_INVALID"),
    ("HG1:abc", "STATUS_BASE45_INVALID"),
    ("HG1:GGW", "STATUS_BASE45_INVALID"),  # triple above 65535
    ("HG1:" + "0" * 2000, "STATUS_BASE45_INVALID"),
])
def test_malformed_texts(text: str, failure: str) -> None:
    verdict = verify(text, TrustStore(), AT)
    assert (verdict.valid, verdict.failure) == (False, failure)


def test_every_reason_has_a_display_message() -> None:
    import re

    # every module of the three subpackages, so that a module added later is covered too
    source = "".join(path.read_text() for name in ("status", "shc", "nzcp")
                     for path in sorted(Path("firmware/credentials", name).glob("*.py")))
    codes = set(re.findall(r'"((?:STATUS|SHC|NZCP)_[A-Z0-9_]+)"', source))
    assert codes and codes <= set(REASONS), codes - set(REASONS)
    assert all(len(REASONS[c]) <= 32 for c in codes)


def test_bench_samples_verify() -> None:
    for text, store, at in bench_samples():
        assert verify(text, store, at).valid


def test_nothing_identifying_is_logged(signer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = setup(signer, [record()])
    for text in (code(signer), code(signer, kid=b"x"), "HG1:%%%"):
        verify(text, store, AT)
    assert SUBJECT.hex() not in caplog.text


def test_records_arrive_as_a_fleet_envelope(tmp_path: Path) -> None:
    """The sync client writes `status-records.json` (a signed fleet envelope) and trust-state.json;
    loading the trust folds the records into the verified SQLite cache with the sync time."""
    from fleet.trust import build_envelope
    from firmware.credentials.status.records import records_content

    signer = ec.generate_private_key(ec.SECP256R1())
    fleet_key = ed25519.Ed25519PrivateKey.generate()
    pem = signer.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    issuers = {"keys": [{"issuer": ISSUER, "kid": base64.urlsafe_b64encode(KID).decode().rstrip("="),
                         "public_key_pem": pem}], "max_cache_age_seconds": 3600}
    (tmp_path / "status-issuers.json").write_bytes(
        build_envelope(fleet_key, "status-issuers", 1, issuers, AT - timedelta(days=1)))
    blobs = [sign_status_record(record("amber"), signer, kid=KID), b"forged record"]
    (tmp_path / "status-records.json").write_bytes(
        build_envelope(fleet_key, "status-records", 7, records_content(blobs), AT - timedelta(hours=2)))
    pinned = [fleet_key.public_key()]
    # Without trust-state.json the envelope's issue time counts: two hours old, max age one hour.
    store = TrustStore(status=load_trust(tmp_path, pinned))
    assert verify(code(signer), store, AT).failure == "STATUS_CACHE_STALE"
    (tmp_path / "trust-state.json").write_text(json.dumps(
        {"items": {"status-records": {"checked_at": (AT - timedelta(minutes=5)).isoformat()}}}))
    store = TrustStore(status=load_trust(tmp_path, pinned))
    assert verify(code(signer), store, AT).failure == "STATUS_AMBER"
    assert (tmp_path / "status-records.sqlite").exists()
    # Envelopes are checked on every read: unpinned, or signed by another key, they are refused.
    with pytest.raises(ValueError, match="no pinned fleet key"):
        load_trust(tmp_path)
    with pytest.raises(ValueError, match="envelope rejected"):
        load_trust(tmp_path, [ed25519.Ed25519PrivateKey.generate().public_key()])
    # A damaged sync file leaves the verified cache in place.
    (tmp_path / "status-records.json").write_text("{not json")
    store = TrustStore(status=load_trust(tmp_path, pinned))
    assert verify(code(signer), store, AT).failure == "STATUS_AMBER"
