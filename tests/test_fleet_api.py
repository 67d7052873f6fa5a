"""Fleet API over real HTTP on loopback: registration and signed event ingest, SQLite and
PostgreSQL (the PostgreSQL half skips with a reason when no server binaries are installed)."""
from __future__ import annotations

import base64
import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.protocol.event_codec import GENESIS_HASH, check_event, check_link, make_event
from firmware.protocol.request_signing import sign_request
from firmware.sync.trustsync import RegistrationError, register_device
from fleet.devclient import batch_body, make_chain, signed_post, upload
from fleet.runner import ServerHandle
from fleet.server import run_in_thread
from fleet.storage import MIGRATIONS

DEVICE = "kiosk-0001"
DENIED = {"decision": "denied"}  # the least body the decision kind allows
RESTART_BODY = {"reason": "EVENTLOG_MISSING", "previous_start": 1}


@pytest.fixture
def server(db_url: str) -> Iterator[ServerHandle]:
    handle = run_in_thread(db_url)
    yield handle
    handle.stop()


def new_token(handle: ServerHandle, valid_for: timedelta = timedelta(hours=1)) -> str:
    token = base64.urlsafe_b64encode(Ed25519PrivateKey.generate().sign(b"t")[:24]).decode()
    handle.store.add_token(token.rstrip("="), datetime.now(timezone.utc) + valid_for)
    return token.rstrip("=")


@pytest.fixture
def device(server: ServerHandle) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    register_device(server.url, new_token(server), DEVICE, key)
    return key


def raw_public(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


# -- registration ------------------------------------------------------------------------------
def test_registration_token_is_one_time(server: ServerHandle) -> None:
    token = new_token(server)
    key = Ed25519PrivateKey.generate()
    assert register_device(server.url, token, "kiosk-a", key) == "kiosk-a"
    # A lost answer retried with the same token, device and key is still a success...
    assert register_device(server.url, token, "kiosk-a", key) == "kiosk-a"
    # ...but the token cannot enrol anything else.
    with pytest.raises(RegistrationError) as refused:
        register_device(server.url, token, "kiosk-b", Ed25519PrivateKey.generate())
    assert (refused.value.status, refused.value.code) == (403, "TOKEN_INVALID")
    assert [d.device_id for d in server.store.devices()] == ["kiosk-a"]


def test_registration_refuses_unknown_and_expired_tokens(server: ServerHandle) -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(RegistrationError) as unknown:
        register_device(server.url, "never-issued-token-0000", "kiosk-a", key)
    assert unknown.value.status == 403
    expired = new_token(server, valid_for=timedelta(seconds=-5))
    with pytest.raises(RegistrationError) as old:
        register_device(server.url, expired, "kiosk-a", key)
    assert (old.value.status, old.value.code) == (403, "TOKEN_INVALID")
    assert server.store.devices() == []


def test_registration_conflict_with_another_key(server: ServerHandle) -> None:
    register_device(server.url, new_token(server), "kiosk-a", Ed25519PrivateKey.generate())
    with pytest.raises(RegistrationError) as conflict:
        register_device(server.url, new_token(server), "kiosk-a", Ed25519PrivateKey.generate())
    assert (conflict.value.status, conflict.value.code) == (409, "DEVICE_KEY_CONFLICT")


def test_concurrent_registrations_spend_a_token_once(server: ServerHandle) -> None:
    token = new_token(server)
    outcomes: list[str] = []

    def enrol(index: int) -> None:
        try:
            register_device(server.url, token, f"kiosk-race-{index}",
                            Ed25519PrivateKey.generate())
            outcomes.append("created")
        except RegistrationError as error:
            outcomes.append(error.code)

    threads = [threading.Thread(target=enrol, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["TOKEN_INVALID"] * 7 + ["created"]
    assert len(server.store.devices()) == 1


@pytest.mark.parametrize("payload", [
    {}, {"token": "x" * 20, "device_id": "k", "public_key": "short"},
    {"token": "x" * 20, "device_id": "bad id with spaces", "public_key": "A" * 43 + "="},
    {"token": "x" * 20, "device_id": "k", "public_key": "A" * 43 + "=", "extra": 1},
])
def test_registration_rejects_malformed_bodies(server: ServerHandle, payload: dict) -> None:
    response = requests.post(server.url + "/v1/devices/register", json=payload, timeout=10)
    assert response.status_code == 422
    assert response.json()["error"] == "MALFORMED_REQUEST"


# -- ingest ------------------------------------------------------------------------------------
def test_good_batch_newest_first_is_stored_exactly(server: ServerHandle,
                                                   device: Ed25519PrivateKey) -> None:
    events = make_chain(device, DEVICE, 20)
    with requests.Session() as http:
        answer = upload(http, server.url, device, DEVICE, list(reversed(events)))
    assert answer == {"acked": list(range(1, 21)), "duplicates": 0, "rejected": []}
    stored = server.store.events(DEVICE)
    assert stored == events
    for previous, event in zip(stored, stored[1:]):
        assert check_link(previous, event) is None
    assert all(check_event(event, device.public_key()) is None for event in stored)


def test_duplicates_are_acknowledged_and_dropped(server: ServerHandle,
                                                 device: Ed25519PrivateKey) -> None:
    events = make_chain(device, DEVICE, 10)
    with requests.Session() as http:
        upload(http, server.url, device, DEVICE, events[:6])
        answer = upload(http, server.url, device, DEVICE, events[3:] + events[3:5])
    assert answer["acked"] == [4, 4, 5, 5, 6, 7, 8, 9, 10]
    assert answer["duplicates"] == 5 and answer["rejected"] == []
    assert [e.seq for e in server.store.events(DEVICE)] == list(range(1, 11))


def test_out_of_order_batches_link_up(server: ServerHandle, device: Ed25519PrivateKey) -> None:
    events = make_chain(device, DEVICE, 9)
    with requests.Session() as http:
        for part in (events[6:], events[:3], events[3:6]):  # live first, backlog behind
            assert upload(http, server.url, device, DEVICE, part)["rejected"] == []
    assert server.store.events(DEVICE) == events


def test_forged_and_tampered_events_are_rejected_and_flagged(
        server: ServerHandle, device: Ed25519PrivateKey) -> None:
    events = make_chain(device, DEVICE, 5)
    intruder = Ed25519PrivateKey.generate()
    forged = make_event(intruder, DEVICE, 6, events[-1].ts, "decision", {"decision": "granted"},
                        events[-1].hash)
    tampered_wire = make_chain(device, DEVICE, 7)[6].to_wire()
    tampered_wire["body"] = {"decision": "granted", "reason": "edited"}
    body = json.dumps({"events": [e.to_wire() for e in events] + [forged.to_wire(),
                                                                   tampered_wire]}).encode()
    with requests.Session() as http:
        answer = signed_post(http, server.url, device, DEVICE, body).json()
    assert answer["acked"] == [1, 2, 3, 4, 5]
    assert answer["rejected"] == [{"seq": 6, "reason": "EVENT_BAD_SIGNATURE"},
                                  {"seq": 7, "reason": "EVENT_HASH_MISMATCH"}]
    assert [e.seq for e in server.store.events(DEVICE)] == [1, 2, 3, 4, 5]
    flagged = {(i["seq"], i["reason"]) for i in server.store.incidents(DEVICE)}
    assert flagged == {(6, "EVENT_BAD_SIGNATURE"), (7, "EVENT_HASH_MISMATCH")}


def test_fork_for_an_existing_sequence_is_rejected(server: ServerHandle,
                                                   device: Ed25519PrivateKey) -> None:
    events = make_chain(device, DEVICE, 3)
    # Validly signed by the device, but a different event for seq 2: a fork of the log.
    fork = make_event(device, DEVICE, 2, events[1].ts, "decision", {"decision": "granted"},
                      events[0].hash)
    with requests.Session() as http:
        upload(http, server.url, device, DEVICE, events)
        answer = upload(http, server.url, device, DEVICE, [fork])
    assert answer == {"acked": [], "duplicates": 0,
                      "rejected": [{"seq": 2, "reason": "EVENT_FORK"}]}
    assert server.store.events(DEVICE) == events
    assert ("EVENT_FORK" in {i["reason"] for i in server.store.incidents(DEVICE)})


def test_broken_chain_is_rejected_from_either_side(server: ServerHandle,
                                                   device: Ed25519PrivateKey) -> None:
    events = make_chain(device, DEVICE, 6)
    bad_prev = make_event(device, DEVICE, 4, events[3].ts, "decision", events[3].body,
                          "ab" * 32)
    with requests.Session() as http:
        upload(http, server.url, device, DEVICE, events[:3] + events[4:])  # 1-3 and 5-6
        answer = upload(http, server.url, device, DEVICE, [bad_prev])
        assert answer["rejected"] == [{"seq": 4, "reason": "EVENT_CHAIN_BROKEN"}]
        # A seq-4 event that links to 3 but is not the one 5 points back to: also broken.
        other = make_event(device, DEVICE, 4, events[3].ts, "decision", {**DENIED, "x": 1},
                           events[2].hash)
        answer = upload(http, server.url, device, DEVICE, [other])
        assert answer["rejected"] == [{"seq": 4, "reason": "EVENT_CHAIN_BROKEN"}]
        assert upload(http, server.url, device, DEVICE, [events[3]])["acked"] == [4]
        second_start = make_event(device, DEVICE, 7, events[5].ts, "decision", DENIED,
                                  GENESIS_HASH)
        answer = upload(http, server.url, device, DEVICE, [second_start])
        assert answer["rejected"] == [{"seq": 7, "reason": "EVENT_CHAIN_BROKEN"}]
    assert server.store.events(DEVICE) == events


def test_signed_event_with_personal_data_is_refused(server: ServerHandle,
                                                    device: Ed25519PrivateKey) -> None:
    events = make_chain(device, DEVICE, 2)
    leaky = make_event(device, DEVICE, 3, events[1].ts, "decision",
                       {"decision": "granted", "holder": {"familyName": "Musterfrau"}},
                       events[1].hash)
    with requests.Session() as http:
        answer = upload(http, server.url, device, DEVICE, events + [leaky])
    assert answer["rejected"] == [{"seq": 3, "reason": "EVENT_PERSONAL_DATA"}]
    assert server.store.events(DEVICE) == events
    incidents = server.store.incidents(DEVICE)
    assert [i["reason"] for i in incidents] == ["EVENT_PERSONAL_DATA"]
    assert "Musterfrau" not in json.dumps(incidents)


def test_event_of_another_device_is_rejected(server: ServerHandle,
                                             device: Ed25519PrivateKey) -> None:
    foreign = make_chain(device, "kiosk-9999", 1)
    with requests.Session() as http:
        answer = upload(http, server.url, device, DEVICE, foreign)
    assert answer["rejected"] == [{"seq": 1, "reason": "EVENT_WRONG_DEVICE"}]


def test_concurrent_overlapping_uploads_store_each_event_once(
        server: ServerHandle, device: Ed25519PrivateKey) -> None:
    events = make_chain(device, DEVICE, 60)
    answers: list[dict] = []

    def sender(part: list) -> None:
        with requests.Session() as http:
            for start in range(0, len(part), 10):
                answers.append(upload(http, server.url, device, DEVICE, part[start:start + 10]))

    threads = [threading.Thread(target=sender, args=(order,))
               for order in (events, list(reversed(events)), events[20:] + events[:20])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(a["rejected"] == [] for a in answers)
    assert server.store.events(DEVICE) == events
    assert sum(len(a["acked"]) - a["duplicates"] for a in answers) == 60


# -- request authentication --------------------------------------------------------------------
def test_replayed_request_is_refused(server: ServerHandle, device: Ed25519PrivateKey,
                                     caplog: pytest.LogCaptureFixture) -> None:
    body = batch_body(make_chain(device, DEVICE, 2))
    headers = sign_request(device, DEVICE, "POST", "/v1/events", body)
    first = requests.post(server.url + "/v1/events", data=body, headers=headers, timeout=10)
    again = requests.post(server.url + "/v1/events", data=body, headers=headers, timeout=10)
    assert first.status_code == 200
    assert (again.status_code, again.json()["error"]) == (401, "AUTH_FAILED")
    assert f"AUTH_REPLAYED_NONCE (device '{DEVICE}')" in caplog.text  # the reason: logged only


def test_unknown_device_is_refused(server: ServerHandle,
                                   caplog: pytest.LogCaptureFixture) -> None:
    stranger = Ed25519PrivateKey.generate()
    with requests.Session() as http:
        response = signed_post(http, server.url, stranger, "kiosk-x",
                               batch_body(make_chain(stranger, "kiosk-x", 1)))
    assert (response.status_code, response.json()["error"]) == (401, "AUTH_FAILED")
    assert "AUTH_UNKNOWN_DEVICE (device 'kiosk-x')" in caplog.text
    assert server.store.events("kiosk-x") == []


@pytest.mark.parametrize("offset", [timedelta(minutes=-10), timedelta(minutes=10)])
def test_stale_or_future_timestamp_is_refused(server: ServerHandle, device: Ed25519PrivateKey,
                                              offset: timedelta) -> None:
    with requests.Session() as http:
        response = signed_post(http, server.url, device, DEVICE,
                               batch_body(make_chain(device, DEVICE, 1)),
                               now=datetime.now(timezone.utc) + offset)
    assert (response.status_code, response.json()["error"]) == (401, "AUTH_STALE_TIMESTAMP")


def test_wrong_request_signature_is_refused(server: ServerHandle,
                                            device: Ed25519PrivateKey) -> None:
    body = batch_body(make_chain(device, DEVICE, 2))
    signed_by_other = sign_request(Ed25519PrivateKey.generate(), DEVICE, "POST", "/v1/events",
                                   body)
    altered = sign_request(device, DEVICE, "POST", "/v1/events", body)
    for headers, sent in ((signed_by_other, body), (altered, body.replace(b"granted", b"grantee"))):
        response = requests.post(server.url + "/v1/events", data=sent, headers=headers,
                                 timeout=10)
        assert (response.status_code, response.json()["error"]) == (401, "AUTH_FAILED")
    missing = requests.post(server.url + "/v1/events", data=body, timeout=10)
    assert (missing.status_code, missing.json()["error"]) == (401, "AUTH_MISSING")
    assert server.store.events(DEVICE) == []


# -- malformed and oversize input --------------------------------------------------------------
@pytest.mark.parametrize("body, code", [
    (b"{not json", "MALFORMED_JSON"),
    (b"\xff\xfe", "MALFORMED_JSON"),
    (b"[" * 5000 + b"]" * 5000, "MALFORMED_JSON"),
    (b'{"events": 3}', "MALFORMED_REQUEST"),
    (b'[]', "MALFORMED_REQUEST"),
    (b'{"events": [1]}', "MALFORMED_EVENT"),
    (b'{"events": [{"seq": 1}]}', "MALFORMED_EVENT"),
    (b'{"events": [], "x": NaN}', "MALFORMED_JSON"),
])
def test_malformed_bodies_get_422(server: ServerHandle, device: Ed25519PrivateKey, body: bytes,
                                  code: str) -> None:
    with requests.Session() as http:
        response = signed_post(http, server.url, device, DEVICE, body)
    assert (response.status_code, response.json()["error"]) == (422, code)


@pytest.mark.parametrize("field, value", [("seq", 2**63), ("seq", -1), ("kind", "\ud800"),
                                          ("kind", "a\x00b"), ("seq", True)])
def test_unstorable_event_values_get_422(server: ServerHandle, device: Ed25519PrivateKey,
                                         field: str, value: object) -> None:
    wire = make_chain(device, DEVICE, 1)[0].to_wire()
    wire[field] = value
    body = json.dumps({"events": [wire]}).encode()
    with requests.Session() as http:
        response = signed_post(http, server.url, device, DEVICE, body)
    assert (response.status_code, response.json()["error"]) == (422, "MALFORMED_EVENT")
    assert server.store.events(DEVICE) == []


def test_oversize_bodies_get_413(server: ServerHandle, device: Ed25519PrivateKey) -> None:
    big = b'{"events": [], "pad": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    with requests.Session() as http:
        declared = signed_post(http, server.url, device, DEVICE, big)
        headers = sign_request(device, DEVICE, "POST", "/v1/events", big)
        chunked = http.post(server.url + "/v1/events", data=iter([big[i:i + 65536] for i in
                                                                  range(0, len(big), 65536)]),
                            headers=headers, timeout=30)
        many = signed_post(http, server.url, device, DEVICE,
                           batch_body(make_chain(device, DEVICE, 1001)))
    assert (declared.status_code, declared.json()["error"]) == (413, "BODY_TOO_LARGE")
    assert (chunked.status_code, chunked.json()["error"]) == (413, "BODY_TOO_LARGE")
    assert (many.status_code, many.json()["error"]) == (413, "BATCH_TOO_LARGE")


# -- time, health, restart ---------------------------------------------------------------------
def test_time_endpoint_and_date_header(server: ServerHandle) -> None:
    before = datetime.now(timezone.utc)
    response = requests.get(server.url + "/v1/time", timeout=10)
    after = datetime.now(timezone.utc)
    now = datetime.fromisoformat(response.json()["now"])
    assert before - timedelta(seconds=1) <= now <= after + timedelta(seconds=1)
    assert response.headers["Date"].endswith("GMT")
    health = requests.get(server.url + "/healthz", timeout=10).json()
    assert health["status"] == "ok" and health["schema_version"] >= 1


def test_store_and_nonces_survive_a_restart(db_url: str) -> None:
    key = Ed25519PrivateKey.generate()
    events = make_chain(key, DEVICE, 5)
    body = batch_body(events)
    headers = sign_request(key, DEVICE, "POST", "/v1/events", body)
    with run_in_thread(db_url) as first:
        register_device(first.url, new_token(first), DEVICE, key)
        assert requests.post(first.url + "/v1/events", data=body, headers=headers,
                             timeout=10).status_code == 200
    with run_in_thread(db_url) as second:
        replay = requests.post(second.url + "/v1/events", data=body, headers=headers,
                               timeout=10)
        assert (replay.status_code, replay.json()["error"]) == (401, "AUTH_FAILED")
        assert second.store.events(DEVICE) == events
        assert second.store.schema_version() == MIGRATIONS[-1][0]
        assert raw_public(key) == second.store.device_key(DEVICE)


def test_store_failure_is_a_json_503_and_nothing_is_acknowledged(
        server: ServerHandle, device: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    def locked(*_: object) -> bool:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(server.store, "use_nonce", locked)
    with requests.Session() as http:
        response = signed_post(http, server.url, device, DEVICE,
                               batch_body(make_chain(device, DEVICE, 2)))
    assert (response.status_code, response.json()["error"]) == (503, "STORE_UNAVAILABLE")
    assert response.headers["Retry-After"] == "5"
    monkeypatch.undo()
    assert server.store.events(DEVICE) == []


def test_a_kiosk_that_lost_its_log_restarts_its_chain_past_the_old_one(
        server: ServerHandle, device: Ed25519PrivateKey) -> None:
    """A new chain may start (genesis prev_hash) only with a signed `log_restarted` event; it is
    stored beside the old chain, flagged as an incident, and its own links are checked."""
    from firmware.protocol.event_codec import LOG_RESTARTED_KIND

    old = make_chain(device, DEVICE, 4)
    start = 1_000_000
    restart = make_event(device, DEVICE, start, old[-1].ts, LOG_RESTARTED_KIND, RESTART_BODY,
                         GENESIS_HASH)
    after = make_event(device, DEVICE, start + 1, old[-1].ts, "decision", {"decision": "denied"},
                       restart.hash)
    stray = make_event(device, DEVICE, start + 2, old[-1].ts, "decision", DENIED, "ab" * 32)
    with requests.Session() as http:
        upload(http, server.url, device, DEVICE, old)
        # newest first, as the uploader sends a backlog: the follower arrives before the start
        assert upload(http, server.url, device, DEVICE, [after])["acked"] == [start + 1]
        assert upload(http, server.url, device, DEVICE, [restart])["acked"] == [start]
        answer = upload(http, server.url, device, DEVICE, [stray])
        assert answer["rejected"] == [{"seq": start + 2, "reason": "EVENT_CHAIN_BROKEN"}]
        # a plain event claiming a second chain start is still refused
        bogus = make_event(device, DEVICE, 2 * start, old[-1].ts, "decision", DENIED, GENESIS_HASH)
        answer = upload(http, server.url, device, DEVICE, [bogus])
        assert answer["rejected"] == [{"seq": 2 * start, "reason": "EVENT_CHAIN_BROKEN"}]
        # a restart that collides with a stored event is a fork
        clash = make_event(device, DEVICE, 3, old[-1].ts, LOG_RESTARTED_KIND, RESTART_BODY,
                           GENESIS_HASH)
        answer = upload(http, server.url, device, DEVICE, [clash])
        assert answer["rejected"] == [{"seq": 3, "reason": "EVENT_FORK"}]
    assert [e.seq for e in server.store.events(DEVICE)] == [1, 2, 3, 4, start, start + 1]
    reasons = {(i["seq"], i["reason"]) for i in server.store.incidents(DEVICE)}
    assert (start, "EVENT_LOG_RESTARTED") in reasons


def test_served_connections_have_nagle_off(tmp_path: Path) -> None:
    """The test and demo server binds its own socket: it must say TCP, or asyncio leaves Nagle
    on and every answer on a kept-alive connection waits for a delayed ACK (~40 ms)."""
    import socket

    import requests

    handle = run_in_thread(f"sqlite:///{tmp_path}/fleet.db")
    try:
        with requests.Session() as session:
            assert session.get(handle.url + "/healthz", timeout=10).status_code == 200
            connections = list(handle._server.server_state.connections)
            assert connections, "the kept-alive connection is open on the server"
            for protocol in connections:
                sock = protocol.transport.get_extra_info("socket")
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        handle.stop()
