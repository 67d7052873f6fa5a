"""Kiosk trust sync client against a real fleet server on loopback: verify, swap atomically,
refuse forgeries and rollbacks, track age and clock skew."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import firmware.fsutil as fsutil
from firmware.protocol.envelope import verify_envelope
from firmware.protocol.events import canonical_json
from firmware.sync.trustsync import RegistrationError, TrustSync, register_device
from fleet.runner import ServerHandle
from fleet.server import run_in_thread
from fleet.trust import build_envelope, generate_signing_key

DEVICE = "kiosk-sync-1"


@pytest.fixture
def fleet_key(tmp_path: Path) -> tuple[Path, Ed25519PrivateKey]:
    path = tmp_path / "fleet-signing.key"
    return path, generate_signing_key(path)


@pytest.fixture
def server(tmp_path: Path, fleet_key: tuple[Path, Ed25519PrivateKey]) -> Iterator[ServerHandle]:
    with run_in_thread(f"sqlite:///{tmp_path}/fleet.db", signing_key_path=fleet_key[0]) as h:
        yield h


@pytest.fixture
def device(server: ServerHandle) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    server.store.add_token("sync-test-token-00001", datetime.now(timezone.utc) + timedelta(1))
    register_device(server.url, "sync-test-token-00001", DEVICE, key)
    return key


def client(server: ServerHandle, device: Ed25519PrivateKey, fleet_key: Ed25519PrivateKey,
           cache: Path, **options: object) -> TrustSync:
    return TrustSync(server.url, cache, [fleet_key.public_key()], DEVICE, device, **options)


def statuses(outcomes: list) -> dict[str, tuple]:
    return {o.name: (o.status, o.reason, o.version) for o in outcomes}


def test_sync_fetches_verifies_then_uses_conditional_requests(
        server: ServerHandle, device: Ed25519PrivateKey,
        fleet_key: tuple[Path, Ed25519PrivateKey], tmp_path: Path) -> None:
    server.publish("dcc-signers", {"certificates": ["A"]})
    server.publish("dcc-rules", {"rules": [1]})
    sync = client(server, device, fleet_key[1], tmp_path / "cache")
    first = statuses(sync.sync())
    assert first["dcc-signers"] == ("updated", None, 1)
    assert first["dcc-rules"] == ("updated", None, 1)
    assert first["status-records"] == ("missing", "TRUST_NOT_PUBLISHED", None)
    assert sync.content("dcc-signers") == {"certificates": ["A"]}
    on_disk = (tmp_path / "cache" / "dcc-signers.json").read_bytes()
    assert verify_envelope(on_disk, [fleet_key[1].public_key()], "dcc-signers")["version"] == 1

    assert statuses(sync.sync(["dcc-signers"]))["dcc-signers"] == ("not_modified", None, 1)
    server.publish("dcc-signers", {"certificates": ["A", "B"]})
    assert statuses(sync.sync(["dcc-signers"]))["dcc-signers"] == ("updated", None, 2)
    assert sync.content("dcc-signers") == {"certificates": ["A", "B"]}

    # A new client over the same cache resumes with the stored ETag.
    again = client(server, device, fleet_key[1], tmp_path / "cache")
    assert statuses(again.sync(["dcc-signers"]))["dcc-signers"] == ("not_modified", None, 2)


def test_forged_wrong_name_and_rollback_never_replace_the_cache(
        server: ServerHandle, device: Ed25519PrivateKey,
        fleet_key: tuple[Path, Ed25519PrivateKey], tmp_path: Path) -> None:
    server.publish("dcc-revocation", {"revoked": []})
    server.publish("dcc-revocation", {"revoked": ["hash-1"]})
    sync = client(server, device, fleet_key[1], tmp_path / "cache")
    assert sync.sync_item("dcc-revocation").version == 2
    good = (tmp_path / "cache" / "dcc-revocation.json").read_bytes()
    now = datetime.now(timezone.utc)
    intruder = Ed25519PrivateKey.generate()
    cases = {
        "TRUST_UNKNOWN_KEY": build_envelope(intruder, "dcc-revocation", 3, {"revoked": []}, now),
        "TRUST_WRONG_NAME": build_envelope(fleet_key[1], "dcc-rules", 3, {"rules": []}, now),
        "TRUST_ROLLBACK": build_envelope(fleet_key[1], "dcc-revocation", 1, {"revoked": []}, now),
        "TRUST_BAD_SIGNATURE": canonical_json({**json.loads(build_envelope(
            fleet_key[1], "dcc-revocation", 3, {"revoked": ["x"]}, now)), "content": {}}),
        "TRUST_MALFORMED": b"{\"truncated\": ",
    }
    for version, (reason, envelope) in enumerate(cases.items(), start=10):
        server.store.put_trust("dcc-revocation", version, envelope, now)  # served as is
        outcome = sync.sync_item("dcc-revocation")
        assert (outcome.status, outcome.reason) == ("error", reason)
        assert (tmp_path / "cache" / "dcc-revocation.json").read_bytes() == good
        assert sync.content("dcc-revocation") == {"revoked": ["hash-1"]}


def test_swap_is_atomic_for_readers_and_on_a_failed_write(
        server: ServerHandle, device: Ed25519PrivateKey,
        fleet_key: tuple[Path, Ed25519PrivateKey], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    sync = client(server, device, fleet_key[1], cache)
    big = {"certificates": ["x" * 200] * 2000}  # ~400 kB: a torn write would be visible
    server.publish("dcc-signers", big)
    sync.sync_item("dcc-signers")
    reader = client(server, device, fleet_key[1], cache)
    seen: list[object] = []
    stop = threading.Event()

    def read_constantly() -> None:
        while not stop.is_set():
            seen.append(reader.load("dcc-signers"))

    thread = threading.Thread(target=read_constantly)
    thread.start()
    try:
        for _ in range(8):
            server.publish("dcc-signers", big)
            assert sync.sync_item("dcc-signers").status == "updated"
    finally:
        stop.set()
        thread.join(30)
    assert seen and all(envelope is not None for envelope in seen)  # never half a file

    # A crash at the rename leaves the previous copy and no temp file behind.
    server.publish("dcc-signers", {"certificates": ["new"]})

    def failing_replace(*_: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(fsutil.os, "replace", failing_replace)
    outcome = sync.sync_item("dcc-signers")
    monkeypatch.undo()
    assert (outcome.status, outcome.reason) == ("error", "CACHE_WRITE_FAILED")
    assert sync.content("dcc-signers") == big
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []
    assert sync.sync_item("dcc-signers").status == "updated"
    assert sync.content("dcc-signers") == {"certificates": ["new"]}


def test_damaged_cache_file_is_never_used_and_is_refetched(
        server: ServerHandle, device: Ed25519PrivateKey,
        fleet_key: tuple[Path, Ed25519PrivateKey], tmp_path: Path) -> None:
    server.publish("nzcp-issuers", {"issuers": ["did:web:nzcp.identity.health.nz"]})
    sync = client(server, device, fleet_key[1], tmp_path / "cache")
    sync.sync_item("nzcp-issuers")
    path = tmp_path / "cache" / "nzcp-issuers.json"
    path.write_bytes(path.read_bytes().replace(b"nzcp.identity", b"evil.example"))
    assert sync.load("nzcp-issuers") is None and sync.age("nzcp-issuers") is None
    assert sync.sync_item("nzcp-issuers").status == "updated"
    assert sync.content("nzcp-issuers") == {"issuers": ["did:web:nzcp.identity.health.nz"]}


def test_age_tracks_the_last_confirmation(server: ServerHandle, device: Ed25519PrivateKey,
                                          fleet_key: tuple[Path, Ed25519PrivateKey],
                                          tmp_path: Path) -> None:
    offset = [timedelta(0)]

    def clock() -> datetime:
        return datetime.now(timezone.utc) + offset[0]

    server.publish("dcc-valuesets", {"valueSets": {}})
    sync = client(server, device, fleet_key[1], tmp_path / "cache", clock=clock)
    assert sync.age("dcc-valuesets") is None
    assert not sync.is_fresh("dcc-valuesets", timedelta(days=1))
    sync.sync()
    start = clock()
    later = start + timedelta(hours=30)
    assert timedelta(hours=29) < sync.age("dcc-valuesets", now=later) < timedelta(hours=31)
    assert not sync.is_fresh("dcc-valuesets", timedelta(hours=24), now=later)
    assert sync.is_fresh("dcc-valuesets", timedelta(hours=24), now=start + timedelta(hours=1))
    # Offline: a failed sync does not make the data younger.
    server.stop()
    failed = client(server, device, fleet_key[1], tmp_path / "cache", clock=clock,
                    timeout_s=2.0).sync_item("dcc-valuesets")
    assert (failed.status, failed.reason) == ("error", "NETWORK_ERROR")
    assert sync.content("dcc-valuesets") == {"valueSets": {}}
    assert timedelta(hours=29) < sync.age("dcc-valuesets", now=later) < timedelta(hours=31)


def test_clock_skew_from_date_header_and_time_endpoint(
        server: ServerHandle, device: Ed25519PrivateKey,
        fleet_key: tuple[Path, Ed25519PrivateKey], tmp_path: Path) -> None:
    server.publish("shc-issuers", {"issuers": []})

    def slow_clock() -> datetime:  # kiosk clock 100 s behind: inside the request window
        return datetime.now(timezone.utc) - timedelta(seconds=100)

    behind = client(server, device, fleet_key[1], tmp_path / "a", clock=slow_clock)
    assert behind.clock_skew_s is None
    behind.sync_item("shc-issuers")  # no /v1/time call: the skew comes from the Date header
    assert 97 <= behind.clock_skew_s <= 103

    def fast_clock() -> datetime:  # an hour ahead: signed requests need the correction
        return datetime.now(timezone.utc) + timedelta(hours=1)

    ahead = client(server, device, fleet_key[1], tmp_path / "b", clock=fast_clock)
    outcome = {o.name: o for o in ahead.sync(["shc-issuers"])}["shc-issuers"]
    assert outcome.status == "updated"
    assert -3602 <= ahead.clock_skew_s <= -3598
    assert abs((ahead.server_now() - datetime.now(timezone.utc)).total_seconds()) < 2
    reopened = client(server, device, fleet_key[1], tmp_path / "b", clock=fast_clock)
    assert reopened.clock_skew_s == ahead.clock_skew_s


def test_registration_without_a_server_fails_clearly() -> None:
    with pytest.raises(RegistrationError) as failed:
        register_device("http://127.0.0.1:9", "some-token-000000000", "kiosk-z",
                        Ed25519PrivateKey.generate(), timeout_s=2.0)
    assert (failed.value.code, failed.value.status) == ("NETWORK_ERROR", 0)
