"""Crash test of the fleet server: `healthgate-fleet serve` is killed with SIGKILL while a
device's batch is in flight; after each restart every event ever acknowledged is stored, and at
the end the store holds the whole chain exactly once (SQLite and PostgreSQL).

The kills are driven by the upload's progress, not by the wall clock: at chosen batches the
device thread sends the request, tells the test "batch N is on the wire, awaiting its answer"
and waits; the test kills the server, checks the store, restarts it and lets the device go on.
A batch whose body is only half sent when the server dies cannot have been answered, so the
upload is interrupted by construction, on a fast machine as on a slow one."""
from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.protocol.event_codec import Event, check_event, check_link
from firmware.protocol.request_signing import sign_request
from firmware.sync.trustsync import register_device
from fleet.devclient import EVENTS_PATH, batch_body, make_chain
from fleet.storage import Store
from tests.waiting import wait_for_healthz

ROOT = Path(__file__).resolve().parent.parent
DEVICE = "kiosk-crash-1"
EVENTS = 800
BATCH = 25
# batch index -> how much of it is on the wire when the server is killed. "half": headers and
# half the body, so the server cannot have answered (the upload fails by construction);
# "whole": the whole request, so the server may be verifying, committing or already answering
# (either outcome must keep every acknowledged event).
KILL_AT = {3: "half", 11: "whole", 20: "whole", 27: "half"}
# Hang guards only: generous so that a slow, loaded machine never trips them; nothing measures
# how long anything took.
START_DEADLINE_S = 60.0
HANG_GUARD_S = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(db_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "fleet.cli", "serve", "--port", str(port),
                                "--db", db_url], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_healthz(url, process, START_DEADLINE_S)
    except AssertionError as failure:
        process.kill()
        raise AssertionError("fleet server did not start") from failure
    return process, url


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(HANG_GUARD_S)


def stored_seqs(db_url: str) -> set[int]:
    check = Store(db_url)
    try:
        return {event.seq for event in check.events(DEVICE)}
    finally:
        check.close()


@dataclass(frozen=True)
class InFlight:
    """The device's word to the test: batch `index` is on the wire and unanswered."""

    index: int
    sent: str  # "half" or "whole"


DONE = InFlight(-1, "")  # the device has stopped (finished, or failed: see Device.error)


class Device:
    """Uploads its chain batch by batch in a thread, re-sending a batch that failed (at least
    once on the wire). At the batches in KILL_AT it stops with the request on the wire, posts
    InFlight to `progress` and reads the answer only after the test has put the restarted
    server's URL into `resume`."""

    def __init__(self, key: Ed25519PrivateKey, chain: list[Event], url: str) -> None:
        self.key, self.chain, self.url = key, chain, url
        self.acked: set[int] = set()
        self.failures = 0  # attempts that got no answer
        self.lock = threading.Lock()
        self.progress: queue.Queue[InFlight] = queue.Queue()
        self.resume: queue.Queue[str] = queue.Queue()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for index, position in enumerate(range(0, len(self.chain), BATCH)):
                self._deliver(index, self.chain[position:position + BATCH])
        except BaseException as exc:  # reported by the test thread, which owns the asserts
            self.error = exc
        finally:
            self.progress.put(DONE)

    def _deliver(self, index: int, batch: list[Event]) -> None:
        stop_at = KILL_AT.get(index)
        attempts = 0
        while True:
            attempts += 1
            assert attempts <= len(KILL_AT) + 2, f"batch {index} keeps failing"
            try:
                answer = self._post(index, batch, stop_at)
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.failures += 1
                stop_at = None  # the retry goes to the restarted server and is answered
                continue
            assert answer["rejected"] == [], answer
            with self.lock:
                self.acked.update(answer["acked"])
            return

    def _post(self, index: int, batch: list[Event], stop_at: str | None) -> dict[str, Any]:
        body = batch_body(batch)
        headers = sign_request(self.key, DEVICE, "POST", EVENTS_PATH, body)
        headers.update({"Content-Type": "application/json", "Content-Length": str(len(body))})
        where = urlsplit(self.url)
        connection = http.client.HTTPConnection(where.hostname, where.port, timeout=HANG_GUARD_S)
        try:
            connection.putrequest("POST", EVENTS_PATH)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders()
            if stop_at is None:
                connection.send(body)
            else:
                cut = len(body) // 2 if stop_at == "half" else len(body)
                connection.send(body[:cut])
                self.progress.put(InFlight(index, stop_at))
                self.url = self.resume.get(timeout=HANG_GUARD_S)  # the server was killed
                connection.send(body[cut:])  # into a dead socket: raises, or the read fails
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                raise http.client.HTTPException(f"HTTP {response.status}: {payload[:200]!r}")
            answer: dict[str, Any] = json.loads(payload)
            return answer
        finally:
            connection.close()


def test_acknowledged_events_survive_sigkill(db_url: str) -> None:
    key = Ed25519PrivateKey.generate()
    chain = make_chain(key, DEVICE, EVENTS)
    store = Store(db_url)
    store.add_token("crash-test-token-0001", datetime.now(timezone.utc) + timedelta(hours=1))
    store.close()
    process, url = start_server(db_url)
    register_device(url, "crash-test-token-0001", DEVICE, key)
    device = Device(key, chain, url)
    uploader = threading.Thread(target=device.run, daemon=True)
    uploader.start()
    kills: list[InFlight] = []
    try:
        while True:
            step = device.progress.get(timeout=HANG_GUARD_S)
            if step == DONE:
                break
            kill(process)  # the batch is on the wire and the device is not reading its answer
            kills.append(step)
            with device.lock:
                acked_before_kill = set(device.acked)
            stored = stored_seqs(db_url)
            assert acked_before_kill <= stored, sorted(acked_before_kill - stored)[:10]
            # the batch in flight is stored whole or not at all: no gap, no half batch
            assert stored == set(range(1, len(stored) + 1)), sorted(stored)[-10:]
            assert len(stored) % BATCH == 0, len(stored)
            process, url = start_server(db_url)
            device.resume.put(url)
        uploader.join(HANG_GUARD_S)
        assert device.error is None, repr(device.error)
    finally:
        kill(process)
        device.resume.put("http://127.0.0.1:9")  # frees a device stuck on a failed assertion
        uploader.join(HANG_GUARD_S)
    final = Store(db_url)
    try:
        stored_events = final.events(DEVICE)
        incidents = final.incidents()
    finally:
        final.close()
    assert [step.index for step in kills] == sorted(KILL_AT)  # every kill hit a batch in flight
    assert stored_events == chain  # the whole chain, each event exactly once
    assert device.acked == set(range(1, EVENTS + 1))
    assert all(check_event(event, key.public_key()) is None for event in stored_events)
    assert all(check_link(a, b) is None for a, b in zip(stored_events, stored_events[1:]))
    assert incidents == []
    # a half-sent batch cannot have been answered: the kills did interrupt uploads
    assert device.failures >= sum(1 for sent in KILL_AT.values() if sent == "half") >= 1
