"""Dashboard login rate limiting over real HTTP: per-account and per-address backoff (429 with
Retry-After), bounded tables, other operators unaffected; the limiter's clock is moved by hand."""
from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlparse

import pytest

from fleet.dashboard.auth import add_operator
from fleet.dashboard.ratelimit import LoginLimiter, LoginLimits, address_key
from fleet.runner import ServerHandle
from fleet.server import run_in_thread
from fleet.storage import rfc3339, utc_now

PASSWORD = "correct horse battery"


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def start(tmp_path: Path, clock: ManualClock, **limits: float) -> ServerHandle:
    limiter = LoginLimiter(LoginLimits(**limits), clock=clock)  # type: ignore[arg-type]
    handle = run_in_thread(f"sqlite:///{tmp_path}/fleet.db", login_limiter=limiter)
    for name in ("alice", "bob"):
        add_operator(handle.store, name, PASSWORD, rfc3339(utc_now()))
    handle.limiter = limiter  # type: ignore[attr-defined]
    return handle


@pytest.fixture
def server(tmp_path: Path, clock: ManualClock) -> Iterator[ServerHandle]:
    handle = start(tmp_path, clock)
    yield handle
    handle.stop()


def post_login(handle: ServerHandle, name: str, password: str,
               source: str = "127.0.0.1") -> http.client.HTTPResponse:
    """One login POST over a fresh connection from `source` (any 127/8 address is loopback)."""
    url = urlparse(handle.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30,
                                      source_address=(source, 0))
    conn.request("POST", "/dashboard/login", urlencode({"name": name, "password": password}),
                 {"Content-Type": "application/x-www-form-urlencoded"})
    answer = conn.getresponse()
    answer.read()
    conn.close()
    return answer


def test_an_account_backs_off_and_others_log_in(server: ServerHandle, clock: ManualClock) -> None:
    for _ in range(5):  # the free failures
        assert post_login(server, "alice", "wrong password!").status == 401
    refused = post_login(server, "alice", PASSWORD)  # even the right password: not checked
    assert refused.status == 429 and refused.getheader("Retry-After") == "1"
    assert post_login(server, "bob", PASSWORD).status == 303  # another operator logs in
    clock.now += 1
    assert post_login(server, "alice", "wrong password!").status == 401
    refused = post_login(server, "alice", "wrong password!")
    assert refused.status == 429 and refused.getheader("Retry-After") == "2"  # doubled
    clock.now += 1.5
    assert post_login(server, "alice", PASSWORD).getheader("Retry-After") == "1"  # rounded up
    clock.now += 0.5
    assert post_login(server, "alice", PASSWORD).status == 303
    for _ in range(5):  # a success starts the account afresh
        assert post_login(server, "alice", "wrong password!").status == 401


def test_backoff_is_capped(tmp_path: Path, clock: ManualClock) -> None:
    handle = start(tmp_path, clock, account_free_failures=1, max_backoff_s=4.0)
    try:
        for expected in ("1", "2", "4", "4"):
            assert post_login(handle, "alice", "wrong password!").status == 401
            assert post_login(handle, "alice", "wrong password!").getheader("Retry-After") == expected
            clock.now += float(expected)
    finally:
        handle.stop()


def test_an_address_backs_off_and_other_addresses_do_not(tmp_path: Path,
                                                          clock: ManualClock) -> None:
    handle = start(tmp_path, clock, address_free_failures=3)
    try:
        for n in range(3):  # a different name each time: only the address limit sees them
            assert post_login(handle, f"guess{n}", "wrong password!").status == 401
        refused = post_login(handle, "alice", PASSWORD)
        assert refused.status == 429 and refused.getheader("Retry-After") == "1"
        assert post_login(handle, "alice", PASSWORD, source="127.0.0.2").status == 303
        clock.now += 1
        assert post_login(handle, "alice", PASSWORD).status == 303
    finally:
        handle.stop()


def test_tables_stay_bounded_when_names_are_sprayed(tmp_path: Path, clock: ManualClock) -> None:
    handle = start(tmp_path, clock, max_entries=8, address_free_failures=1000,
                   forget_after_s=60.0)
    limiter: LoginLimiter = handle.limiter  # type: ignore[attr-defined]
    try:
        assert post_login(handle, "alice", "wrong password!").status == 401  # held before
        answers = [post_login(handle, f"spray{n}", "wrong password!").status for n in range(40)]
        assert limiter.sizes() == (8, 1)  # 8 accounts; one address
        # past the cap, the sprayed names share one entry: 5 free failures between them all
        assert answers[:7] == [401] * 7 and answers[7:12] == [401] * 5
        assert set(answers[12:]) == {429}
        assert post_login(handle, "spray-new", PASSWORD).status == 429
        assert post_login(handle, "alice", PASSWORD).status == 303  # her own entry: unaffected
        clock.now += 3600  # idle entries are forgotten, and new names get their own again
        assert post_login(handle, "carol", "wrong password!").status == 401  # fills the 8th
        assert post_login(handle, "dave", "wrong password!").status == 401  # table full: pruned
        assert limiter.sizes() == (2, 1)
    finally:
        handle.stop()


def test_parallel_guesses_count_before_they_are_checked(clock: ManualClock) -> None:
    limiter = LoginLimiter(LoginLimits(account_free_failures=3), clock=clock)
    started = [limiter.begin("alice", "10.0.0.1") for _ in range(5)]  # none has failed yet
    assert started == [0, 0, 0, 1, 1]


def test_ipv6_clients_are_counted_by_their_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2")
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("192.0.2.1") != address_key("192.0.2.2")


def test_old_failures_are_forgiven(clock: ManualClock) -> None:
    limiter = LoginLimiter(LoginLimits(account_free_failures=2, forget_after_s=60.0), clock=clock)
    assert limiter.begin("alice", "10.0.0.1") == 0
    clock.now += 61
    assert [limiter.begin("alice", "10.0.0.1") for _ in range(3)] == [0, 0, 1]
