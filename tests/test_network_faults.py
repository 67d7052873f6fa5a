"""Network faults between the kiosk uploader and the fleet server: a byte-level TCP proxy on
loopback drops, delays, resets, answers 5xx and truncates answers at random (seeded); the server
is also down for a stretch and comes back on the same database. In the end the server holds
every event exactly once, the chain verifies, and nothing is left pending on the kiosk.
"""
from __future__ import annotations

import random
import select
import socket
import struct
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.eventlog.log import EventLog
from firmware.protocol.event_codec import check_event, check_link
from firmware.eventlog.outbox import Outbox
from firmware.sync.trustsync import register_device
from firmware.sync.uploader import Uploader
from fleet.server import run_in_thread
from tests.waiting import wait_for

IO_TIMEOUT_S = 10.0
SETTLE_DEADLINE_S = 120.0  # a safety net against hangs, not a speed requirement
FAULTS = ("pass", "drop", "reset", "delay", "503", "500", "truncate", "ack_lost", "stall")


class TcpFaultProxy:
    """Accepts on loopback; each client connection gets one fault: first every kind once (each
    followed by a clean pass), then drawn from a seeded RNG. While the upstream is down a
    connection is reset. Bytes are piped otherwise untouched."""

    def __init__(self, upstream_port: int, seed: int, fault_rate: float) -> None:
        self.upstream_port = upstream_port
        self.rng = random.Random(seed)
        self.fault_rate = fault_rate
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def served(self) -> int:
        """Client connections accepted so far (each one request)."""
        with self.lock:
            return sum(self.counts.values())

    def _client_gone(self, client: socket.socket) -> bool:
        """The client closed its end (EOF or RST): it gave up. It sent its whole request, so
        anything readable now is that close. Also True once the proxy is closing."""
        if self.closing.is_set():
            return True
        readable, _, _ = select.select([client], [], [], 0)
        if not readable:
            return False
        try:
            return client.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _draw(self) -> str:
        with self.lock:
            served = sum(self.counts.values())
            if served < 2 * len(FAULTS):  # every fault early, interleaved with good passes
                mode = FAULTS[served // 2 + 1] if served % 2 == 0 and \
                    served // 2 + 1 < len(FAULTS) else "pass"
            else:
                mode = (self.rng.choice(FAULTS[1:]) if self.rng.random() < self.fault_rate
                        else "pass")
            delay = self.rng.uniform(0.05, 0.4)
            cut = self.rng.random()  # how much of the answer a truncation keeps
            self.counts[mode] = self.counts.get(mode, 0) + 1
            return f"{mode}:{delay}:{cut}"

    def _accept_loop(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client, self._draw()),
                             daemon=True).start()

    def _handle(self, client: socket.socket, plan: str) -> None:
        mode, delay, cut = plan.split(":")
        client.settimeout(IO_TIMEOUT_S)
        try:
            if mode == "drop":
                return  # close without reading or answering
            request = _read_http_request(client)
            if request is None:
                return
            if mode == "reset":
                _abort(client)
                return
            if mode in ("500", "503"):
                client.sendall(_injected_answer(int(mode)))
                return
            if mode == "delay":
                # Kept on purpose: a seeded slow answer whose every outcome is valid (answered
                # in time, or after the client's timeout like a stall); nothing asserts on it.
                time.sleep(float(delay))
            if mode == "stall":
                # Held until the uploader's timeout has fired and it closed the connection
                # (not for a guessed time longer than that timeout); then delivered late.
                wait_for(lambda: self._client_gone(client), "the uploader to give up on a "
                         "stalled request", SETTLE_DEADLINE_S)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port),
                                                    timeout=IO_TIMEOUT_S)
            except OSError:
                _abort(client)  # server down: the client sees a reset
                return
            with upstream:
                upstream.sendall(request)
                answer = _read_until_close(upstream)
            if mode == "truncate":
                client.sendall(answer[:max(1, int(len(answer) * float(cut)))])  # stored; ack cut
            elif mode == "ack_lost":
                _abort(client)
            else:
                client.sendall(answer)
        except OSError:
            pass
        finally:
            client.close()

    def close(self) -> None:
        self.closing.set()
        self.listener.close()
        self.thread.join(5)


def _read_http_request(conn: socket.socket) -> bytes | None:
    """One whole request (headers + Content-Length body), rewritten to `Connection: close`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    kept = [line for line in lines if not line.lower().startswith(b"connection:")]
    return b"\r\n".join(kept) + b"\r\nConnection: close\r\n\r\n" + body


def _read_until_close(conn: socket.socket) -> bytes:
    answer = b""
    while chunk := conn.recv(65536):
        answer += chunk
    return answer


def _abort(conn: socket.socket) -> None:
    """Close with a TCP RST (linger 0) instead of a FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _injected_answer(status: int) -> bytes:
    body = b'{"error":"INJECTED","detail":"fault injected by the test proxy"}'
    return (f"HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


@pytest.fixture
def device_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def kiosk_log(tmp_path: Path, device_key: Ed25519PrivateKey) -> Iterator[EventLog]:
    log = EventLog.open(tmp_path / "kiosk" / "events.db", device_key, "kiosk-net-1")
    yield log
    log.close()


def test_flaky_network_and_outage_still_deliver_each_event_once(
        db_url: str, device_key: Ed25519PrivateKey, kiosk_log: EventLog) -> None:
    server = run_in_thread(db_url)
    proxy = TcpFaultProxy(server.port, seed=20261126, fault_rate=0.5)
    uploader = Uploader(Outbox(kiosk_log), proxy.url, "kiosk-net-1", device_key, batch_size=15,
                        backoff_initial_s=0.02, backoff_max_s=0.3, timeout_s=1.5,
                        poll_interval_s=0.05, rng=random.Random(7))
    try:
        server.store.add_token("net-fault-token-0001",
                               datetime.now(timezone.utc) + timedelta(hours=1))
        register_device(server.url, "net-fault-token-0001", "kiosk-net-1", device_key)
        uploader.start()
        served = proxy.served()
        for index in range(120):  # decisions keep coming while the network misbehaves
            kiosk_log.append("decision", {"decision": "granted" if index % 4 else "denied",
                                          "format": "dcc"})
            uploader.notify()
            if index % 10 == 9:
                # Every 10 decisions, until the uploader has sent another request: appends and
                # uploads interleave on any machine. Events appended since `served` was read
                # were in no request accepted before it, so one more always comes.
                wait_for(lambda: proxy.served() > served, "the uploader's next request",
                         SETTLE_DEADLINE_S)
                served = proxy.served()
        # A long outage: the server goes away while the kiosk keeps deciding.
        server.stop()
        for _ in range(80):
            kiosk_log.append("decision", {"decision": "granted", "format": "dcc"})
        wait_for(lambda: uploader.status().consecutive_failures >= 3, "failures to pile up",
                 SETTLE_DEADLINE_S)
        assert uploader.status().pending > 0
        server = run_in_thread(db_url)  # back, on the same database, at a new port
        proxy.upstream_port = server.port
        wait_for(lambda: Outbox(kiosk_log).pending_count() == 0, "the backlog to drain", SETTLE_DEADLINE_S)
    finally:
        assert uploader.stop(timeout=15)
        proxy.close()
    try:
        stored = server.store.events("kiosk-net-1")
        incidents = server.store.incidents()
    finally:
        server.stop()
    assert [event.seq for event in stored] == list(range(1, 201))  # each exactly once
    assert all(check_event(event, device_key.public_key()) is None for event in stored)
    assert all(check_link(a, b) is None for a, b in zip(stored, stored[1:]))
    assert stored == [kiosk_log.get(seq) for seq in range(1, 201)]
    assert incidents == [] and Outbox(kiosk_log).rejected() == {}
    assert set(proxy.counts) == set(FAULTS)  # every kind of fault did happen
