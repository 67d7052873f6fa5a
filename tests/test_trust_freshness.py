"""Trust freshness comes from signed data: a replayed 304 (or 200) through a man in the middle on
loopback cannot make an old copy look freshly confirmed."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.protocol.freshness import (FRESHNESS_HEADER, confirmed_at, sign_statement,
                                         verify_statement)
from firmware.protocol.keys import key_id
from firmware.sync.trustsync import TrustSync, register_device
from fleet.runner import ServerHandle
from fleet.server import run_in_thread
from fleet.trust import build_envelope, generate_signing_key

DEVICE = "kiosk-fresh-1"
MAX_AGE = timedelta(days=1)
PASSED_HEADERS = ("ETag", "Content-Type", "Date", FRESHNESS_HEADER)


@dataclass
class Mitm:
    """A loopback man in the middle: forwards to the fleet, or replays a recorded trust answer
    (`replay`: "304", "304-unsigned" or "200"), keeping what it saw in `recorded`."""

    upstream: str
    replay: str | None = None
    recorded: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    url: str = ""

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if self.replay and path.startswith("/v1/trust/") and path in self.recorded:
            status, kept, body = self.recorded[path]
            if self.replay == "200":
                return status, kept, body
            replayed = {k: v for k, v in kept.items() if k in ("ETag", "Date", FRESHNESS_HEADER)}
            if self.replay == "304-unsigned":
                replayed.pop(FRESHNESS_HEADER, None)
            return 304, replayed, b""
        response = requests.get(self.upstream + path, headers=headers, timeout=10)
        kept = {k: response.headers[k] for k in PASSED_HEADERS if k in response.headers}
        if response.status_code == 200 and path.startswith("/v1/trust/"):
            self.recorded[path] = (200, kept, response.content)
        return response.status_code, kept, response.content


@pytest.fixture
def offset() -> list[timedelta]:
    return [timedelta(0)]


@pytest.fixture
def fleet(tmp_path: Path, offset: list[timedelta]) -> Iterator[tuple[ServerHandle, Ed25519PrivateKey]]:
    key = generate_signing_key(tmp_path / "fleet.key")
    with run_in_thread(f"sqlite:///{tmp_path}/fleet.db", signing_key_path=tmp_path / "fleet.key",
                       clock=lambda: datetime.now(timezone.utc) + offset[0]) as handle:
        yield handle, key


@pytest.fixture
def mitm(fleet: tuple[ServerHandle, Ed25519PrivateKey]) -> Iterator[Mitm]:
    proxy = Mitm(fleet[0].url)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            status, headers, body = proxy.answer(self.path, dict(self.headers.items()))
            self.send_response(status)
            for name, value in headers.items():
                if name != "Date":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()


def _kiosk(fleet: tuple[ServerHandle, Ed25519PrivateKey], mitm: Mitm, cache: Path,
           offset: list[timedelta]) -> TrustSync:
    handle, key = fleet
    device = Ed25519PrivateKey.generate()
    handle.store.add_token("fresh-test-token-0001", datetime.now(timezone.utc) + timedelta(days=30))
    register_device(handle.url, "fresh-test-token-0001", DEVICE, device)
    return TrustSync(mitm.url, cache, [key.public_key()], DEVICE, device, names=("dcc-rules",),
                     clock=lambda: datetime.now(timezone.utc) + offset[0])


@pytest.mark.parametrize("replay", ["304", "304-unsigned", "200"])
def test_a_replayed_answer_never_refreshes_an_old_copy(
        fleet: tuple[ServerHandle, Ed25519PrivateKey], mitm: Mitm, tmp_path: Path,
        offset: list[timedelta], replay: str) -> None:
    fleet[0].publish("dcc-rules", {"rules": []})
    kiosk = _kiosk(fleet, mitm, tmp_path / "cache", offset)
    assert kiosk.sync()[0].status == "updated"
    assert kiosk.is_fresh("dcc-rules", MAX_AGE)
    # Three days on, the man in the middle answers in the fleet's place with what it recorded.
    offset[0] = timedelta(days=3)
    mitm.replay = replay
    outcome = kiosk.sync()[0]
    assert outcome.status == ("updated" if replay == "200" else "not_modified")
    assert kiosk.age("dcc-rules") > timedelta(days=2, hours=23)
    assert not kiosk.is_fresh("dcc-rules", MAX_AGE)
    # The fleet itself, reached again, confirms the copy with a fresh signed statement.
    mitm.replay = None
    assert kiosk.sync()[0].status == "not_modified"
    assert kiosk.age("dcc-rules") < timedelta(minutes=5)
    assert kiosk.is_fresh("dcc-rules", MAX_AGE)


def test_fleet_sends_a_statement_about_the_exact_bytes(
        fleet: tuple[ServerHandle, Ed25519PrivateKey], mitm: Mitm, tmp_path: Path,
        offset: list[timedelta]) -> None:
    handle, key = fleet
    handle.publish("dcc-rules", {"rules": [1]})
    kiosk = _kiosk(fleet, mitm, tmp_path / "cache", offset)
    kiosk.sync()
    status, headers, body = mitm.recorded["/v1/trust/dcc-rules"]
    pinned = {key_id(key.public_key()): key.public_key()}
    stated = verify_statement(headers[FRESHNESS_HEADER], pinned, "dcc-rules", 1, body)
    assert stated is not None and abs(stated - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert verify_statement(headers[FRESHNESS_HEADER], pinned, "dcc-rules", 1, body + b" ") is None
    assert verify_statement(headers[FRESHNESS_HEADER], pinned, "dcc-rules", 2, body) is None
    assert verify_statement(headers[FRESHNESS_HEADER], pinned, "dcc-signers", 1, body) is None
    other = Ed25519PrivateKey.generate()
    forged = sign_statement(other, key_id(key.public_key()), "dcc-rules", 1, body,
                            datetime.now(timezone.utc))
    assert verify_statement(forged, pinned, "dcc-rules", 1, body) is None
    assert verify_statement("x" * 5000, pinned, "dcc-rules", 1, body) is None


def test_confirmation_is_never_later_than_the_kiosk_clock() -> None:
    key = Ed25519PrivateKey.generate()
    pinned = {key_id(key.public_key()): key.public_key()}
    now = datetime(2026, 1, 10, tzinfo=timezone.utc)
    raw = build_envelope(key, "dcc-rules", 1, [], now - timedelta(days=4))
    envelope = {"name": "dcc-rules", "version": 1, "issued_at": "2026-01-06T00:00:00.000Z"}
    ahead = sign_statement(key, key_id(key.public_key()), "dcc-rules", 1, raw, now + timedelta(hours=5))
    assert confirmed_at(ahead, pinned, envelope, raw, now) == (now, "statement")
    # A server that predates statements: the envelope's signed issue time decides the age.
    assert confirmed_at(None, pinned, envelope, raw, now) == (now - timedelta(days=4), "issued_at")
