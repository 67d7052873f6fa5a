"""Event uploader: signed batches to the fleet server, newest first, with backoff and resume."""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.eventlog.log import EventLogError
from firmware.eventlog.outbox import Outbox
from firmware.protocol.decoded import Decoded
from firmware.protocol.request_signing import sign_request
from firmware.sync.backoff import BackoffPolicy
from firmware.sync.neterror import cannot_reach

log = logging.getLogger(__name__)

EVENTS_PATH = "/v1/events"
DEFAULT_BATCH_SIZE = 200
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_POLL_INTERVAL_S = 5.0  # idle re-check of the queue when nobody calls notify()
# Sign with the server's time once our clock is off by more than this (a kiosk without an RTC
# that boots with a wrong clock must still be able to upload; the server still checks freshness).
SKEW_APPLY_THRESHOLD_S = 30.0
MAX_REASON_CHARS = 64


class UploadError(Exception):
    """One upload attempt failed; `code` is a stable reason, `retry_now` skips the backoff."""

    def __init__(self, code: str, message: str, retry_now: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retry_now = retry_now


@dataclass(frozen=True)
class UploaderStatus:
    """What the kiosk shows about sync ("offline since 09:12, 340 events waiting")."""

    running: bool
    pending: int
    rejected: int
    last_acked: int
    last_success: datetime | None
    last_attempt: datetime | None
    last_error: str | None
    consecutive_failures: int
    offline_since: datetime | None
    next_attempt_in_s: float | None
    clock_skew_s: float | None  # server Date minus our clock, from the last response
    batch_size: int
    uploaded_this_run: int

    def as_dict(self) -> dict[str, Decoded]:
        data = asdict(self)
        for name in ("last_success", "last_attempt", "offline_since"):
            if data[name] is not None:
                data[name] = data[name].isoformat()
        return data


class Uploader:
    """Moves pending events from the log's outbox to the fleet server.

    Delivery is at-least-once on the wire: an event is marked uploaded only after the server
    lists its seq in `acked`, so a lost response means a re-send that the server deduplicates.
    The acknowledgement state lives in the log's database (firmware/eventlog/outbox.py), so a
    restart resumes exactly there.
    """

    def __init__(self, outbox: Outbox, base_url: str, device_id: str, key: Ed25519PrivateKey,
                 batch_size: int = DEFAULT_BATCH_SIZE, backoff_initial_s: float = 1.0,
                 backoff_max_s: float = 300.0, jitter: float = 0.5,
                 timeout_s: float = DEFAULT_TIMEOUT_S, newest_first: bool = True,
                 session: requests.Session | None = None,
                 poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 rng: random.Random | None = None) -> None:
        if batch_size < 1 or timeout_s <= 0 or poll_interval_s <= 0:
            raise ValueError("batch_size, timeout_s and poll_interval_s must be positive")
        self._outbox = outbox
        self._url = base_url.rstrip("/") + EVENTS_PATH
        self._path = urlsplit(self._url).path  # what the server sees, prefix included
        self._device_id = device_id
        self._key = key
        self._max_batch = batch_size
        self._batch = batch_size  # shrinks on 413/422 to isolate a poison event, then regrows
        self._isolation_accepted = False  # the server took other events during an isolation
        self._backoff = BackoffPolicy(initial_s=backoff_initial_s, max_s=backoff_max_s,
                                      jitter=jitter)
        self._timeout_s = timeout_s
        self._newest_first = newest_first
        self._session = session or requests.Session()
        self._poll_interval_s = poll_interval_s
        self._clock = clock
        self._rng = rng or random.Random()
        self._attempt_lock = threading.Lock()  # one request at a time, thread or caller
        self._state_lock = threading.Lock()
        self._stop = threading.Event()  # the current thread's; a restarted thread gets its own
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = False  # started and not stopped: the supervisor watches it
        self.beats = 0  # passes of the thread's loop, for the supervisor
        self._last_success: datetime | None = None
        self._last_attempt: datetime | None = None
        self._last_error: str | None = None
        self._failures = 0
        self._offline_since: datetime | None = None
        self._next_attempt: float | None = None  # time.monotonic() of the next try
        self._skew_s: float | None = None
        self._uploaded = 0
        self._more_waiting = False

    # ---- one batch -----------------------------------------------------------------------
    def upload_once(self) -> int:
        """Send one batch; returns how many events the server acknowledged (0: nothing to send).

        Raises UploadError when the attempt failed; the status records it either way.
        """
        with self._attempt_lock:
            try:
                acked = self._attempt()
            except UploadError as exc:
                self._record_failure(exc)
                raise
            if acked is None:
                return 0  # nothing to send: no contact, so the online/offline state stands
            self._record_success(acked)
            return acked

    def _attempt(self) -> int | None:
        try:
            events = self._outbox.pending(self._batch, self._newest_first)
        except EventLogError as exc:
            raise UploadError("UPLOAD_LOG_ERROR", str(exc)) from exc
        self._more_waiting = len(events) == self._batch
        if not events:
            return None
        with self._state_lock:
            self._last_attempt = self._clock()
        body = json.dumps({"events": [event.to_wire() for event in events]},
                          separators=(",", ":"), ensure_ascii=False).encode()
        headers = sign_request(self._key, self._device_id, "POST", self._path, body,
                               now=self._signing_time())
        headers["Content-Type"] = "application/json"
        try:
            response = self._session.post(self._url, data=body, headers=headers,
                                          timeout=self._timeout_s)
        except requests.RequestException as exc:
            raise UploadError("UPLOAD_NETWORK", cannot_reach(self._url, exc)) from exc
        self._note_server_time(response)
        sent = {event.seq for event in events}
        if response.status_code == 200:
            return self._apply_acks(response, sent)
        if response.status_code in (413, 422):
            return self._isolate(response.status_code, sent)
        detail = response.text[:200].replace("\n", " ")
        if response.status_code == 401:
            raise UploadError("UPLOAD_UNAUTHORIZED", f"server refused the request: {detail}")
        raise UploadError(f"UPLOAD_HTTP_{response.status_code}", detail)

    def _apply_acks(self, response: requests.Response, sent: set[int]) -> int:
        try:
            reply = response.json()
            acked = reply["acked"]
            rejected = reply.get("rejected", [])
            if not isinstance(acked, list) or not isinstance(rejected, list):
                raise TypeError("acked and rejected must be lists")
            acked_seqs = {seq for seq in acked if type(seq) is int} & sent
            refusals = {item["seq"]: str(item.get("reason", "REJECTED"))[:MAX_REASON_CHARS]
                        for item in rejected
                        if isinstance(item, dict) and type(item.get("seq")) is int
                        and item["seq"] in sent and item["seq"] not in acked_seqs}
        except (ValueError, KeyError, TypeError) as exc:  # truncated or foreign body
            raise UploadError("UPLOAD_BAD_RESPONSE", f"unusable reply to a 200: {exc}") from exc
        if not acked_seqs and not refusals:
            raise UploadError("UPLOAD_NOT_ACKED", f"server acknowledged none of {len(sent)}")
        try:
            self._outbox.mark_uploaded(acked_seqs)
            self._outbox.mark_rejected(refusals)
        except EventLogError as exc:
            raise UploadError("UPLOAD_LOG_ERROR", str(exc)) from exc
        if refusals:
            log.warning("server rejected %d event(s): %s", len(refusals),
                        sorted(set(refusals.values())))
        self._isolation_accepted = True
        self._batch = min(self._max_batch, self._batch * 2)  # regrow after an isolation
        return len(acked_seqs)

    def _isolate(self, status: int, sent: set[int]) -> int:
        """413/422: halve the batch until the offending event travels alone, then park it as
        rejected, so one poison event never blocks the queue behind it. An event is parked only
        when the server accepted other events meanwhile: a proxy that refuses everything must
        not get the whole queue parked, it gets backoff."""
        if len(sent) > 1:
            if self._batch == self._max_batch:
                self._isolation_accepted = False  # a new isolation starts
            self._batch = max(1, len(sent) // 2)
            raise UploadError(f"UPLOAD_HTTP_{status}",
                              f"batch refused; retrying with {self._batch}", retry_now=True)
        if not self._isolation_accepted:
            raise UploadError(f"UPLOAD_HTTP_{status}",
                              "the server refuses even single events; backing off")
        (seq,) = sent
        reason = "SERVER_TOO_LARGE" if status == 413 else "SERVER_MALFORMED"
        try:
            self._outbox.mark_rejected({seq: reason})
        except EventLogError as exc:
            raise UploadError("UPLOAD_LOG_ERROR", str(exc)) from exc
        raise UploadError(f"UPLOAD_HTTP_{status}", f"event {seq} parked as {reason}",
                          retry_now=True)

    def _note_server_time(self, response: requests.Response) -> None:
        stamp = response.headers.get("Date")
        if not stamp:
            return
        try:
            server = parsedate_to_datetime(stamp)
        except (TypeError, ValueError):
            return
        if server.tzinfo is None:
            server = server.replace(tzinfo=timezone.utc)
        with self._state_lock:
            self._skew_s = (server - self._clock()).total_seconds()

    def _signing_time(self) -> datetime:
        now = self._clock()
        skew = self._skew_s
        if skew is not None and abs(skew) > SKEW_APPLY_THRESHOLD_S:
            return now + timedelta(seconds=skew)
        return now

    def _record_success(self, acked: int) -> None:
        with self._state_lock:
            self._last_success = self._clock()
            self._last_error = None
            self._failures = 0
            self._offline_since = None
            self._uploaded += acked

    def _record_failure(self, exc: UploadError) -> None:
        with self._state_lock:
            self._last_error = str(exc)
            if not exc.retry_now:
                self._failures += 1
                if self._failures == 1:  # once per outage, in one line; the status keeps the rest
                    log.warning("upload failed, retrying with backoff: %s", exc)
                self._offline_since = self._offline_since or self._clock()

    # ---- background thread ---------------------------------------------------------------
    def start(self) -> None:
        self._running = True
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._start_thread()

    def _start_thread(self) -> None:
        stop = self._stop
        self._thread = threading.Thread(target=lambda: self._run(stop), name="uploader",
                                        daemon=True)
        self._thread.start()

    def restart(self) -> None:
        """A new thread for one that died or is stuck (the supervisor's call): the old one is
        told to stop, so should it come back it ends after its current attempt (attempts are
        serialised by a lock, so the two never send at once)."""
        self._stop.set()
        self._stop = threading.Event()
        self._start_thread()

    def running(self) -> bool:
        return self._running

    def alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def max_silence_s(self) -> float:
        """The longest wait (a full backoff, or the poll interval) plus the longest request,
        twice over: a read timeout bounds each socket read, not a whole slow answer."""
        return 2.0 * (max(self._backoff.max_s, self._poll_interval_s) + self._timeout_s)

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop the thread; True when it ended within `timeout` (an in-flight request ends
        within timeout_s, so pass at least that)."""
        self._running = False
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        stopped = not thread.is_alive()
        if stopped:
            self._thread = None
        return stopped

    def notify(self) -> None:
        """Tell an idle uploader that a new event is waiting (no effect during backoff)."""
        self._wake.set()

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.beats += 1
            try:
                self.upload_once()
                if self._more_waiting:
                    continue  # a backlog: keep draining
                self._sleep(self._poll_interval_s, wakeable=True, stop=stop)
            except UploadError as exc:
                if exc.retry_now:
                    continue
                self._sleep(self._backoff.delay(self._failures, self._rng), wakeable=False,
                            stop=stop)
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any one failure
                log.exception("uploader attempt failed unexpectedly")
                self._record_failure(UploadError("UPLOAD_INTERNAL", repr(exc)))
                self._sleep(self._backoff.delay(self._failures, self._rng), wakeable=False,
                            stop=stop)

    def _sleep(self, seconds: float, wakeable: bool, stop: threading.Event) -> None:
        with self._state_lock:
            self._next_attempt = time.monotonic() + seconds
        if wakeable:
            self._wake.wait(seconds)
            self._wake.clear()
        else:  # during backoff new decisions must not hammer a server that is down
            stop.wait(seconds)
        with self._state_lock:
            self._next_attempt = None

    # ---- status --------------------------------------------------------------------------
    def status(self, counts: bool = True) -> UploaderStatus:
        """`counts=False` leaves pending and rejected at -1 without querying the log (the
        status page counts them on its own read connection, never waiting for an append)."""
        pending = rejected = -1  # also when the log is closed or failing: the kiosk shows its fault
        try:
            if counts:
                pending = self._outbox.pending_count()
                rejected = len(self._outbox.rejected())
        except EventLogError:
            pass
        with self._state_lock:
            next_in = (None if self._next_attempt is None
                       else max(0.0, self._next_attempt - time.monotonic()))
            return UploaderStatus(
                running=self._thread is not None and self._thread.is_alive(),
                pending=pending, rejected=rejected, last_acked=self._outbox.last_acked,
                last_success=self._last_success, last_attempt=self._last_attempt,
                last_error=self._last_error, consecutive_failures=self._failures,
                offline_since=self._offline_since, next_attempt_in_s=next_in,
                clock_skew_s=self._skew_s, batch_size=self._batch,
                uploaded_this_run=self._uploaded)
