"""Uploader against the real fleet server on loopback, through a fault-injecting proxy."""
from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.eventlog import EventLog
from firmware.protocol.request_signing import HEADER_NONCE
from firmware.eventlog.outbox import Outbox
from firmware.sync.uploader import Uploader, UploadError
from tests.test_uploader_support import FaultProxy, Fleet, assert_exact_chain
from tests.waiting import wait_for

pytest.importorskip("fleet.server", reason="the fleet server package is needed for these tests")

DEVICE = "kiosk-up-1"
BODY = {"decision": "denied", "reason": "DCC_EXPIRED", "format": "dcc", "pseudonym": "cd" * 16,
        "face": {"score": 0.41}}
WAIT_S = 60.0  # a deadline for conditions, never a speed assertion


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def fleet(tmp_path: Path, key: Ed25519PrivateKey) -> Iterator[Fleet]:
    server = Fleet(tmp_path / "fleet.db").start()
    server.enrol(key, DEVICE)
    yield server
    server.stop()


@pytest.fixture
def proxy(fleet: Fleet) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(fleet.url)
    yield fault_proxy
    fault_proxy.close()


@pytest.fixture
def log(tmp_path: Path, key: Ed25519PrivateKey) -> Iterator[EventLog]:
    with EventLog.open(tmp_path / "kiosk" / "events.db", key, DEVICE) as event_log:
        yield event_log


def make_uploader(log: EventLog, url: str, key: Ed25519PrivateKey, **options: object) -> Uploader:
    settings: dict[str, object] = {"batch_size": 10, "backoff_initial_s": 0.01,
                                   "backoff_max_s": 0.05, "timeout_s": 5.0,
                                   "rng": random.Random(7)}
    settings.update(options)
    return Uploader(Outbox(log), url, DEVICE, key, **settings)  # type: ignore[arg-type]


def fill(log: EventLog, count: int) -> list[int]:
    return [log.append("decision", BODY).seq for _ in range(count)]


def drain(uploader: Uploader, limit: int = 200) -> None:
    for _ in range(limit):
        try:
            if uploader.upload_once() == 0 and uploader.status().pending == 0:
                return
        except UploadError:
            continue
    raise AssertionError("queue did not drain")


def test_drains_in_signed_batches_newest_first(fleet: Fleet, log: EventLog,
                                               key: Ed25519PrivateKey) -> None:
    seqs = fill(log, 25)
    uploader = make_uploader(log, fleet.url, key)
    assert uploader.upload_once() == 10
    assert [e.seq for e in fleet.stored(DEVICE)] == list(range(16, 26))  # the newest ten
    assert uploader.upload_once() == 10 and uploader.upload_once() == 5
    assert uploader.upload_once() == 0
    assert_exact_chain(fleet.stored(DEVICE), key, seqs)
    status = uploader.status()
    assert (status.pending, status.last_acked, status.consecutive_failures) == (0, 25, 0)
    assert status.last_success is not None and status.last_error is None


def test_live_decisions_overtake_a_backlog(fleet: Fleet, proxy: FaultProxy, log: EventLog,
                                           key: Ed25519PrivateKey) -> None:
    backlog = fill(log, 40)  # recorded while offline
    uploader = make_uploader(log, proxy.url, key)
    proxy.inject("drop")
    with pytest.raises(UploadError):
        uploader.upload_once()
    live = fill(log, 3)  # people keep coming while the backlog waits
    assert uploader.upload_once() == 10
    first_batch = {e.seq for e in fleet.stored(DEVICE)}
    assert set(live) <= first_batch
    drain(uploader)
    assert_exact_chain(fleet.stored(DEVICE), key, backlog + live)


def test_oldest_first_when_configured(fleet: Fleet, log: EventLog,
                                      key: Ed25519PrivateKey) -> None:
    fill(log, 15)
    uploader = make_uploader(log, fleet.url, key, newest_first=False)
    uploader.upload_once()
    assert [e.seq for e in fleet.stored(DEVICE)] == list(range(1, 11))


def test_resumes_after_restart_from_the_acknowledged_state(
        tmp_path: Path, fleet: Fleet, key: Ed25519PrivateKey) -> None:
    path = tmp_path / "kiosk" / "events.db"
    with EventLog.open(path, key, DEVICE) as first_life:
        fill(first_life, 30)
        make_uploader(first_life, fleet.url, key).upload_once()
    sent: list[int] = []
    with EventLog.open(path, key, DEVICE) as second_life:  # the kiosk rebooted
        outbox = Outbox(second_life)
        assert outbox.last_acked == 30 and outbox.pending_count() == 20
        session = requests.Session()
        session.hooks["response"].append(
            lambda r, *a, **k: sent.extend(e["seq"] for e in __import__("json").loads(
                r.request.body)["events"]))
        drain(make_uploader(second_life, fleet.url, key, session=session))
    assert sorted(sent) == list(range(1, 21))  # nothing acknowledged was sent again
    assert_exact_chain(fleet.stored(DEVICE), key, list(range(1, 31)))


@pytest.mark.parametrize("fault, code", [
    ("drop", "UPLOAD_NETWORK"), ("reset", "UPLOAD_NETWORK"), ("503", "UPLOAD_HTTP_503"),
    ("500", "UPLOAD_HTTP_500"), ("truncate", "UPLOAD_"), ("ack_lost", "UPLOAD_NETWORK"),
])
def test_each_network_fault_is_retried_and_lands_exactly_once(
        fleet: Fleet, proxy: FaultProxy, log: EventLog, key: Ed25519PrivateKey, fault: str,
        code: str) -> None:
    seqs = fill(log, 12)
    uploader = make_uploader(log, proxy.url, key)
    proxy.inject(fault)
    with pytest.raises(UploadError) as caught:
        uploader.upload_once()
    assert caught.value.code.startswith(code)
    status = uploader.status()
    assert status.consecutive_failures == 1 and status.offline_since is not None
    assert status.pending == 12  # nothing is marked uploaded without an acknowledgement
    drain(uploader)
    assert_exact_chain(fleet.stored(DEVICE), key, seqs)
    assert uploader.status().offline_since is None


def test_timeout_then_late_delivery_is_deduplicated(fleet: Fleet, proxy: FaultProxy,
                                                    log: EventLog,
                                                    key: Ed25519PrivateKey) -> None:
    seqs = fill(log, 5)
    uploader = make_uploader(log, proxy.url, key, timeout_s=0.3)
    proxy.inject("hold")  # the answer cannot come before the client has given up
    with pytest.raises(UploadError) as caught:
        uploader.upload_once()
    assert caught.value.code == "UPLOAD_NETWORK"
    proxy.release()  # now the late request reaches the server, which stores the batch
    assert proxy.delivered.wait(WAIT_S), "the held request never reached the server"
    assert [event.seq for event in fleet.stored(DEVICE)] == seqs
    drain(uploader)  # the uploader sends the batch again: the server keeps one copy
    assert_exact_chain(fleet.stored(DEVICE), key, seqs)


def test_a_refused_batch_is_split_until_the_poison_event_is_parked(
        fleet: Fleet, proxy: FaultProxy, log: EventLog, key: Ed25519PrivateKey) -> None:
    seqs = fill(log, 8)
    uploader = make_uploader(log, proxy.url, key, batch_size=8)
    # 8 events refused, then 4, 2, and the poison event alone; everything else goes through.
    proxy.inject("422", "pass", "422", "pass", "422", "pass", "422")
    drain(uploader)
    parked = Outbox(log).rejected()
    assert list(parked.values()) == ["SERVER_MALFORMED"]
    assert_exact_chain(fleet.stored(DEVICE), key, [s for s in seqs if s not in parked])
    fill(log, 20)  # the batch size regrows by doubling with each good batch
    assert [uploader.upload_once() for _ in range(3)] == [2, 4, 8]
    assert uploader.status().batch_size == 8


def test_a_proxy_refusing_everything_parks_nothing(fleet: Fleet, proxy: FaultProxy,
                                                   log: EventLog, key: Ed25519PrivateKey) -> None:
    seqs = fill(log, 4)
    uploader = make_uploader(log, proxy.url, key, batch_size=4)
    proxy.inject(*["413"] * 6)
    codes = []
    for _ in range(6):
        with pytest.raises(UploadError) as caught:
            uploader.upload_once()
        codes.append((caught.value.code, caught.value.retry_now))
    assert codes[:2] == [("UPLOAD_HTTP_413", True)] * 2  # 4 -> 2 -> 1
    assert codes[2:] == [("UPLOAD_HTTP_413", False)] * 4  # then backoff, not parking
    assert Outbox(log).rejected() == {} and uploader.status().consecutive_failures == 4
    drain(uploader)  # the refusals stop: everything goes through
    assert_exact_chain(fleet.stored(DEVICE), key, seqs)


def test_server_rejections_are_parked_not_retried(fleet: Fleet, log: EventLog,
                                                  key: Ed25519PrivateKey, tmp_path: Path) -> None:
    fill(log, 6)
    forged = Ed25519PrivateKey.generate()
    with EventLog.open(tmp_path / "other.db", forged, DEVICE) as other:
        fake = [other.append("decision", BODY) for _ in range(4)][3]
    conn = __import__("sqlite3").connect(log.path)
    conn.execute("UPDATE events SET sig = ? WHERE seq = 4", (fake.sig,))
    conn.commit()
    conn.close()
    uploader = make_uploader(log, fleet.url, key)
    assert uploader.upload_once() == 5
    assert Outbox(log).rejected() == {4: "EVENT_BAD_SIGNATURE"}
    assert uploader.upload_once() == 0  # the parked event is not sent again
    assert [e.seq for e in fleet.stored(DEVICE)] == [1, 2, 3, 5, 6]
    assert uploader.status().rejected == 1


def test_wrong_key_is_unauthorized_and_nothing_is_marked(fleet: Fleet, log: EventLog) -> None:
    fill(log, 3)
    uploader = make_uploader(log, fleet.url, Ed25519PrivateKey.generate())
    with pytest.raises(UploadError) as caught:
        uploader.upload_once()
    assert caught.value.code == "UPLOAD_UNAUTHORIZED"
    assert Outbox(log).pending_count() == 3 and fleet.stored(DEVICE) == []


def test_a_wrong_device_clock_is_corrected_from_the_server_date(
        fleet: Fleet, log: EventLog, key: Ed25519PrivateKey) -> None:
    fill(log, 3)

    def clock() -> datetime:  # a kiosk that booted without RTC, an hour behind
        return datetime.now(timezone.utc) - timedelta(hours=1)

    uploader = make_uploader(log, fleet.url, key, clock=clock)
    with pytest.raises(UploadError) as caught:
        uploader.upload_once()
    assert caught.value.code == "UPLOAD_UNAUTHORIZED"
    skew = uploader.status().clock_skew_s
    assert skew is not None and 3500 < skew < 3700
    assert uploader.upload_once() == 3


def test_every_request_carries_a_fresh_nonce(fleet: Fleet, proxy: FaultProxy, log: EventLog,
                                             key: Ed25519PrivateKey) -> None:
    nonces: list[str] = []
    session = requests.Session()
    session.hooks["response"].append(
        lambda r, *a, **k: nonces.append(r.request.headers[HEADER_NONCE]))
    fill(log, 30)
    proxy.inject("503", "500")
    drain(make_uploader(log, proxy.url, key, session=session))
    assert len(nonces) >= 5 and len(set(nonces)) == len(nonces)


def test_background_thread_survives_a_long_outage(fleet: Fleet, log: EventLog,
                                                  key: Ed25519PrivateKey) -> None:
    uploader = make_uploader(log, fleet.url, key, poll_interval_s=0.05)
    uploader.start()
    try:
        seqs = fill(log, 5)
        uploader.notify()
        wait_for(lambda: Outbox(log).pending_count() == 0, "the backlog to drain", WAIT_S)
        fleet.stop()  # the server goes away for a long stretch
        seqs += fill(log, 25)
        wait_for(lambda: uploader.status().consecutive_failures >= 5, "5 failures in a row", WAIT_S)
        status = uploader.status()
        assert status.offline_since is not None and status.pending == 25
        assert status.last_error and status.running
        fleet.start()
        wait_for(lambda: Outbox(log).pending_count() == 0, "the backlog to drain", WAIT_S)
        assert uploader.status().offline_since is None
    finally:
        assert uploader.stop(timeout=15)
    assert not uploader.status().running
    assert_exact_chain(fleet.stored(DEVICE), key, seqs)


def test_backoff_is_not_cut_short_by_notify_but_stop_ends_it(fleet: Fleet, log: EventLog,
                                                              key: Ed25519PrivateKey) -> None:
    fleet.stop()
    fill(log, 2)
    uploader = make_uploader(log, fleet.url, key, backoff_initial_s=600.0, backoff_max_s=600.0,
                             jitter=0.0, poll_interval_s=0.05)
    # Watch the backoff's wait instead of sleeping beside it: the test knows when the thread is
    # parked in it, and that only stop() let it out, however slow the machine.
    uploader._stop = watch = _WaitWatch()  # type: ignore[assignment]
    uploader.start()
    try:
        assert watch.entered.wait(WAIT_S), "the uploader never began its backoff"
        status = uploader.status()
        assert status.consecutive_failures == 1 and status.next_attempt_in_s > 500
        assert status.last_error.startswith("UPLOAD_NETWORK")
        for _ in range(5):
            uploader.notify()  # new decisions do not hammer a server that is down
        watch.timeline.append("notified")
    finally:
        watch.timeline.append("stopping")
        assert uploader.stop(timeout=15)  # stop wakes the 600 s backoff at once
    # the thread has ended: these are final, not a snapshot of a race
    assert watch.timeline == ["entered", "notified", "stopping", "left"]
    assert uploader.status().consecutive_failures == 1
    assert Outbox(log).pending_count() == 2


class _WaitWatch(threading.Event):
    """The uploader's stop event, which its backoff waits on; records entering and leaving
    that wait in `timeline`, beside the test's own steps."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.timeline: list[str] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.timeline.append("entered")
        self.entered.set()
        try:
            return super().wait(timeout)
        finally:
            self.timeline.append("left")
