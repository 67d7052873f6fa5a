"""Publishing trust data on the dashboard: signed with the server's fleet key, a logged-in
operator's upload bounded before it is read, a stranger's body never read past the small bound."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from firmware.protocol.envelope import verify_envelope
from firmware.protocol.finite_json import MAX_DEPTH
from firmware.protocol.timestamps import rfc3339, utc_now
from fleet.admission import SMALL_BODY_MAX_BYTES
from fleet.dashboard.auth import add_operator
from fleet.runner import ServerHandle
from fleet.server import run_in_thread
from fleet.trust import generate_signing_key

PASSWORD = "correct horse battery"
LIMIT = 64 * 1024  # the operator upload bound these tests run with


@pytest.fixture
def keyed_server(db_url: str, tmp_path: Path) -> Iterator[ServerHandle]:
    generate_signing_key(tmp_path / "fleet.key")
    handle = run_in_thread(db_url, signing_key_path=tmp_path / "fleet.key",
                           max_operator_upload_bytes=LIMIT)
    add_operator(handle.store, "alice", PASSWORD, rfc3339(utc_now()))
    yield handle
    handle.stop()


def login(handle: ServerHandle) -> tuple[requests.Session, str]:
    session = requests.Session()
    answer = session.post(handle.url + "/dashboard/login",
                          data={"name": "alice", "password": PASSWORD}, timeout=10)
    assert answer.status_code == 200
    page = session.get(handle.url + "/dashboard/trust", timeout=10).text
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match is not None
    return session, match.group(1)


def upload(session: requests.Session, url: str, name: str, content: bytes,
           csrf: str) -> requests.Response:
    return session.post(url + "/dashboard/trust", data={"name": name, "csrf": csrf},
                        files={"content": ("rules.json", content, "application/json")},
                        allow_redirects=False, timeout=30)


def body_size(session: requests.Session, url: str, content: bytes, name: str,
              csrf: str) -> int:
    """The multipart body's size for `content` (the boundary's length is fixed)."""
    request = requests.Request("POST", url + "/dashboard/trust",
                               data={"name": name, "csrf": csrf},
                               files={"content": ("rules.json", content, "application/json")})
    body = session.prepare_request(request).body
    assert isinstance(body, bytes)
    return len(body)


def padded_to(session: requests.Session, url: str, total: int, name: str, csrf: str) -> bytes:
    """A JSON document whose upload body is exactly `total` bytes (whitespace padding)."""
    base = json.dumps([{"Identifier": "GR-EU-0000"}]).encode()
    return base + b" " * (total - body_size(session, url, base, name, csrf))


def test_operator_publishes_a_file_signed_with_the_fleet_key(keyed_server: ServerHandle) -> None:
    session, csrf = login(keyed_server)
    rules = [{"Identifier": "GR-EU-0001", "Country": "EU", "<b>": "x"}]
    answer = upload(session, keyed_server.url, "dcc-rules", json.dumps(rules).encode(), csrf)
    assert answer.status_code == 201, answer.text
    assert re.search(r'id="published">Published <code>dcc-rules</code> version 1', answer.text)
    item = keyed_server.store.trust("dcc-rules")
    assert item is not None and item.version == 1
    public = keyed_server.app.state.signing_key.public_key()
    envelope = verify_envelope(item.envelope, [public], expected_name="dcc-rules")
    assert envelope["content"] == rules
    history = session.get(keyed_server.url + "/dashboard/trust", timeout=10).text
    assert re.search(r"<td>dcc-rules</td><td>1</td><td>alice</td>", history)
    again = upload(session, keyed_server.url, "dcc-rules", b"[]", csrf)
    assert again.status_code == 201 and keyed_server.store.trust("dcc-rules").version == 2


def test_upload_bound_for_an_operator(keyed_server: ServerHandle) -> None:
    """At the bound the file is published; one byte past it the body is refused (413) before
    it is read, and nothing is published."""
    session, csrf = login(keyed_server)
    at_bound = padded_to(session, keyed_server.url, LIMIT, "dcc-rules", csrf)
    answer = upload(session, keyed_server.url, "dcc-rules", at_bound, csrf)
    assert answer.status_code == 201, answer.text[:300]
    past_bound = padded_to(session, keyed_server.url, LIMIT + 1, "dcc-valuesets", csrf)
    past = upload(session, keyed_server.url, "dcc-valuesets", past_bound, csrf)
    assert past.status_code == 413 and past.json()["error"] == "BODY_TOO_LARGE"
    assert keyed_server.store.trust("dcc-valuesets") is None


def test_a_stranger_gets_the_small_bound(keyed_server: ServerHandle) -> None:
    stranger = requests.Session()
    big = padded_to(stranger, keyed_server.url, SMALL_BODY_MAX_BYTES + 1, "dcc-rules", "0" * 32)
    refused = upload(stranger, keyed_server.url, "dcc-rules", big, "0" * 32)
    assert refused.status_code == 413
    small = upload(stranger, keyed_server.url, "dcc-rules", b"[]", "0" * 32)
    assert small.status_code == 303 and small.headers["location"] == "/dashboard/login"
    forged = requests.Session()
    forged.cookies.set("hg_session", "eyJvIjoiYWxpY2UiLCJlIjo5OTk5OTk5OTk5fQ==.00")
    assert upload(forged, keyed_server.url, "dcc-rules", big, "0" * 32).status_code == 413
    assert keyed_server.store.trust("dcc-rules") is None


@pytest.mark.parametrize("name, content, csrf_ok, status, message", [
    ("dcc-rules", b"[]", False, 403, "The form expired"),
    ("dcc-rulez", b"[]", True, 422, "Choose one of the names kiosks fetch"),
    ("dcc-rules", b'{"exp": NaN}', True, 422, "is not JSON a kiosk accepts"),
    ("dcc-rules", b'{"exp": 1e400}', True, 422, "is not JSON a kiosk accepts"),
    ("dcc-rules", b"\xff\xfe not text", True, 422, "is not JSON a kiosk accepts"),
    ("dcc-rules", b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), True, 422,
     "is not JSON a kiosk accepts"),
])
def test_bad_uploads_are_refused_with_a_message(keyed_server: ServerHandle, name: str,
                                                content: bytes, csrf_ok: bool, status: int,
                                                message: str) -> None:
    session, csrf = login(keyed_server)
    answer = upload(session, keyed_server.url, name, content, csrf if csrf_ok else "0" * 32)
    assert answer.status_code == status
    assert message in answer.text
    assert keyed_server.store.trust(name) is None


def test_without_the_fleet_key_nothing_is_signed(db_url: str) -> None:
    handle = run_in_thread(db_url)
    try:
        add_operator(handle.store, "alice", PASSWORD, rfc3339(utc_now()))
        session, csrf = login(handle)
        answer = upload(session, handle.url, "dcc-rules", b"[]", csrf)
        assert answer.status_code == 503 and "serve --key" in answer.text
        assert handle.store.trust("dcc-rules") is None
    finally:
        handle.stop()


def test_hostile_file_name_is_escaped(keyed_server: Any) -> None:
    session, csrf = login(keyed_server)
    answer = session.post(keyed_server.url + "/dashboard/trust",
                          data={"name": "dcc-rules", "csrf": csrf},
                          files={"content": ("<script>x</script>.json", b"{", "text/plain")},
                          timeout=10)
    assert answer.status_code == 422
    assert "<script>x" not in answer.text and "&lt;script&gt;x" in answer.text
