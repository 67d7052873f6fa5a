"""Group commit: concurrent appends share commits, keep one chain, and fail together, never half."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from firmware.eventlog import EventLog, EventLogError
from firmware.eventlog.groupcommit import CommitTimeout, GroupCommitter
from firmware.protocol.event_codec import Event
from firmware.eventlog.outbox import Outbox
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
DEVICE = "kiosk-group"
JOIN_TIMEOUT_S = 60.0
QUEUE_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 120


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def run_threads(count: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run work(i) in `count` threads; returns what they raised unexpectedly."""
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            work(index)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
        assert not thread.is_alive(), "an appender never returned"
    return errors


@contextmanager
def writers_held(log: EventLog, expected: int) -> Iterator[None]:
    """Hold the log's writer lock (as a long commit would) until `expected` appends queued
    behind it, then let them go: the next leader must take all of them in one batch."""
    with log._lock:
        yield
        wait_for(lambda: log._committer.queued() >= expected,
                 f"{expected} appends to queue behind the writer lock", QUEUE_TIMEOUT_S)


def assert_one_chain(log: EventLog, events: list[Event], start: int = 1) -> None:
    """Returned events have contiguous seqs, are stored exactly as returned, and verify."""
    seqs = sorted(event.seq for event in events)
    assert seqs == list(range(start, start + len(events)))
    for event in events:
        assert log.get(event.seq) == event
    report = log.verify()
    assert report.ok, report
    assert report.last_seq == log.tip_seq


def test_concurrent_appenders_get_one_contiguous_verified_chain(tmp_path: Path,
                                                               key: Ed25519PrivateKey) -> None:
    results: list[list[Event]] = [[] for _ in range(6)]
    with EventLog.open(tmp_path / "events.db", key, DEVICE) as log:

        def appender(index: int) -> None:
            for n in range(40):
                results[index].append(log.append("decision", {"decision": "granted",
                                                               "thread": index, "n": n}))

        assert run_threads(6, appender) == []
        events = [event for mine in results for event in mine]
        assert_one_chain(log, events)
        for index, mine in enumerate(results):  # each thread's events keep its own order
            assert [e.body["n"] for e in mine] == list(range(40))
            assert all(e.body["thread"] == index for e in mine)
            assert [e.seq for e in mine] == sorted(e.seq for e in mine)
        batches, appends = log.commit_counts()
        assert appends == 240 and 1 <= batches <= 240
    with EventLog.open(tmp_path / "events.db", key, DEVICE) as log:  # durable, reopens clean
        assert log.tip_seq == 240 and log.verify().ok


def test_appends_waiting_on_a_commit_share_the_next_one(tmp_path: Path,
                                                        key: Ed25519PrivateKey) -> None:
    returned: dict[int, Event] = {}
    with EventLog.open(tmp_path / "events.db", key, DEVICE) as log:
        first = log.append("decision", {"decision": "granted", "n": -1})
        before = log.commit_counts()

        def appender(index: int) -> None:
            returned[index] = log.append("decision", {"decision": "granted", "n": index})

        errors: list[BaseException] = []
        holder = threading.Thread(target=lambda: errors.extend(run_threads(8, appender)))
        with writers_held(log, 8):
            holder.start()
        holder.join(JOIN_TIMEOUT_S)
        assert errors == []
        batches, appends = log.commit_counts()
        assert (batches - before[0], appends - before[1]) == (1, 8)  # one transaction for 8
        assert_one_chain(log, [first, *returned.values()])


def test_a_failing_batch_fails_every_appender_and_stores_none_of_it(
        tmp_path: Path, key: Ed25519PrivateKey) -> None:
    db = tmp_path / "events.db"
    outcomes: dict[int, Event | EventLogError] = {}
    with EventLog.open(db, key, DEVICE) as log:
        kept = [log.append("decision", {"decision": "granted", "n": n}) for n in range(3)]

        def appender(index: int) -> None:
            try:
                outcomes[index] = log.append("decision", {"decision": "granted", "n": index,
                                                          "fault": index == 4})
            except EventLogError as exc:
                outcomes[index] = exc

        holder = threading.Thread(target=lambda: run_threads(6, appender))
        with writers_held(log, 6):
            holder.start()
            # A database fault in the middle of the batch (the fifth insert fails inside the
            # transaction, after four others went in).
            with EventLog.open(db, key, DEVICE) as other:
                other._db().execute(
                    "CREATE TRIGGER fault BEFORE INSERT ON events WHEN NEW.body LIKE "
                    "'%\"fault\":true%' BEGIN SELECT RAISE(ABORT, 'injected fault'); END")
        holder.join(JOIN_TIMEOUT_S)
        assert len(outcomes) == 6
        assert all(isinstance(o, EventLogError) and o.code == "EVENTLOG_IO"
                   for o in outcomes.values())
        assert len({id(o) for o in outcomes.values()}) == 6  # each appender its own error
        assert log.tip_seq == 3 and log.stats().events == 3  # nothing of the batch stays
        log._db().execute("DROP TRIGGER fault")
        after = log.append("decision", {"decision": "granted", "n": 99})
        assert after.seq == 4 and after.prev_hash == kept[-1].hash
        assert_one_chain(log, [*kept, after])


# The writer holds the writer lock while its threads queue, then makes every write to a file
# past 0 bytes fail (RLIMIT_FSIZE: EFBIG from the kernel), lets the batch go, reports each
# thread's outcome, lifts the limit and appends once more.
IO_WRITER = r"""
import resource, signal, sys, threading
from pathlib import Path
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from firmware.eventlog import EventLog, EventLogError
from tests.waiting import wait_for

db, key_file, device, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
key = load_pem_private_key(Path(key_file).read_bytes(), password=None)
log = EventLog.open(db, key, device, quota_bytes=None)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of dying
outcomes = {}

def appender(index):
    try:
        outcomes[index] = "A %d" % log.append("decision", {"decision": "granted", "n": index}).seq
    except EventLogError as exc:
        outcomes[index] = "E " + exc.code

workers = [threading.Thread(target=appender, args=(i,)) for i in range(threads)]
with log._lock:
    for worker in workers:
        worker.start()
    wait_for(lambda: log._committer.queued() >= threads, "the appends to queue", 30)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
for worker in workers:
    worker.join(60)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print("BATCHES", *log.commit_counts(), flush=True)
for index in range(threads):
    print(outcomes.get(index, "missing"), flush=True)
print("A %d" % log.append("decision", {"decision": "granted", "n": "after"}).seq, flush=True)
log.close()
"""


def test_an_io_error_reaches_every_appender_of_its_batch(tmp_path: Path,
                                                         key: Ed25519PrivateKey) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    db = tmp_path / "events.db"
    with EventLog.open(db, key, DEVICE) as log:
        history = [log.append("decision", {"decision": "granted", "n": n}) for n in range(5)]
    result = subprocess.run(
        [sys.executable, "-c", IO_WRITER, str(db), str(key_file), DEVICE, "5"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "BATCHES 1 5", lines  # all five were in the one failing transaction
    assert lines[1:6] == ["E EVENTLOG_IO"] * 5, lines
    assert lines[6] == "A 6"  # the chain carries on from the last durable event
    with EventLog.open(db, key, DEVICE) as log:
        report = log.verify()
        assert report.ok and report.last_seq == 6
        assert log.get(6).prev_hash == history[-1].hash  # type: ignore[union-attr]
        assert log.get(6).body == {"decision": "granted", "n": "after"}  # type: ignore[union-attr]


def test_an_append_that_gets_no_turn_times_out_and_stores_nothing(
        tmp_path: Path, key: Ed25519PrivateKey) -> None:
    with EventLog.open(tmp_path / "events.db", key, DEVICE, commit_timeout_s=0.2) as log:
        log.append("decision", {"decision": "granted", "n": 0})
        caught: list[EventLogError] = []

        def appender(_: int) -> None:
            with pytest.raises(EventLogError) as raised:
                log.append("decision", {"decision": "granted", "n": 1})
            caught.append(raised.value)

        with log._lock:  # a commit that never ends, as far as the appender can tell
            assert run_threads(1, appender) == []
        assert caught[0].code == "EVENTLOG_BUSY" and "nothing was stored" in str(caught[0])
        assert log._committer.queued() == 0  # withdrawn, not left for the next leader
        assert log.append("decision", {"decision": "granted", "n": 2}).seq == 2 and log.verify().ok


def test_timeouts_withdraw_a_queued_item_and_name_an_in_flight_one() -> None:
    lock = threading.RLock()
    started, finish = threading.Event(), threading.Event()

    def slow_commit(items: Sequence[int]) -> list[int | BaseException]:
        started.set()
        assert finish.wait(JOIN_TIMEOUT_S)
        return [item * 10 for item in items]

    committer: GroupCommitter[int, int] = GroupCommitter(lock, slow_commit, max_batch=8)
    results: dict[str, object] = {}

    def submit(name: str, item: int, timeout_s: float) -> None:
        try:
            results[name] = committer.submit(item, timeout_s=timeout_s)
        except CommitTimeout as exc:
            results[name] = exc

    with lock:  # the leader (item 1) waits for the writer lock; item 2 queues behind it
        leader = threading.Thread(target=submit, args=("leader", 1, JOIN_TIMEOUT_S))
        leader.start()
        wait_for(lambda: committer.queued() >= 1, "the leader to queue", QUEUE_TIMEOUT_S)
        follower = threading.Thread(target=submit, args=("in_flight", 2, 0.2))
        follower.start()
        wait_for(lambda: committer.queued() >= 2, "the follower to queue", QUEUE_TIMEOUT_S)
    assert started.wait(JOIN_TIMEOUT_S)  # both are in the commit, which does not end
    follower.join(JOIN_TIMEOUT_S)
    in_flight = results["in_flight"]
    assert isinstance(in_flight, CommitTimeout) and in_flight.in_flight
    assert "may still be stored" in str(in_flight)
    with pytest.raises(CommitTimeout) as still:  # asked again before the commit ends
        committer.outcome_of(in_flight.pending, timeout_s=0.05)
    assert still.value.in_flight and still.value.pending is in_flight.pending
    submit("queued", 3, 0.05)  # queued behind the running commit: withdrawn, nothing kept
    queued = results["queued"]
    assert isinstance(queued, CommitTimeout) and not queued.in_flight and queued.pending is None
    assert committer.queued() == 0
    finish.set()
    leader.join(JOIN_TIMEOUT_S)
    assert results["leader"] == 10
    # the item left in flight was committed after all: its outcome is there to be asked for
    assert committer.outcome_of(in_flight.pending, timeout_s=JOIN_TIMEOUT_S) == 20
    other: GroupCommitter[int, int] = GroupCommitter(threading.RLock(), slow_commit, max_batch=8)
    with pytest.raises(ValueError):
        other.outcome_of(in_flight.pending, timeout_s=0.05)
    assert committer.submit(4, timeout_s=JOIN_TIMEOUT_S) == 40
    assert (committer.batches, committer.items) == (2, 3)


def test_group_commit_larger_than_a_batch_is_split_in_order() -> None:
    lock = threading.RLock()
    seen: list[list[int]] = []

    def commit(items: Sequence[int]) -> list[int | BaseException]:
        seen.append(list(items))
        return [ValueError(f"odd {i}") if i % 2 else i for i in items]

    committer: GroupCommitter[int, int] = GroupCommitter(lock, commit, max_batch=3)
    outcomes: dict[int, object] = {}

    def submit(i: int) -> None:
        try:
            outcomes[i] = committer.submit(i, timeout_s=JOIN_TIMEOUT_S)
        except ValueError as exc:
            outcomes[i] = str(exc)

    with lock:
        threads = [threading.Thread(target=submit, args=(i,)) for i in range(7)]
        for thread in threads:
            thread.start()
            position = threads.index(thread) + 1  # queue them in a known order
            wait_for(lambda: committer.queued() >= len(outcomes) + position,
                     f"item {position - 1} to queue", QUEUE_TIMEOUT_S)
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
    assert [i for batch in seen for i in batch] == list(range(7))  # FIFO, each once
    assert all(len(batch) <= 3 for batch in seen)
    assert outcomes == {i: (f"odd {i}" if i % 2 else i) for i in range(7)}


def test_group_commit_at_the_quota_refuses_cleanly_and_keeps_the_chain(
        tmp_path: Path, key: Ed25519PrivateKey) -> None:
    accepted: list[Event] = []
    refused: list[str] = []
    lock = threading.Lock()
    with EventLog.open(tmp_path / "events.db", key, DEVICE, quota_bytes=64 * 1024) as log:

        def appender(index: int) -> None:
            for n in range(400):
                try:
                    event = log.append("decision", {"decision": "granted", "thread": index,
                                                     "n": n, "pad": "p" * 200})
                except EventLogError as exc:
                    with lock:
                        refused.append(exc.code)
                    if len(refused) > 20:
                        return
                else:
                    with lock:
                        accepted.append(event)

        assert run_threads(4, appender) == []
        assert refused and set(refused) == {"EVENTLOG_FULL"}
        assert_one_chain(log, accepted)
        # the reserve above the soft limit is intact: acknowledgements still go in, and
        # once uploaded events can be compacted, appends resume on the same chain
        Outbox(log).mark_uploaded(e.seq for e in accepted)
        after = log.append("decision", {"decision": "granted", "after": True})
        assert after.seq == len(accepted) + 1
        assert log.verify().ok


def test_a_batch_that_fills_the_disk_is_retried_smaller(tmp_path: Path,
                                                          key: Ed25519PrivateKey) -> None:
    """The disk fills up inside a batch's transaction (SQLite's page limit lowered under the
    log: the same SQLITE_FULL a full disk gives): the round is rolled back, uploaded events are
    compacted, and the batch is retried in smaller rounds; what still does not fit is refused
    one by one with a reason. Every accepted event is stored and the chain verifies."""
    outcomes: dict[int, Event | EventLogError] = {}
    with EventLog.open(tmp_path / "events.db", key, DEVICE, quota_bytes=None) as log:
        old = [log.append("decision", {"decision": "granted", "n": n, "pad": "o" * 3000})
               for n in range(4)]
        Outbox(log).mark_uploaded(e.seq for e in old[:2])  # compaction may free these two
        conn = log._db()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={pages + 2}")  # the disk is nearly full

        def appender(index: int) -> None:
            try:
                outcomes[index] = log.append("decision", {"decision": "granted", "n": index,
                                                          "pad": "p" * 3000})
            except EventLogError as exc:
                outcomes[index] = exc

        holder = threading.Thread(target=lambda: run_threads(8, appender))
        with writers_held(log, 8):
            holder.start()
        holder.join(JOIN_TIMEOUT_S)
        accepted = [o for o in outcomes.values() if isinstance(o, Event)]
        refused = [o for o in outcomes.values() if isinstance(o, EventLogError)]
        assert len(accepted) + len(refused) == 8 and accepted and refused
        assert {e.code for e in refused} == {"EVENTLOG_DISK_FULL"}
        assert log.stats().anchor_seq == 2  # the uploaded events made room first
        assert sorted(e.seq for e in accepted) == list(range(5, 5 + len(accepted)))
        for event in accepted:
            assert log.get(event.seq) == event
        report = log.verify()
        assert report.ok and report.last_seq == 4 + len(accepted)
        conn.execute("PRAGMA max_page_count=1073741823")  # space is back: the chain goes on
        after = log.append("decision", {"decision": "granted", "n": "after"})
        assert after.seq == 5 + len(accepted)


def test_a_retry_of_an_append_left_in_flight_stores_the_event_once(
        tmp_path: Path, key: Ed25519PrivateKey) -> None:
    """A commit slower than commit_timeout_s: a follower's append says EVENTLOG_BUSY with the
    event possibly stored. Retried with retry_of, it is answered by that commit (stored once),
    or appended afresh where that commit failed."""
    with EventLog.open(tmp_path / "events.db", key, DEVICE, commit_timeout_s=0.2) as log:
        log.append("decision", {"decision": "granted", "n": 0})
        real_commit = log._committer._commit_batch
        release, fail_next = threading.Event(), threading.Event()

        def slow_commit(batch: Sequence[object]) -> list[object]:
            assert release.wait(JOIN_TIMEOUT_S)  # the disk is slow: the follower gives up first
            if fail_next.is_set():
                return [EventLogError("EVENTLOG_IO", "disk I/O error") for _ in batch]
            return real_commit(batch)  # type: ignore[arg-type]

        log._committer._commit_batch = slow_commit  # type: ignore[method-assign]

        def left_in_flight(n: int) -> tuple[EventLogError, threading.Thread]:
            """A leader's batch that holds our event {"n": n} and has not committed yet."""
            release.clear()
            caught: list[EventLogError] = []

            def follow() -> None:
                with pytest.raises(EventLogError) as raised:
                    log.append("decision", {"decision": "granted", "n": n})
                caught.append(raised.value)

            def lead() -> None:
                try:
                    log.append("decision", {"decision": "granted", "n": f"lead {n}"})
                except EventLogError:
                    pass  # the failing round: the leader's own event fails too

            with log._lock:  # the leader waits for the writer lock while the follower queues
                leader = threading.Thread(target=lead)
                leader.start()
                wait_for(lambda: log._committer.queued() >= 1, "the leader to queue",
                         QUEUE_TIMEOUT_S)
                follower = threading.Thread(target=follow)
                follower.start()
                wait_for(lambda: log._committer.queued() >= 2, "the follower to queue",
                         QUEUE_TIMEOUT_S)
            follower.join(JOIN_TIMEOUT_S)
            assert caught and caught[0].code == "EVENTLOG_BUSY" and caught[0].pending is not None
            return caught[0], leader

        busy, leader = left_in_flight(1)
        with pytest.raises(EventLogError) as again:  # still undecided: busy, the same handle
            log.append("decision", {"decision": "granted", "n": 1}, retry_of=busy.pending)
        assert again.value.code == "EVENTLOG_BUSY" and again.value.pending is busy.pending
        release.set()
        leader.join(JOIN_TIMEOUT_S)
        event = log.append("decision", {"decision": "granted", "n": 1}, retry_of=busy.pending)
        assert event.seq == 3 and event.body["n"] == 1  # the leader's event is seq 2
        assert log.stats().events == 3  # stored once, not twice

        fail_next.set()
        busy, leader = left_in_flight(2)
        release.set()  # that commit fails: the retry appends the event afresh
        leader.join(JOIN_TIMEOUT_S)
        fail_next.clear()
        event = log.append("decision", {"decision": "granted", "n": 2}, retry_of=busy.pending)
        assert event.seq == 4 and event.body["n"] == 2
        assert log.stats().events == 4 and log.verify().ok
