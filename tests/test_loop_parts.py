"""The loop's small parts: the latest-frame inbox, pseudonyms, the clock trust rules, policy."""
from __future__ import annotations

import os
import random
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from firmware.clock import Clock, FixedClock
from firmware.credentials import Verdict
from firmware.kiosk.inbox import Inbox, Message
from firmware.kiosk.policy import Policy, decide, trust_problem
from firmware.kiosk.pseudonym import Pseudonymiser
from tests.kiosk_harness import HANG_GUARD_S, wait_until

NEVER_S = 3600.0  # a wait that only a notification can end within the test's hang guard


def test_inbox_keeps_latest_frames_and_counts_drops() -> None:
    inbox = Inbox(frame_capacity=1)
    for index in range(5):
        inbox.post(Message("frame", index))
    inbox.post(Message("camera_fault", "gone"))
    assert inbox.get(0.01) == Message("camera_fault", "gone")  # control first, never dropped
    assert inbox.get(0.01) == Message("frame", 4)  # only the newest frame survives
    assert inbox.dropped_frames == 4
    assert inbox.get(0.01) is None


def test_inbox_get_times_out_and_wakes_on_post() -> None:
    inbox = Inbox()
    start = time.monotonic()
    assert inbox.get(0.05) is None
    assert time.monotonic() - start >= 0.04  # it did wait (a lower bound: load only adds)
    got: list[Message | None] = []
    getter = threading.Thread(target=lambda: got.append(inbox.get(NEVER_S)), daemon=True)
    getter.start()
    inbox.post(Message("stop"))  # before or during the getter's wait: either way it returns
    getter.join(HANG_GUARD_S)
    assert got == [Message("stop")], "a post did not wake the waiting get"


def test_pseudonyms_are_keyed_and_rotate() -> None:
    one = Pseudonymiser(b"a" * 32, rotation_s=86400)
    other = Pseudonymiser(b"b" * 32, rotation_s=86400)
    day = 1_800_000_000.0 - (1_800_000_000.0 % 86400)
    p = one.pseudonym("URN:UVCI:01:XX:123", day + 10)
    assert p == one.pseudonym("URN:UVCI:01:XX:123", day + 80000)  # same epoch: linkable
    assert p != one.pseudonym("URN:UVCI:01:XX:123", day + 86400 + 10)  # next epoch: not
    assert p != other.pseudonym("URN:UVCI:01:XX:123", day + 10)  # another kiosk: not
    assert "UVCI" not in p and len(p) == 32
    with pytest.raises(ValueError):
        Pseudonymiser(b"short", 60)


def test_clock_refuses_before_build_date_and_going_backwards(tmp_path: Path) -> None:
    state = tmp_path / "last_seen"
    clock = Clock(state)
    assert clock.trust_problem() is None
    clock.remember()
    assert state.exists()

    class Behind(Clock):
        def now(self) -> datetime:
            return datetime.now(timezone.utc) - timedelta(days=2)

    assert Behind(state).trust_problem() == "CLOCK_UNTRUSTED"  # RTC lost: behind last seen

    class Epoch(Clock):
        def now(self) -> datetime:
            return datetime(1970, 1, 1, tzinfo=timezone.utc)

    assert Epoch().trust_problem() == "CLOCK_UNTRUSTED"  # before the firmware was built
    skewed = Clock()
    skewed.record_skew(datetime.now(timezone.utc) + timedelta(hours=1))
    assert skewed.trust_problem() == "CLOCK_UNTRUSTED"


def test_policy() -> None:
    now = datetime(2026, 11, 26, tzinfo=timezone.utc)
    assert trust_problem(None, now - timedelta(hours=1), now, 72) is None
    assert trust_problem(None, now - timedelta(hours=73), now, 72) == "TRUST_DATA_STALE"
    assert trust_problem(None, None, now, 72) == "TRUST_DATA_MISSING"
    assert trust_problem("CLOCK_UNTRUSTED", now, now, 72) == "CLOCK_UNTRUSTED"
    good = Verdict(True, "dcc", None, {}, {"signature": True})
    bad = Verdict(False, "dcc", "DCC_EXPIRED", None, {"expiry": False})
    codes_only = Policy(face_required=False)
    assert decide(good, None, codes_only, "p").granted
    assert decide(good, None, codes_only, "p").reason is None
    assert decide(bad, None, codes_only).reason == "DCC_EXPIRED"
    assert FixedClock(now, trusted=False).trust_problem() == "CLOCK_UNTRUSTED"


def test_kiosk_persists_the_last_seen_time(tmp_path: Path) -> None:
    from tests.kiosk_harness import make_rig

    state = tmp_path / "last_seen"
    rig = make_rig(tmp_path, clock=Clock(state))
    try:
        wait_until(state.exists, "the last seen time on disk")
        assert abs(float(state.read_text()) - datetime.now(timezone.utc).timestamp()) < 60
    finally:
        rig.stop()


def test_trust_provider_survives_a_file_renamed_while_it_looks(tmp_path: Path) -> None:
    """The trust-sync thread writes `.<name>.<random>.tmp` and renames it; the loop thread may
    list the folder just before the rename and stat the file just after."""
    from firmware.trustprovider import TrustProvider

    class Renamed(type(tmp_path)):  # type: ignore[misc]
        def is_file(self) -> bool:
            return True  # it was a file when listed

        def stat(self, *args: object, **kwargs: object) -> os.stat_result:
            raise FileNotFoundError(2, "No such file or directory", str(self))

    class Folder(type(tmp_path)):  # type: ignore[misc]
        def iterdir(self):  # type: ignore[no-untyped-def]
            yield from super().iterdir()
            yield Renamed(self, ".dcc-signers.json.x1y2.tmp")

    (tmp_path / "trust-state.json").write_text("{}")
    provider = TrustProvider(Folder(tmp_path))
    assert provider().updated_at is None  # an (empty) store, not an exception


def test_server_time_clears_a_last_seen_left_in_the_future(tmp_path: Path) -> None:
    state = tmp_path / "last_seen"
    ahead = datetime.now(timezone.utc) + timedelta(days=3)  # a clock that once ran fast
    state.write_text(f"{ahead.timestamp():.3f}\n")
    clock = Clock(state)
    assert clock.trust_problem() == "CLOCK_UNTRUSTED"  # alone, the kiosk cannot tell who is right
    clock.record_skew(datetime.now(timezone.utc))  # the fleet server agrees with the clock now
    assert clock.trust_problem() is None
    clock.remember()
    assert float(state.read_text()) < ahead.timestamp()
    assert Clock(state).trust_problem() is None  # and the correction survives a reboot


class _CountingSync:
    clock_skew_s = None

    def __init__(self) -> None:
        self.rounds = 0

    def sync(self) -> list[Any]:
        self.rounds += 1
        return []


class _WaitWatcher(random.Random):
    """The worker's jitter source: it is asked for a number each time the worker schedules a
    wait, which tells the test how many rounds had run by the first wait."""

    def __init__(self, sync: _CountingSync) -> None:
        super().__init__(5)
        self._sync = sync
        self.rounds_at_first_wait: int | None = None
        self.waiting = threading.Event()

    def random(self) -> float:
        if self.rounds_at_first_wait is None:
            self.rounds_at_first_wait = self._sync.rounds
        self.waiting.set()
        return super().random()


def test_trust_sync_worker_does_not_repeat_the_boot_round() -> None:
    from firmware.sync.trustworker import TrustSyncWorker

    after_boot, fresh = _CountingSync(), _CountingSync()
    watchers = [_WaitWatcher(after_boot), _WaitWatcher(fresh)]
    workers = [TrustSyncWorker(after_boot, Clock(), interval_s=60, rng=watchers[0]),
               TrustSyncWorker(fresh, Clock(), interval_s=60, rng=watchers[1])]
    workers[0].start(first_round_done=True)
    workers[1].start()
    try:
        for watcher in watchers:  # each worker has reached its first (60 s) wait
            assert watcher.waiting.wait(HANG_GUARD_S), "the worker never scheduled a wait"
    finally:
        for worker in workers:
            worker.stop()
    assert watchers[0].rounds_at_first_wait == 0 and after_boot.rounds == 0  # boot round kept
    assert watchers[1].rounds_at_first_wait == 1 and fresh.rounds == 1  # a fresh start syncs


def test_app_close_releases_the_event_log_even_when_the_display_fails() -> None:
    from firmware.app import KioskApp

    closed: list[str] = []

    class Part:
        def __init__(self, name: str, fail: bool = False) -> None:
            self.name, self.fail = name, fail

        def close(self) -> None:
            if self.fail:
                raise OSError("port vanished")
            closed.append(self.name)

    KioskApp(kiosk=None, identity=None, eventlog=Part("eventlog"),  # type: ignore[arg-type]
             display=Part("display", fail=True), uploader=None).close()
    assert closed == ["eventlog"]


def test_trust_provider_reloads_changed_files_without_holding_up_the_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After boot, a changed cache is loaded on a background thread (indexing a big revocation
    list takes a minute): the loop keeps getting the previous store until the new one is ready."""
    import firmware.credentials.store as store_module
    from firmware.credentials import TrustStore
    from firmware.trustprovider import TrustProvider

    release = threading.Event()
    loads: list[str] = []

    def slow_load(directory: Path, **options: object) -> TrustStore:
        content = (directory / "dcc-rules.json").read_text()
        loads.append(content)
        if len(loads) > 1:
            assert release.wait(30), "test gone wrong"
        return TrustStore(dcc_country=content)

    monkeypatch.setattr(store_module, "load_trust_dir", slow_load)
    (tmp_path / "dcc-rules.json").write_text("first")
    provider = TrustProvider(tmp_path)
    assert provider().dcc_country == "first"  # boot: loaded before the first decision
    (tmp_path / "dcc-rules.json").write_text("second!")
    assert provider().dcc_country == "first"  # returned at once while the reload is blocked
    assert provider().dcc_country == "first"  # and only one reload runs at a time
    release.set()
    assert provider.wait_idle(10)
    assert provider().dcc_country == "second!"
    assert loads == ["first", "second!"]
