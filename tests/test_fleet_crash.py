"""Crash test of the fleet server: `healthgate-fleet serve` is killed with SIGKILL at random
moments while a device uploads; after each restart every event ever acknowledged is stored,
and at the end the store holds the whole chain exactly once (SQLite and PostgreSQL)."""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.eventlog.codec import check_event, check_link
from firmware.sync.trustsync import register_device
from fleet.devclient import make_chain, upload
from fleet.storage import Store

ROOT = Path(__file__).resolve().parent.parent
DEVICE = "kiosk-crash-1"
KILLS = 2
START_DEADLINE_S = 60.0  # safety nets against hangs, not speed requirements
UPLOAD_DEADLINE_S = 120.0


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
    deadline = time.monotonic() + START_DEADLINE_S
    while True:
        try:
            requests.get(url + "/healthz", timeout=2)
            return process, url
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError("fleet server did not start")
            time.sleep(0.1)


class Device:
    """Uploads its chain in batches in a thread; a failed batch is re-sent to `url`."""

    def __init__(self, key: Ed25519PrivateKey, chain: list) -> None:
        self.key, self.chain = key, chain
        self.url = ""
        self.acked: set[int] = set()
        self.failures = 0
        self.lock = threading.Lock()
        self.done = threading.Event()

    def run(self) -> None:
        with requests.Session() as http:
            position = 0
            while position < len(self.chain):
                batch = self.chain[position:position + 25]
                try:
                    answer = upload(http, self.url, self.key, DEVICE, batch, timeout_s=5)
                except requests.RequestException:
                    with self.lock:
                        self.failures += 1
                    time.sleep(0.05)
                    continue
                assert answer["rejected"] == [], answer
                with self.lock:
                    self.acked.update(answer["acked"])
                position += len(batch)
        self.done.set()


def test_acknowledged_events_survive_sigkill(db_url: str) -> None:
    key = Ed25519PrivateKey.generate()
    chain = make_chain(key, DEVICE, 800)
    store = Store(db_url)
    store.add_token("crash-test-token-0001", datetime.now(timezone.utc) + timedelta(hours=1))
    store.close()
    rng = random.Random(99)
    process, url = start_server(db_url)
    register_device(url, "crash-test-token-0001", DEVICE, key)
    device = Device(key, chain)
    device.url = url
    uploader = threading.Thread(target=device.run, daemon=True)
    uploader.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.1, 0.6))
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            with device.lock:
                acked_before_kill = set(device.acked)
            check = Store(db_url)
            try:
                stored = {event.seq for event in check.events(DEVICE)}
            finally:
                check.close()
            assert acked_before_kill <= stored, sorted(acked_before_kill - stored)[:10]
            process, device.url = start_server(db_url)
        assert device.done.wait(UPLOAD_DEADLINE_S), "uploads did not finish"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        uploader.join(10)
    final = Store(db_url)
    try:
        stored_events = final.events(DEVICE)
        incidents = final.incidents()
    finally:
        final.close()
    assert stored_events == chain
    assert device.acked == set(range(1, 801))
    assert all(check_event(event, key.public_key()) is None for event in stored_events)
    assert all(check_link(a, b) is None for a, b in zip(stored_events, stored_events[1:]))
    assert incidents == []
    assert device.failures >= 1  # the kills did interrupt uploads
