"""Group commit: threads that append at once share one transaction, so one fsync makes all durable."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class CommitTimeout(Exception):
    """The item's turn (or its batch's commit) did not come within the timeout.

    `in_flight` is False when the item was withdrawn before any transaction held it (nothing of
    it is stored) and True when a commit holding it was still running: it may yet be stored.
    """

    def __init__(self, in_flight: bool, message: str, pending: object = None) -> None:
        super().__init__(message)
        self.in_flight = in_flight
        # for an in-flight item: a handle whose outcome `GroupCommitter.outcome_of` tells later
        self.pending = pending


class _Ticket(Generic[Item, Result]):
    """One submitted item and, once its batch is decided, its result or its own exception."""

    __slots__ = ("done", "error", "item", "owner", "result")

    def __init__(self, item: Item, owner: object) -> None:
        self.item = item
        self.owner = owner  # the committer whose condition announces this ticket's outcome
        self.done = False
        self.result: Result | None = None
        self.error: BaseException | None = None

    def outcome(self) -> Result:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommitter(Generic[Item, Result]):
    """Leader/follower group commit in front of the writer lock of one database connection.

    submit() queues the item. If no thread is leading, the submitter becomes the leader: it
    takes the writer lock, takes every queued item (up to max_batch, oldest first) and hands
    them to `commit_batch` in one call, which writes them in one transaction (one fsync). The
    others wait on a condition, not on the lock: when the batch holding their item is decided
    they are woken and return at once, and when the leader steps down one of those still queued
    leads the next batch. So a lone writer commits alone with no waiting, and N writers share
    the fsync of whoever is at the disk. Only the leader takes items off the queue.

    Every submit() returns only once its own item's batch has been decided by commit_batch: with
    the item's result (after that transaction committed) or raising that item's exception.
    commit_batch answers one outcome per item, in order, and gives every failed item its own
    exception object (one object raised in several threads at once would garble its traceback).
    """

    def __init__(self, lock: threading.RLock,
                 commit_batch: Callable[[Sequence[Item]], Sequence[Result | BaseException]],
                 max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._lock = lock  # the connection's writer lock, shared with the log's other writers
        self._commit_batch = commit_batch
        self._max_batch = max_batch
        self._queue: list[_Ticket[Item, Result]] = []
        self._leading = False  # a thread is committing (or about to): the others wait
        self._changed = threading.Condition(threading.Lock())  # guards the three fields here
        self.batches = 0  # transactions decided, for the benchmark's batch size
        self.items = 0

    def queued(self) -> int:
        """Items waiting for a leader (not yet in a transaction)."""
        with self._changed:
            return len(self._queue)

    def submit(self, item: Item, timeout_s: float) -> Result:
        """Commit `item` in the next batch; returns its result once that batch committed."""
        ticket: _Ticket[Item, Result] = _Ticket(item, self)
        deadline = time.monotonic() + timeout_s
        with self._changed:
            self._queue.append(ticket)
            while not ticket.done and self._leading:
                left = deadline - time.monotonic()
                if left <= 0:
                    return self._late(ticket, timeout_s)
                self._changed.wait(left)
            if ticket.done:
                return ticket.outcome()
            self._leading = True
        try:
            self._lead(ticket, deadline, timeout_s)
        finally:
            with self._changed:
                self._leading = False
                self._changed.notify_all()  # a queued follower leads the next batch
        return ticket.outcome()

    def _lead(self, ticket: _Ticket[Item, Result], deadline: float, timeout_s: float) -> None:
        """Commit batches until our own item is decided (more than max_batch may be ahead)."""
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            with self._changed:  # nobody else takes items while we lead: it is still queued
                self._queue.remove(ticket)
            raise CommitTimeout(False, f"no turn to commit within {timeout_s:g} s; "
                                "nothing was stored")
        try:
            while not ticket.done:
                with self._changed:
                    batch = self._queue[:self._max_batch]
                    del self._queue[:self._max_batch]
                if not batch:  # cannot happen (only the leader takes items); never spin
                    raise RuntimeError("group commit lost an item")
                self._run(batch)
        finally:
            self._lock.release()

    def _run(self, batch: list[_Ticket[Item, Result]]) -> None:
        """Decide one batch; every ticket in it is marked done, whatever happens."""
        try:
            outcomes = list(self._commit_batch([ticket.item for ticket in batch]))
            if len(outcomes) != len(batch):
                raise RuntimeError(f"commit_batch answered {len(outcomes)} outcomes "
                                   f"for {len(batch)} items")
        except BaseException as exc:  # a bug or an interrupt: nobody may wait for ever
            self._publish(batch, [_failure(exc) for _ in batch])
            raise
        self._publish(batch, outcomes)

    def _publish(self, batch: list[_Ticket[Item, Result]],
                 outcomes: Sequence[Result | BaseException]) -> None:
        with self._changed:
            for ticket, outcome in zip(batch, outcomes):
                if isinstance(outcome, BaseException):
                    ticket.error = outcome
                else:
                    ticket.result = outcome
                ticket.done = True
            self.batches += 1
            self.items += len(batch)
            self._changed.notify_all()  # its followers return now, not after the next commit

    def _late(self, ticket: _Ticket[Item, Result], timeout_s: float) -> Result:
        """The deadline passed while another thread led (called holding the condition):
        withdraw the item if it is still queued, else wait up to timeout_s more for the
        commit that holds it."""
        if ticket in self._queue:
            self._queue.remove(ticket)
            raise CommitTimeout(False, f"no turn to commit within {timeout_s:g} s; "
                                "nothing was stored")
        return self._await(ticket, timeout_s)

    def _await(self, ticket: _Ticket[Item, Result], timeout_s: float) -> Result:
        """Wait (holding the condition) up to timeout_s for a ticket already in a commit."""
        deadline = time.monotonic() + timeout_s
        while not ticket.done:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CommitTimeout(True, "the commit holding this event did not finish "
                                    f"within {timeout_s:g} s; it may still be stored", ticket)
            self._changed.wait(left)
        return ticket.outcome()

    def outcome_of(self, pending: object, timeout_s: float) -> Result:
        """The outcome of an item that an earlier submit() left in flight (its CommitTimeout's
        `pending`): its result once that commit is decided, or its own exception; raises
        CommitTimeout(in_flight=True) again if the commit is still undecided after timeout_s.
        So a caller can retry without storing the item twice."""
        if not isinstance(pending, _Ticket) or pending.owner is not self:
            raise ValueError("pending must come from a CommitTimeout of this committer")
        with self._changed:
            return self._await(pending, timeout_s)


def _failure(exc: BaseException) -> BaseException:
    failure = RuntimeError(f"the group commit failed: {type(exc).__name__}: {exc}")
    failure.__cause__ = exc
    return failure
