"""Request bodies on the fleet server, over real HTTP on loopback: an unauthenticated body is never
buffered, the budget for bodies in flight and the per-device upload limit answer 503 with
Retry-After, a slow sender is cut off (driven by an injected clock), a legitimate upload still
works, and every bound holds at the bound and one past it. Also: the 401 answers for an unknown
device and a bad signature are byte for byte the same."""
from __future__ import annotations

import json
import socket
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.protocol.request_signing import sign_request
from firmware.sync.trustsync import register_device
from fleet.admission import RETRY_AFTER_S
from fleet.runner import ServerHandle
from fleet.server import run_in_thread
from tests.waiting import wait_for

EVENTS = "/v1/events"
KIB = 1024
HANG_GUARD_S = 30.0  # only so that a broken server fails a test instead of hanging it
BIG = 4 * 1024 * 1024  # what the attacker declares


class FakeClock:
    """The admission clock (monotonic seconds), moved only by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def start(db_url: str, **options: Any) -> ServerHandle:
    options.setdefault("rate_check_interval_s", None)  # rates are checked only when told
    return run_in_thread(db_url, **options)


def enrol(server: ServerHandle, device_id: str) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    token = f"token-{device_id}-0123456789"
    server.store.add_token(token, datetime.now(timezone.utc) + timedelta(hours=1))
    register_device(server.url, token, device_id, key)
    return key


def padded_body(size: int) -> bytes:
    """A valid empty batch of exactly `size` bytes (unknown keys are ignored)."""
    head, tail = b'{"events": [], "pad": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def open_request(server: ServerHandle, headers: dict[str, str], declared: int | None,
                 first_bytes: bytes = b"", path: str = EVENTS) -> socket.socket:
    """Send a POST's headers (Content-Length `declared`, or chunked when None) and the first
    bytes of its body, and leave the connection open."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=HANG_GUARD_S)
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
             "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append("Transfer-Encoding: chunked" if declared is None
                 else f"Content-Length: {declared}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + first_bytes)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes, bytes]:
    """(status, headers, body, raw bytes) of one response; reads to its end or EOF."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before an answer: {raw!r}")
        raw += data
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            break
        rest += data
        raw += data
    return status, headers, rest[:length], raw


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionError:
        return True


def signed(key: Ed25519PrivateKey, device_id: str, body: bytes) -> dict[str, str]:
    return sign_request(key, device_id, "POST", EVENTS, body)


@pytest.fixture
def server(db_url: str) -> Iterator[ServerHandle]:
    handle = start(db_url)
    yield handle
    handle.stop()


# -- unauthenticated bodies --------------------------------------------------------------------
def test_an_unauthenticated_big_body_is_refused_at_once_and_never_buffered(
        server: ServerHandle) -> None:
    key = enrol(server, "kiosk-1")
    stranger = Ed25519PrivateKey.generate()
    body = padded_body(BIG)
    stale = sign_request(key, "kiosk-1", "POST", EVENTS, body,
                         now=datetime.now(timezone.utc) - timedelta(hours=1))
    used = signed(key, "kiosk-1", b"{}")
    sock = open_request(server, used, 2)
    sock.sendall(b"{}")
    assert read_answer(sock)[0] == 422  # signed for "{}", not a batch: the nonce is now burnt
    sock.close()
    guard = server.app.state.body_guard
    wait_for(lambda: guard.uploads() == 0, "uploads() == 0")
    guard.reset_peak()
    cases = {"no headers": {}, "unknown device": signed(stranger, "kiosk-x", body),
             "stale timestamp": stale, "replayed nonce": used,
             "bad nonce": {**signed(key, "kiosk-1", body), "X-Nonce": "short"}}
    for case, headers in cases.items():
        # Headers declaring 4 MB and 1 KiB of it: the answer comes without the rest.
        sock = open_request(server, headers, BIG, body[:KIB])
        status, answer_headers, answer, _ = read_answer(sock)
        assert status == 401, case
        assert json.loads(answer)["error"].startswith("AUTH_"), case
        assert answer_headers["connection"] == "close"
        assert closed_by_server(sock), case
        sock.close()
    # A chunked body is refused the same way.
    sock = open_request(server, {}, None, b"400\r\n" + b"x" * KIB + b"\r\n")
    assert read_answer(sock)[0] == 401
    sock.close()
    assert guard.peak_bytes_in_flight == 0  # not one byte of them was buffered
    assert guard.bytes_in_flight == 0 and guard.uploads() == 0


def test_a_legitimate_upload_still_works_and_its_bytes_are_released(
        server: ServerHandle) -> None:
    from fleet.devclient import batch_body, make_chain

    key = enrol(server, "kiosk-1")
    body = batch_body(make_chain(key, "kiosk-1", 20))
    guard = server.app.state.body_guard
    wait_for(lambda: guard.uploads() == 0, "uploads() == 0")
    guard.reset_peak()
    sock = open_request(server, signed(key, "kiosk-1", body), len(body), body)
    status, _, answer, _ = read_answer(sock)
    sock.close()
    assert status == 200 and json.loads(answer)["acked"] == list(range(1, 21))
    assert guard.peak_bytes_in_flight == len(body)
    wait_for(lambda: guard.uploads() == 0, "uploads() == 0")
    assert guard.bytes_in_flight == 0


def test_the_upload_size_limit_at_the_bound_and_one_past(tmp_path: Any) -> None:
    limit = 96 * KIB
    with start(f"sqlite:///{tmp_path}/f.db", max_body_bytes=limit) as server:
        key = enrol(server, "kiosk-1")
        for size, expected in ((limit, 200), (limit + 1, 413)):
            body = padded_body(size)
            sock = open_request(server, signed(key, "kiosk-1", body), size, body)
            status, _, answer, _ = read_answer(sock)
            sock.close()
            assert status == expected, size
        assert json.loads(answer)["error"] == "BODY_TOO_LARGE"


# -- the budget for bodies in flight -----------------------------------------------------------
def test_the_budget_admits_exactly_its_size_and_refuses_one_byte_more(tmp_path: Any) -> None:
    budget = 512 * KIB
    with start(f"sqlite:///{tmp_path}/f.db", body_budget_bytes=budget,
               max_body_bytes=2 * budget) as server:
        guard = server.app.state.body_guard
        keys = {name: enrol(server, name) for name in ("kiosk-1", "kiosk-2")}
        # Alone: a body of exactly the budget is admitted, one byte more is not.
        exact = padded_body(budget)
        sock = open_request(server, signed(keys["kiosk-1"], "kiosk-1", exact), budget, exact)
        assert read_answer(sock)[0] == 200
        sock.close()
        wait_for(lambda: guard.uploads() == 0, "uploads() == 0")
        over = padded_body(budget + 1)
        sock = open_request(server, signed(keys["kiosk-1"], "kiosk-1", over), budget + 1)
        status, headers, answer, _ = read_answer(sock)
        sock.close()
        assert (status, json.loads(answer)["error"]) == (503, "SERVER_BUSY")
        assert headers["retry-after"] == str(RETRY_AFTER_S)
        wait_for(lambda: guard.uploads() == 0, "uploads() == 0")

        # Shared: one upload has sent 200 KiB of 300 KiB; the rest of the budget is admitted
        # to another device, one byte more is refused before its body is read.
        held = 200 * KIB
        slow_body = padded_body(300 * KIB)
        slow = open_request(server, signed(keys["kiosk-1"], "kiosk-1", slow_body),
                            len(slow_body), slow_body[:held])
        wait_for(lambda: guard.received_total() == held, "received_total() == held")
        assert guard.bytes_in_flight == held  # counted as it arrives, not as declared
        rest = padded_body(budget - held)
        sock = open_request(server, signed(keys["kiosk-2"], "kiosk-2", rest), len(rest), rest)
        assert read_answer(sock)[0] == 200
        sock.close()
        wait_for(lambda: guard.uploads() == 1, "uploads() == 1")
        one_more = padded_body(budget - held + 1)
        sock = open_request(server, signed(keys["kiosk-2"], "kiosk-2", one_more),
                            len(one_more))
        status, headers, answer, _ = read_answer(sock)
        sock.close()
        assert (status, json.loads(answer)["error"]) == (503, "SERVER_BUSY")
        assert headers["retry-after"] == str(RETRY_AFTER_S)
        # The held upload completes normally and gives its bytes back.
        slow.sendall(slow_body[held:])
        assert read_answer(slow)[0] == 200
        slow.close()
        wait_for(lambda: guard.uploads() == 0, "uploads() == 0")
        assert guard.bytes_in_flight == 0
        assert guard.peak_bytes_in_flight == budget


def test_a_slow_sender_declaring_a_large_body_holds_only_what_it_sent(tmp_path: Any) -> None:
    """Declaring is free: the budget counts bytes that arrived, so trickling senders (headers
    that authenticated, bodies that do not come) cannot fill it and lock others out."""
    budget = 256 * KIB
    with start(f"sqlite:///{tmp_path}/f.db", body_budget_bytes=budget,
               max_body_bytes=budget) as server:
        guard = server.app.state.body_guard
        keys = {name: enrol(server, name) for name in ("kiosk-1", "kiosk-2", "kiosk-3")}
        # Together they declare more than the budget; each has sent 1 KiB.
        body = padded_body(200 * KIB)
        slow = [open_request(server, signed(keys[name], name, body), len(body), body[:KIB])
                for name in ("kiosk-1", "kiosk-2")]
        wait_for(lambda: guard.received_total() == 2 * KIB, "received_total() == 2 * KIB")
        assert guard.bytes_in_flight == 2 * KIB
        small = padded_body(64 * KIB)
        sock = open_request(server, signed(keys["kiosk-3"], "kiosk-3", small), len(small),
                            small)
        assert read_answer(sock)[0] == 200
        sock.close()
        for sock in slow:
            sock.close()
        wait_for(lambda: guard.uploads() == 0, "uploads() == 0")
        assert guard.bytes_in_flight == 0


def test_a_chunked_body_is_counted_as_it_arrives_against_the_budget(tmp_path: Any) -> None:
    budget = 128 * KIB
    with start(f"sqlite:///{tmp_path}/f.db", body_budget_bytes=budget,
               max_body_bytes=4 * budget) as server:
        guard = server.app.state.body_guard
        key = enrol(server, "kiosk-1")
        body = padded_body(budget + 1)
        sock = open_request(server, signed(key, "kiosk-1", body), None)
        for start_at in range(0, len(body), 16 * KIB):
            piece = body[start_at:start_at + 16 * KIB]
            try:
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            except ConnectionError:
                break
        else:
            sock.sendall(b"0\r\n\r\n")
        status, headers, answer, _ = read_answer(sock)
        sock.close()
        assert (status, json.loads(answer)["error"]) == (503, "SERVER_BUSY")
        assert headers["retry-after"] == str(RETRY_AFTER_S)
        assert guard.peak_bytes_in_flight <= budget
        wait_for(lambda: guard.uploads() == 0, "uploads() == 0")
        assert guard.bytes_in_flight == 0


# -- uploads per device ------------------------------------------------------------------------
def test_per_device_upload_limit_at_the_bound_and_one_past(tmp_path: Any) -> None:
    with start(f"sqlite:///{tmp_path}/f.db", max_uploads_per_device=2) as server:
        guard = server.app.state.body_guard
        busy, other = enrol(server, "kiosk-1"), enrol(server, "kiosk-2")
        size = 100 * KIB
        bodies = [padded_body(size - n) for n in range(3)]
        held = [open_request(server, signed(busy, "kiosk-1", body), len(body), body[:KIB])
                for body in bodies[:2]]
        # the limit: both admitted
        wait_for(lambda: guard.received_total() == 2 * KIB, "received_total() == 2 * KIB")
        third = open_request(server, signed(busy, "kiosk-1", bodies[2]), len(bodies[2]))
        status, headers, answer, _ = read_answer(third)
        third.close()
        assert (status, json.loads(answer)["error"]) == (503, "DEVICE_BUSY")
        assert headers["retry-after"] == str(RETRY_AFTER_S)
        # Another device is not held up by this one.
        body = padded_body(size)
        sock = open_request(server, signed(other, "kiosk-2", body), size, body)
        assert read_answer(sock)[0] == 200
        sock.close()
        # When one of the two finishes, the device may upload again.
        held[0].sendall(bodies[0][KIB:])
        assert read_answer(held[0])[0] == 200
        wait_for(lambda: guard.uploads() == 1, "uploads() == 1")
        sock = open_request(server, signed(busy, "kiosk-1", bodies[2]), len(bodies[2]),
                            bodies[2])
        assert read_answer(sock)[0] == 200
        sock.close()
        held[1].sendall(bodies[1][KIB:])
        assert read_answer(held[1])[0] == 200
        for sock in held:
            sock.close()
        wait_for(lambda: guard.uploads() == 0, "uploads() == 0")


# -- receive rate ------------------------------------------------------------------------------
def test_a_sender_behind_the_minimum_rate_is_cut_and_one_on_it_is_not(tmp_path: Any) -> None:
    clock = FakeClock()
    rate, grace = 1000, 10.0
    with start(f"sqlite:///{tmp_path}/f.db", body_clock=clock, min_receive_rate_bps=rate,
               receive_grace_s=grace) as server:
        guard = server.app.state.body_guard
        key = enrol(server, "kiosk-1")
        size = 100 * KIB
        on_rate, behind = padded_body(size), padded_body(size - 1)
        started = clock.now
        keeping_up = open_request(server, signed(key, "kiosk-1", on_rate), size,
                                  on_rate[:5000])
        slow = open_request(server, signed(key, "kiosk-1", behind), size - 1, behind[:4999])
        wait_for(lambda: guard.received_total() == 9999, "received_total() == 9999")
        # Within the grace nothing is required.
        clock.now = started + grace
        assert guard.check_rates() == 0
        # 5 s past the grace, 5000 bytes are due: exactly on the rate passes, 1 byte short not.
        clock.now = started + grace + 5.0
        assert guard.check_rates() == 1
        status, headers, answer, _ = read_answer(slow)
        assert (status, json.loads(answer)["error"]) == (408, "BODY_TOO_SLOW")
        assert headers["connection"] == "close" and closed_by_server(slow)
        slow.close()
        wait_for(lambda: guard.uploads() == 1, "uploads() == 1")
        assert guard.slow_senders_cut == 1
        # The other one finishes and is answered as usual.
        keeping_up.sendall(on_rate[5000:])
        assert read_answer(keeping_up)[0] == 200
        keeping_up.close()
        wait_for(lambda: guard.uploads() == 0, "uploads() == 0")
        assert guard.bytes_in_flight == 0


def test_a_slow_registration_body_is_cut_too(tmp_path: Any) -> None:
    """Registration is unauthenticated by design: its body is small and under the same rate."""
    clock = FakeClock()
    with start(f"sqlite:///{tmp_path}/f.db", body_clock=clock, min_receive_rate_bps=100,
               receive_grace_s=1.0) as server:
        guard = server.app.state.body_guard
        sock = open_request(server, {}, 2000, b'{"token": "', path="/v1/devices/register")
        wait_for(lambda: guard.received_total() == 11, "received_total() == 11")
        clock.now += 1.0 + 0.2  # 20 bytes due by now, 11 came
        assert guard.check_rates() == 1
        status, _, answer, _ = read_answer(sock)
        sock.close()
        assert (status, json.loads(answer)["error"]) == (408, "BODY_TOO_SLOW")
        # ...and it may not be large at all: 16 KiB is admitted, one byte more is 413.
        for size, expected in ((16 * KIB, 422), (16 * KIB + 1, 413)):
            body = b'{"token": "' + b"t" * (size - 13) + b'"}'
            sock = open_request(server, {}, size, body, path="/v1/devices/register")
            assert read_answer(sock)[0] == expected, size
            sock.close()


# -- one opaque answer -------------------------------------------------------------------------
def test_unknown_device_and_bad_signature_get_byte_identical_answers(
        server: ServerHandle, caplog: pytest.LogCaptureFixture) -> None:
    key = enrol(server, "kiosk-1")
    stranger = Ed25519PrivateKey.generate()
    body = b'{"events": []}'
    replayed = signed(key, "kiosk-1", body)
    sock = open_request(server, replayed, len(body), body)
    assert read_answer(sock)[0] == 200
    sock.close()
    answers = {}
    for case, headers in {"unknown device": signed(stranger, "kiosk-404", body),
                          "bad signature": signed(stranger, "kiosk-1", body),
                          "replayed nonce": replayed}.items():
        sock = open_request(server, headers, len(body), body)
        status, _, answer, raw = read_answer(sock)
        sock.close()
        assert status == 401 and json.loads(answer)["error"] == "AUTH_FAILED", case
        # The Date header is the only line that may differ (it ticks each second).
        answers[case] = [line for line in raw.split(b"\r\n")
                         if not line.lower().startswith(b"date:")]
    assert answers["unknown device"] == answers["bad signature"] == answers["replayed nonce"]
    # The server's log alone says which and who.
    assert "AUTH_UNKNOWN_DEVICE (device 'kiosk-404')" in caplog.text
    assert "AUTH_BAD_SIGNATURE (device 'kiosk-1')" in caplog.text
    assert "AUTH_REPLAYED_NONCE (device 'kiosk-1')" in caplog.text
