"""Trust data distribution over real HTTP: signed envelopes, ETag/304, device-signed requests,
on SQLite and PostgreSQL."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.protocol.envelope import EnvelopeError, verify_envelope
from firmware.protocol.request_signing import sign_request
from firmware.sync.trustsync import register_device
from fleet.runner import ServerHandle
from fleet.server import run_in_thread
from fleet.trust import generate_signing_key

DEVICE = "kiosk-trust-1"


@pytest.fixture
def fleet_key(tmp_path: Path) -> tuple[Path, Ed25519PrivateKey]:
    path = tmp_path / "fleet-signing.key"
    return path, generate_signing_key(path)


@pytest.fixture
def server(db_url: str, fleet_key: tuple[Path, Ed25519PrivateKey]) -> Iterator[ServerHandle]:
    with run_in_thread(db_url, signing_key_path=fleet_key[0]) as handle:
        yield handle


@pytest.fixture
def device(server: ServerHandle) -> Ed25519PrivateKey:
    from datetime import datetime, timedelta, timezone

    key = Ed25519PrivateKey.generate()
    server.store.add_token("trust-test-token-0001", datetime.now(timezone.utc) + timedelta(1))
    register_device(server.url, "trust-test-token-0001", DEVICE, key)
    return key


def signed_get(server: ServerHandle, key: Ed25519PrivateKey, path: str,
               headers: dict[str, str] | None = None) -> requests.Response:
    all_headers = {**(headers or {}), **sign_request(key, DEVICE, "GET", path, b"")}
    return requests.get(server.url + path, headers=all_headers, timeout=10)


def test_envelope_is_signed_and_etag_gives_304(server: ServerHandle, device: Ed25519PrivateKey,
                                               fleet_key: tuple[Path, Ed25519PrivateKey]) -> None:
    content = {"certificates": [{"kid": "a2lkMQ==", "der": "MIIB..."}]}
    item = server.publish("dcc-signers", content)
    first = signed_get(server, device, "/v1/trust/dcc-signers")
    assert first.status_code == 200 and first.headers["ETag"] == item.etag
    envelope = verify_envelope(first.content, [fleet_key[1].public_key()], "dcc-signers")
    assert (envelope["version"], envelope["content"]) == (1, content)

    again = signed_get(server, device, "/v1/trust/dcc-signers", {"If-None-Match": item.etag})
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["ETag"] == item.etag

    newer = server.publish("dcc-signers", {"certificates": []})
    changed = signed_get(server, device, "/v1/trust/dcc-signers", {"If-None-Match": item.etag})
    assert changed.status_code == 200 and changed.headers["ETag"] == newer.etag != item.etag
    assert verify_envelope(changed.content, [fleet_key[1].public_key()])["version"] == 2


def test_envelope_does_not_verify_with_another_key(server: ServerHandle,
                                                   device: Ed25519PrivateKey) -> None:
    server.publish("dcc-rules", {"rules": []})
    body = signed_get(server, device, "/v1/trust/dcc-rules").content
    with pytest.raises(EnvelopeError) as unknown:
        verify_envelope(body, [Ed25519PrivateKey.generate().public_key()])
    assert unknown.value.code == "TRUST_UNKNOWN_KEY"


def test_trust_errors(server: ServerHandle, device: Ed25519PrivateKey) -> None:
    missing = signed_get(server, device, "/v1/trust/dcc-valuesets")
    assert (missing.status_code, missing.json()["error"]) == (404, "TRUST_NOT_PUBLISHED")
    bad_name = signed_get(server, device, "/v1/trust/..%2Fetc")
    assert bad_name.status_code in (404, 422)
    assert signed_get(server, device, "/v1/trust/UPPER").json()["error"] == "MALFORMED_REQUEST"
    server.publish("shc-issuers", {"issuers": []})
    anonymous = requests.get(server.url + "/v1/trust/shc-issuers", timeout=10)
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "AUTH_MISSING")


def test_published_bytes_are_served_unchanged(server: ServerHandle,
                                              device: Ed25519PrivateKey) -> None:
    content = {"records": [{"subject": "pseudonym-1", "colour": "green", "note": "ünïcödé"}]}
    item = server.publish("status-records", content)
    response = signed_get(server, device, "/v1/trust/status-records")
    assert response.content == item.envelope
    assert json.loads(response.content)["content"] == content


def test_an_older_or_equal_version_cannot_replace_the_published_one(
        server: ServerHandle, fleet_key: tuple[Path, Ed25519PrivateKey]) -> None:
    from datetime import datetime, timezone

    from fleet.trust import build_envelope

    current = server.publish("dcc-rules", {"rules": ["v1"]})
    stale = build_envelope(fleet_key[1], "dcc-rules", current.version, {"rules": ["old"]},
                           datetime.now(timezone.utc))
    with pytest.raises(ValueError, match="not newer"):
        server.store.put_trust("dcc-rules", current.version, stale, datetime.now(timezone.utc))
    assert server.store.trust("dcc-rules") == current
