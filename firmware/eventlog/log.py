"""The kiosk's durable, append-only, hash-chained and signed event log in SQLite (WAL)."""
from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.eventlog import schema
from firmware.eventlog.common import EventLogError, LogStats, is_full, translate
from firmware.eventlog.compaction import Compactor
from firmware.eventlog.groupcommit import CommitTimeout, GroupCommitter
from firmware.eventlog.guard import MAX_BODY_BYTES, BodyRejected, Prepared, check_time, prepare
from firmware.eventlog.quota import AppendQuota, set_hard_limit, used_pages
from firmware.eventlog.sqlitefile import (Durability, IdentityMismatch, NewChainRefused,
                                          bind_identity, connect, number_new_chain_after,
                                          preallocate_wal)
from firmware.eventlog.verify import (VerifyReport, broken_tail, read_meta, row_to_event,
                                     verify_connection)
from firmware.protocol.decoded import Decoded
from firmware.protocol.event_codec import Event, make_event
from firmware.protocol.keys import public_key_b64
from firmware.protocol.timestamps import rfc3339, utc_now

DEFAULT_QUOTA_BYTES = 256 * 1024 * 1024  # ~500k decision events at ~500 bytes each
DEFAULT_RETENTION = timedelta(days=30)  # uploaded events are kept this long for local audit
MAX_BATCH = 64  # events one group commit writes in one transaction
DEFAULT_COMMIT_TIMEOUT_S = 30.0  # an append waits this long for its turn at the disk
__all__ = ["EventLog", "EventLogError", "LogStats", "Durability", "MAX_BODY_BYTES",
           "public_key_b64", "rfc3339", "utc_now"]
SELECT_EVENTS = "SELECT seq, ts, kind, body, prev_hash, hash, sig FROM events"
_INSERT = ("INSERT INTO events(seq, ts, kind, body, prev_hash, hash, sig) "
           "VALUES (?, ?, ?, ?, ?, ?, ?)")


class _RoundFull(Exception):
    """The quota or the disk filled up inside a round; `fitted` events went in before it."""

    def __init__(self, fitted: int) -> None:
        super().__init__(fitted)
        self.fitted = fitted


class EventLog:
    """Append-only signed event log. Thread-safe: one connection behind one lock.

    Durability: WAL with synchronous=FULL (the default) fsyncs the WAL at every commit, so an
    event that append() returned survives a power cut, not only a crash of the process. NORMAL
    in WAL mode survives a process crash but may lose the last commits on power loss; it is
    offered for bulk seeding and benchmarks, not for the kiosk. Threads that append at the same
    time share one commit (group commit, see groupcommit.py); each still returns only once its
    own event is durable. What awaits upload, and the fleet's answers, is the Outbox's
    (outbox.py); this class only frees what the outbox marked uploaded (compaction.py).
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, key: Ed25519PrivateKey,
                 device_id: str, quota_bytes: int | None, retention: timedelta,
                 clock: Callable[[], datetime],
                 commit_timeout_s: float = DEFAULT_COMMIT_TIMEOUT_S) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._path = path
        self._key = key
        self._public_key = key.public_key()
        self._device_id = device_id
        self._quota_bytes = quota_bytes
        self._clock = clock
        self._lock = threading.RLock()
        self._committer: GroupCommitter[Prepared, Event] = GroupCommitter(
            self._lock, self._commit_batch, MAX_BATCH)
        self._commit_timeout_s = commit_timeout_s
        self._quota = AppendQuota(conn, enforced=quota_bytes is not None)
        meta = read_meta(conn)
        self._compactor = Compactor(meta, retention, clock)
        row = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        self._tip_seq: int = row[0] if row else self._compactor.anchor_seq
        self._tip_hash: str = row[1] if row else self._compactor.anchor_hash

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, key: Ed25519PrivateKey, device_id: str,
             quota_bytes: int | None = DEFAULT_QUOTA_BYTES,
             retention: timedelta = DEFAULT_RETENTION,
             durability: Durability = "full",
             clock: Callable[[], datetime] = utc_now,
             integrity_check: bool = True,
             commit_timeout_s: float = DEFAULT_COMMIT_TIMEOUT_S,
             restart_after: int | None = None) -> "EventLog":
        """Open or create the log; migrates the schema (backup first) and checks the tail.

        `restart_after`, for a log that holds nothing yet: its chain starts at that seq + 1
        with the genesis prev_hash (a kiosk that lost its log; see firmware/eventlog/restart.py).
        """
        path = Path(path)
        if not device_id or not isinstance(device_id, str):
            raise EventLogError("EVENTLOG_BAD_CONFIG", "device_id must be a non-empty string")
        if quota_bytes is not None and quota_bytes < 64 * 1024:
            raise EventLogError("EVENTLOG_BAD_CONFIG", "quota_bytes must be at least 64 KiB")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():  # owner-only; SQLite gives the -wal and -shm files the same mode
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        if not commit_timeout_s > 0:
            raise EventLogError("EVENTLOG_BAD_CONFIG", "commit_timeout_s must be positive")
        conn = None
        try:
            conn = connect(path, durability)
            if integrity_check:
                result = conn.execute("PRAGMA quick_check").fetchone()[0]
                if result != "ok":
                    raise EventLogError("EVENTLOG_CORRUPT", f"integrity check failed: {result}")
            schema.migrate(conn, path)
            if quota_bytes is not None:
                set_hard_limit(conn, quota_bytes)
            bind_identity(conn, device_id, public_key_b64(key))
            if restart_after is not None:
                number_new_chain_after(conn, restart_after)
            preallocate_wal(conn, path)
            log = cls(conn, path, key, device_id, quota_bytes, retention, clock,
                      commit_timeout_s)
            log._check_tail()
            return log
        except (EventLogError, IdentityMismatch, NewChainRefused, schema.SchemaError,
                sqlite3.Error) as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, NewChainRefused):
                raise EventLogError("EVENTLOG_BAD_CONFIG", str(exc)) from None
            if isinstance(exc, IdentityMismatch):
                raise EventLogError("EVENTLOG_IDENTITY_MISMATCH", str(exc)) from None
            if isinstance(exc, schema.SchemaError):
                raise EventLogError("EVENTLOG_SCHEMA", str(exc)) from exc
            if isinstance(exc, sqlite3.Error):
                raise translate(exc, "opening the event log") from exc
            raise

    def _check_tail(self) -> None:
        """Check the newest event before extending the chain from it (cheap, every open)."""
        seq = broken_tail(self._db(), self._device_id, self._public_key,
                          self._compactor.anchor_seq, self._compactor.anchor_hash)
        if seq is not None:
            raise EventLogError("EVENTLOG_CHAIN_BROKEN", f"the newest event (seq {seq}) does "
                                "not verify; run `healthgate log verify`")

    # ---- properties ----------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self._path

    @property
    def device_id(self) -> str:
        return self._device_id

    @property
    def quota_bytes(self) -> int | None:
        return self._quota_bytes

    @property
    def tip_seq(self) -> int:
        return self._tip_seq

    @property
    def clock(self) -> Callable[[], datetime]:
        """The clock that stamps events (and the outbox's acknowledgements)."""
        return self._clock

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise EventLogError("EVENTLOG_CLOSED", "the event log is closed")
        return self._conn

    # ---- appending -----------------------------------------------------------------------
    def append(self, kind: str, body: dict[str, Decoded], retry_of: object = None) -> Event:
        """Sign, chain and durably commit one event; returns it only once it is on disk.

        Raises EventLogError (nothing is stored) for a refused body, a full quota or disk
        (after freeing what the retention policy allows), or a database failure. Appends from
        several threads at once are committed together (one fsync), in the order they queued;
        an append that waits longer than commit_timeout_s for its turn raises EVENTLOG_BUSY.
        When the commit holding the event was still running at that point, the event may yet
        be stored: the error's `pending` is set, and the retry passes it as `retry_of`. The
        retry then first settles that earlier attempt: if it was stored, its event is returned
        and nothing is stored twice; if it failed, the event is appended afresh; if it is still
        undecided, EVENTLOG_BUSY again (with the same `pending`).
        """
        try:  # the guard and encoding first, outside the lock: they overlap another's fsync
            prepared = prepare(kind, body)
            # The time the event will carry must pass the schema too (the fleet checks it):
            # a clock outside the sane range is refused here, nothing stored, and the kiosk
            # latches its fault until the clock is right. (The commit reads the clock again,
            # moments later.)
            check_time(rfc3339(self._clock()))
        except BodyRejected as exc:
            raise EventLogError(exc.code, str(exc), reason=exc.reason) from None
        if retry_of is not None:
            try:
                return self._committer.outcome_of(retry_of, self._commit_timeout_s)
            except CommitTimeout as exc:
                raise EventLogError("EVENTLOG_BUSY", str(exc), exc.pending) from None
            except (EventLogError, RuntimeError):
                pass  # the earlier attempt failed and stored nothing: append it afresh
            except ValueError:
                pass  # a handle of another (since reopened) log: it cannot be settled here
        try:
            return self._committer.submit(prepared, self._commit_timeout_s)
        except CommitTimeout as exc:
            raise EventLogError("EVENTLOG_BUSY", str(exc), exc.pending) from None

    def _commit_batch(self, batch: Sequence[Prepared]) -> list[Event | EventLogError]:
        """Commit queued appends (the writer lock is held): as few transactions as the quota
        allows, normally one. Each append gets its event or its own error."""
        outcomes: list[Event | EventLogError] = []
        conn = self._conn
        cap = len(batch)  # events per round; shrinks only while the quota or disk is full
        while len(outcomes) < len(batch):
            waiting = batch[len(outcomes):]
            if conn is None:
                return outcomes + [EventLogError("EVENTLOG_CLOSED", "the event log is closed")
                                   for _ in waiting]
            try:
                self._make_room(conn)
                outcomes += self._write_round(conn, waiting[:cap])
                cap = len(batch)
            except EventLogError as exc:  # _make_room: full, nothing left to compact
                return outcomes + [exc.copy() for _ in waiting]
            except _RoundFull as full:
                try:
                    freed = self._compactor.compact(conn, self._tip_seq, pressure=True)
                except sqlite3.Error as exc:
                    return outcomes + [translate(exc, "making room for an event")
                                       for _ in waiting]
                if freed:
                    continue
                if min(cap, len(waiting)) == 1:  # this event alone does not fit: refuse it
                    outcomes.append(self._quota.full_error(conn))
                    cap = len(batch)
                else:  # try fewer at once: what went in before the failure, or half
                    cap = max(1, min(full.fitted, len(waiting) // 2))
            except sqlite3.Error as exc:
                self._reload_tip(conn)  # an I/O error fails every append of this round
                return outcomes + [translate(exc, "appending an event") for _ in waiting]
        return outcomes

    def _write_round(self, conn: sqlite3.Connection, batch: Sequence[Prepared]) -> list[Event]:
        """Sign and chain events from the tip and commit them in one transaction (one fsync
        with synchronous=FULL). Stops early at the soft quota limit; raises _RoundFull when
        the hard limit or the disk is reached (then nothing of the round is stored)."""
        events: list[Event] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            # the tip under the write lock: another process may have appended since our last
            # round (`healthgate-provision import-bundle` records its outcome while the kiosk
            # runs), and chaining from a stale tip would collide on its seq
            self._reload_tip(conn)
            seq, prev_hash = self._tip_seq, self._tip_hash
            for item in batch:
                if events and not self._quota.allows_append(conn):
                    break  # the rest go in the next round, after _make_room
                event = make_event(self._key, self._device_id, seq + 1, rfc3339(self._clock()),
                                   item.kind, item.body, prev_hash, item.text)
                try:
                    conn.execute(_INSERT, (event.seq, event.ts, event.kind, item.text,
                                           event.prev_hash, event.hash, event.sig))
                except sqlite3.Error as exc:
                    if is_full(exc):
                        raise _RoundFull(len(events)) from exc
                    raise
                events.append(event)
                seq, prev_hash = event.seq, event.hash
            try:
                conn.execute("COMMIT")  # with synchronous=FULL this returns after the fsync
            except sqlite3.Error as exc:
                if is_full(exc):
                    raise _RoundFull(len(events) // 2) from exc
                raise
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the original failure is the one to report
            raise
        self._tip_seq, self._tip_hash = seq, prev_hash
        self._compactor.after_appends(conn, seq, len(events))
        return events

    def commit_counts(self) -> tuple[int, int]:
        """(transactions run for appends, appends they decided): the mean group-commit size."""
        return self._committer.batches, self._committer.items

    def _reload_tip(self, conn: sqlite3.Connection) -> None:
        """Take the tip from the database when it is ahead: a commit that reported an I/O
        error may still have reached the disk, or another process appended; the next seq must
        follow it."""
        try:
            row = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        except sqlite3.Error:
            return
        if row is not None and row[0] > self._tip_seq:
            self._tip_seq, self._tip_hash = row

    def _make_room(self, conn: sqlite3.Connection) -> None:
        """Keep appends under the soft limit, so the reserve above it is always there for
        recording acknowledgements and compacting: a full log must still be able to drain."""
        while not self._quota.allows_append(conn):
            if self._compactor.compact(conn, self._tip_seq, pressure=True) == 0:
                raise self._quota.full_error(conn)

    # ---- compaction ----------------------------------------------------------------------
    def compact(self) -> int:
        """Apply the retention policy now; returns the number of events removed."""
        with self._lock:
            try:
                return self._compactor.compact(self._db(), self._tip_seq, pressure=False)
            except sqlite3.Error as exc:
                raise translate(exc, "compacting") from exc

    # ---- for the outbox (firmware/eventlog/outbox.py) ------------------------------------
    @contextmanager
    def bookkeeping(self, what: str, writes: bool) -> Iterator[sqlite3.Connection]:
        """The connection under the writer lock, for the outbox's queries and its upload
        bookkeeping. With `writes`, the block runs in one transaction (rolled back when it
        fails) and the next append counts pages again, since rows may have grown. SQLite
        errors become EventLogError naming `what`."""
        with self._lock:
            conn = self._db()
            try:
                if not writes:
                    yield conn
                    return
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
                self._quota.recount()
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise translate(exc, what) from exc
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # ---- inspection ----------------------------------------------------------------------
    def get(self, seq: int) -> Event | None:
        with self._lock:
            row = self._db().execute(SELECT_EVENTS + " WHERE seq = ?", (seq,)).fetchone()
        return row_to_event(self._device_id, row) if row else None

    def stats(self) -> LogStats:
        with self._lock:
            conn = self._db()
            try:
                total, pending, uploaded, rejected = conn.execute(
                    "SELECT COUNT(*), COALESCE(SUM(uploaded = 0 AND rejected IS NULL), 0), "
                    "COALESCE(SUM(uploaded), 0), COALESCE(SUM(rejected IS NOT NULL), 0) "
                    "FROM events").fetchone()
                used = used_pages(conn) * conn.execute("PRAGMA page_size").fetchone()[0]
                last_acked = read_meta(conn).get("last_acked", "0")  # kept by the outbox
            except sqlite3.Error as exc:
                raise translate(exc, "reading statistics") from exc
            return LogStats(events=total, pending=pending, uploaded=uploaded, rejected=rejected,
                            tip_seq=self._tip_seq, anchor_seq=self._compactor.anchor_seq,
                            compacted=self._compactor.compacted, last_acked=int(last_acked),
                            used_bytes=used, quota_bytes=self._quota_bytes)

    def verify(self) -> VerifyReport:
        """Check the whole chain and every signature against this device's key. Runs on its
        own read connection (a WAL snapshot) so appends are not blocked while it works."""
        if self._conn is None:
            raise EventLogError("EVENTLOG_CLOSED", "the event log is closed")
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=10)
        try:
            return verify_connection(conn, self._public_key)
        except sqlite3.Error as exc:
            raise translate(exc, "verifying") from exc
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    pass  # the WAL is replayed on the next open anyway
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "EventLog":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
