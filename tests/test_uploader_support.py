"""Test support for the uploader: a real fleet server on loopback and a fault-injecting proxy."""
from __future__ import annotations

import secrets
import socket
import socketserver
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.protocol.event_codec import check_event, check_link
from firmware.sync.trustsync import register_device

IO_TIMEOUT_S = 10.0
HOLD_GUARD_S = 60.0  # a held request is forwarded by then even if the test never releases it
# Proxy fault modes, one per request, consumed in order ("pass" once the script is empty):
#   pass      forward and relay the answer
#   drop      close the client connection without an answer (request never reaches the server)
#   reset     abort the client connection with a TCP RST
#   503, 500, 422, 413   answer that status without forwarding
#   truncate  forward (the server stores!), relay only half of the answer, close
#   ack_lost  forward (the server stores!), close without relaying anything
#   hold      wait until the test calls release(), then forward and relay (the client has
#             timed out by then: a late delivery that does not race the client's timeout);
#             `delivered` is set once the server has answered it
FAULTS = ("pass", "drop", "reset", "503", "500", "422", "413", "truncate", "ack_lost")


def _read_request(conn: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    # Force one request per upstream connection so the answer ends at EOF.
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n" + body


def _forward(request: bytes, upstream: tuple[str, int]) -> bytes:
    with socket.create_connection(upstream, timeout=IO_TIMEOUT_S) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def _status_answer(status: str) -> bytes:
    body = b'{"error":"INJECTED","detail":"fault injected by the test proxy"}'
    return (f"HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class FaultProxy(socketserver.ThreadingTCPServer):
    """Loopback TCP proxy in front of the fleet server with a script of faults."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream_url: str) -> None:
        host, port = upstream_url.removeprefix("http://").rsplit(":", 1)
        self.upstream = (host, int(port))
        self.script: deque[str] = deque()
        self.seen: list[str] = []
        self.lock = threading.Lock()
        self.released = threading.Event()  # ends every "hold"
        self.delivered = threading.Event()  # a held request reached the server and was answered
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def inject(self, *modes: str) -> None:
        with self.lock:
            self.script.extend(modes)

    def next_mode(self) -> str:
        with self.lock:
            mode = self.script.popleft() if self.script else "pass"
            self.seen.append(mode)
            return mode

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()  # a handler still holding a request must not outlive the proxy
        self.shutdown()
        self.server_close()


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: FaultProxy

    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(IO_TIMEOUT_S)
        request = _read_request(conn)
        if request is None:
            return
        mode = self.server.next_mode()
        if mode == "drop":
            return
        if mode == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if mode.isdigit():
            conn.sendall(_status_answer(mode))
            return
        if mode == "hold":
            self.server.released.wait(HOLD_GUARD_S)
        try:
            answer = _forward(request, self.server.upstream)
        except OSError:
            return  # the upstream is down: the client sees a dropped connection
        if mode == "hold":
            self.server.delivered.set()
        if mode == "ack_lost":
            return
        if mode == "truncate":
            answer = answer[: len(answer) - max(1, (len(answer) - answer.find(b"\r\n\r\n")) // 2)]
        try:
            conn.sendall(answer)
        except OSError:
            pass  # the client gave up (timeout) before the answer came


@dataclass
class Fleet:
    """A fleet server in this process, its database, and enrolment helpers."""

    db_path: Path
    handle: Any = None
    port: int = 0
    tokens: list[str] = field(default_factory=list)

    def start(self) -> "Fleet":
        from fleet.server import run_in_thread  # the fleet helper's package

        self.handle = run_in_thread(str(self.db_path), port=self.port)
        self.port = self.handle.port  # restarts come back on the same port
        return self

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.stop()
            self.handle = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def enrol(self, key: Ed25519PrivateKey, device_id: str) -> None:
        token = secrets.token_urlsafe(16)
        self.handle.store.add_token(token, datetime.now(timezone.utc) + timedelta(hours=1))
        register_device(self.url, token, device_id, key)

    def stored(self, device_id: str) -> list[Any]:
        from fleet.storage import Store

        store = Store(str(self.db_path))  # works while the server is down, too
        try:
            return store.events(device_id)
        finally:
            store.close()


def assert_exact_chain(events: list[Any], key: Ed25519PrivateKey, seqs: list[int]) -> None:
    """The server holds exactly these seqs, once each, every signature and link valid."""
    assert [event.seq for event in events] == seqs
    for event in events:
        assert check_event(event, key.public_key()) is None
    for previous, event in zip(events, events[1:]):
        if event.seq == previous.seq + 1:
            assert check_link(previous, event) is None
