"""ASGI middleware that admits request bodies: headers authenticated first, then bounded in size,
per device, overall and in receive rate."""
from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Awaitable, Callable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp as App, Message, Receive, Scope, Send

MIB = 1024 * 1024
DEFAULT_MAX_BODY_BYTES = 4 * MIB  # one signed upload (POST /v1/events)
SMALL_BODY_MAX_BYTES = 16 * 1024  # every other route: registration is < 1 KiB of JSON
# An operator's trust data upload on the dashboard (a logged-in session is checked first); the
# EU's DCC signer list is about 1.5 MB of JSON, all member states' rules a few MB.
DEFAULT_MAX_OPERATOR_UPLOAD_BYTES = 32 * MIB
DEFAULT_BODY_BUDGET_BYTES = 64 * MIB  # all bodies being received or handled, per process
# A kiosk sends one upload at a time; a few more allow retries whose predecessor the server
# is still reading after the kiosk gave up on it.
DEFAULT_MAX_UPLOADS_PER_DEVICE = 4
DEFAULT_MIN_RECEIVE_RATE_BPS = 1024  # a body must arrive at least this fast after the grace
DEFAULT_RECEIVE_GRACE_S = 10.0
RATE_CHECK_INTERVAL_S = 1.0  # how often the receive rates are checked in production
RETRY_AFTER_S = 5  # 503 for a full budget or a busy device: a body in flight takes a while
# After an early answer (401, 503), discard at most this much of the body so that a client that
# sent a small body at once can read the answer rather than a reset; never waits long for it.
EARLY_DRAIN_LIMIT_BYTES = 64 * 1024
EARLY_DRAIN_TIMEOUT_S = 2.0
# A 413 to a request whose headers were authenticated is drained further (discarded, not
# buffered, still under the receive-rate rule): the kiosk must read it to split its batch.
OVERSIZE_DRAIN_LIMIT_BYTES = 64 * MIB


class Refused(Exception):
    """A refusal carrying its answer: raised by the pre-authentication (sent without reading
    the body) and by endpoints (the server's exception handler sends it)."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


def refusal(status: int, code: str, detail: str,
            headers: dict[str, str] | None = None) -> JSONResponse:
    """An error answer that closes the connection: the rest of its body is never read, so the
    connection cannot be reused (and the server must not keep receiving into a dead request)."""
    response = JSONResponse({"error": code, "detail": detail}, status_code=status,
                            headers={**(headers or {}), "Connection": "close"})
    return response


@dataclass(frozen=True)
class Limits:
    """The body bounds; see docs/fleet-api.md, section Limits."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    small_body_bytes: int = SMALL_BODY_MAX_BYTES
    budget_bytes: int = DEFAULT_BODY_BUDGET_BYTES
    max_uploads_per_device: int = DEFAULT_MAX_UPLOADS_PER_DEVICE
    min_receive_rate_bps: float = DEFAULT_MIN_RECEIVE_RATE_BPS
    receive_grace_s: float = DEFAULT_RECEIVE_GRACE_S

    def __post_init__(self) -> None:
        if min(self.max_body_bytes, self.small_body_bytes, self.budget_bytes,
               self.max_uploads_per_device) < 1 or self.min_receive_rate_bps < 0 \
                or self.receive_grace_s < 0:
            raise ValueError(f"body limits must be positive: {self}")


@dataclass(eq=False)
class Upload:
    """One body being received or handled."""

    device_id: str | None
    started: float
    loop: asyncio.AbstractEventLoop
    cut: asyncio.Future[None]
    counted_bytes: int = 0  # of the budget: what arrived and is kept
    received: int = 0
    receiving: bool = True
    holds_slot: bool = False  # holds one of its device's upload slots


class BodyGuard:
    """The shared state of the limits: bytes in flight, uploads per device, receive rates.

    Thread-safe: the server's event loop admits and releases; a ticker (or a test, after
    advancing the injected clock) calls `check_rates`."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic,
                 rate_check_interval_s: float | None = RATE_CHECK_INTERVAL_S) -> None:
        self.limits, self.clock = limits, clock
        self.rate_check_interval_s = rate_check_interval_s
        self._lock = threading.Lock()
        self._uploads: set[Upload] = set()
        self._per_device: Counter[str] = Counter()
        self.bytes_in_flight = 0
        self.peak_bytes_in_flight = 0
        self.slow_senders_cut = 0
        self._ticking: set[asyncio.AbstractEventLoop] = set()

    # -- admission -------------------------------------------------------------------------
    def admit(self, device_id: str | None, declared: int) -> Upload | str:
        """Take a device slot for a body of `declared` bytes (0 when unknown); or the refusal
        code. The budget counts bytes as they arrive (`grow`), not as declared: a slow
        sender that declares a large body and sends little holds little of it. A body that
        cannot fit in what is left even now is refused before it is read."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if device_id is not None and \
                    self._per_device[device_id] >= self.limits.max_uploads_per_device:
                return "DEVICE_BUSY"
            if self.bytes_in_flight + declared > self.limits.budget_bytes:
                return "SERVER_BUSY"
            upload = Upload(device_id, self.clock(), loop, loop.create_future(),
                            holds_slot=device_id is not None)
            if device_id is not None:
                self._per_device[device_id] += 1
            self._uploads.add(upload)
            return upload

    def grow(self, upload: Upload, size: int) -> bool:
        """`size` bytes of the body are in and kept: count them against the budget. False
        (nothing counted) when that would exceed it."""
        with self._lock:
            extra = size - upload.counted_bytes
            if extra > 0:
                if self.bytes_in_flight + extra > self.limits.budget_bytes:
                    return False
                upload.counted_bytes = size
                self._add_bytes(extra)
            upload.received = size
            return True

    def discarded(self, upload: Upload, size: int) -> None:
        """`size` bytes were read and thrown away: progress for the rate, nothing reserved."""
        with self._lock:
            upload.received = size

    def body_complete(self, upload: Upload) -> None:
        with self._lock:
            upload.receiving = False

    def release(self, upload: Upload) -> None:
        with self._lock:
            if upload not in self._uploads:
                return
            self._uploads.discard(upload)
            self._add_bytes(-upload.counted_bytes)
            upload.counted_bytes = 0
            if upload.holds_slot and upload.device_id is not None:
                self._per_device[upload.device_id] -= 1
                if self._per_device[upload.device_id] <= 0:
                    del self._per_device[upload.device_id]

    def _add_bytes(self, delta: int) -> None:
        self.bytes_in_flight += delta
        self.peak_bytes_in_flight = max(self.peak_bytes_in_flight, self.bytes_in_flight)

    # -- observation (tests, operations) ---------------------------------------------------
    def uploads(self) -> int:
        with self._lock:
            return len(self._uploads)

    def received_total(self) -> int:
        """Bytes received so far by the bodies being received (what a test waits for)."""
        with self._lock:
            return sum(upload.received for upload in self._uploads)

    def reset_peak(self) -> None:
        with self._lock:
            self.peak_bytes_in_flight = self.bytes_in_flight

    # -- receive rate ----------------------------------------------------------------------
    def check_rates(self) -> int:
        """Cut every body that is behind the minimum rate: by `grace + n / rate` seconds after
        its start, n bytes must have arrived. Returns how many were cut."""
        now = self.clock()
        rate, grace = self.limits.min_receive_rate_bps, self.limits.receive_grace_s
        if rate <= 0:
            return 0
        late = []
        with self._lock:
            for upload in self._uploads:
                if upload.receiving and not upload.cut.done() and \
                        upload.received < rate * (now - upload.started - grace):
                    late.append(upload)
            self.slow_senders_cut += len(late)
        for upload in late:
            upload.loop.call_soon_threadsafe(_cut, upload.cut)
        return len(late)

    def start_ticker(self) -> None:
        """Check rates every `rate_check_interval_s` on the running loop (once per loop)."""
        loop = asyncio.get_running_loop()
        if self.rate_check_interval_s is None or loop in self._ticking:
            return
        self._ticking.add(loop)
        loop.create_task(self._tick(self.rate_check_interval_s))

    async def _tick(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.check_rates()


def _cut(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


PreAuth = Callable[[Scope], Awaitable[str]]  # the caller's device id, or raises Refused
IsSigned = Callable[[Scope], bool]


@dataclass(frozen=True)
class OperatorUploads:
    """Routes that take a large body from a logged-in operator (the dashboard's trust
    publishing). `operator` names the session's operator from the headers alone (cookie), or
    None: without a session such a route gets the small limit like any other."""

    routes: tuple[tuple[str, str], ...]  # (method, path)
    max_bytes: int
    operator: Callable[[Scope], Awaitable[str | None]]

    def matches(self, scope: Scope) -> bool:
        return (scope.get("method"), scope.get("path")) in self.routes


class AdmissionMiddleware:
    """Authenticates the headers of signed routes before reading any body (401 at once),
    refuses oversized bodies (413), a busy device or a full budget (503 + Retry-After) and
    senders slower than the minimum rate (408), then hands the buffered body to the app."""

    def __init__(self, app: App, guard: BodyGuard, is_signed: IsSigned,
                 preauth: PreAuth, operator_uploads: OperatorUploads | None = None) -> None:
        self.app, self.guard, self.is_signed, self.preauth = app, guard, is_signed, preauth
        self.operator_uploads = operator_uploads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.guard.start_ticker()
        limits = self.guard.limits
        device_id: str | None = None
        signed = self.is_signed(scope)
        if signed:
            try:
                device_id = await self.preauth(scope)
            except Refused as refused:
                await _early_answer(refused.response, scope, receive, send)
                return
        limit = limits.max_body_bytes if signed else limits.small_body_bytes
        uploads = self.operator_uploads
        if not signed and uploads is not None and uploads.matches(scope):
            operator = await uploads.operator(scope)
            if operator is not None:  # one upload slot table with the devices, keyed apart
                device_id, limit = f"operator {operator}", uploads.max_bytes
        declared = _declared_length(scope)
        if declared == -1:
            await _early_answer(refusal(400, "BAD_CONTENT_LENGTH",
                                        "Content-Length is not a number"), scope, receive, send)
            return
        oversize = declared is not None and declared > limit
        upload = self.guard.admit(device_id, 0 if oversize or declared is None else declared)
        if isinstance(upload, str):
            detail = ("too many uploads in flight for this device" if upload == "DEVICE_BUSY"
                      else "the server is receiving too much; retry later")
            await _early_answer(refusal(503, upload, detail,
                                        {"Retry-After": str(RETRY_AFTER_S)}),
                                scope, receive, send)
            return
        try:
            if oversize:
                await self._too_large(upload, device_id, limit, scope, receive, send)
                return
            body = await self._read_body(upload, device_id, limit, scope, receive, send)
            if body is None:
                return
            self.guard.body_complete(upload)
            delivered = False

            async def replay() -> Message:
                nonlocal delivered
                if not delivered:
                    delivered = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()  # after the body: wait for the disconnect as usual

            await self.app(scope, replay, send)
        finally:
            self.guard.release(upload)

    async def _read_body(self, upload: Upload, device_id: str | None, limit: int, scope: Scope,
                         receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None once an answer was sent (or the client left)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await _next_message(upload, receive)
            if message is None:
                await _too_slow(scope, send)
                return None
            if message["type"] == "http.disconnect":
                return None  # the client went away; nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            more = bool(message.get("more_body", False))
            if size > limit:
                chunks.clear()  # nothing of it is kept while the rest is discarded
                await self._too_large(upload, device_id, limit, scope, receive, send,
                                      finished=not more)
                return None
            if not self.guard.grow(upload, size):
                await _early_answer(refusal(503, "SERVER_BUSY",
                                            "the server is receiving too much; retry later",
                                            {"Retry-After": str(RETRY_AFTER_S)}),
                                    scope, receive, send, finished=not more)
                return None
            chunks.append(chunk)
            if not more:
                return b"".join(chunks)

    async def _too_large(self, upload: Upload, device_id: str | None, limit: int, scope: Scope,
                         receive: Receive, send: Send, finished: bool = False) -> None:
        answer = refusal(413, "BODY_TOO_LARGE", f"body over {limit} bytes")
        if device_id is None or finished:
            await _early_answer(answer, scope, receive, send, finished=finished)
            return
        # Authenticated headers: read on (discarding) so the kiosk sees the 413, under the rate.
        drained, before = 0, upload.received
        while drained <= OVERSIZE_DRAIN_LIMIT_BYTES:
            message = await _next_message(upload, receive)
            if message is None:
                await _too_slow(scope, send)
                return
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            self.guard.discarded(upload, before + drained)
            if not message.get("more_body", False):
                break
        await answer(scope, _closed_receive, send)


def _declared_length(scope: Scope) -> int | None:
    """Content-Length as a number; None when absent (chunked), -1 when it is not a number."""
    for name, value in scope.get("headers") or []:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None


async def _next_message(upload: Upload, receive: Receive) -> Message | None:
    """The next ASGI message, or None when the rate guard cut this upload first."""
    if upload.cut.done():
        return None
    pending: asyncio.Future[Message] = asyncio.ensure_future(receive())
    waited: set[asyncio.Future[Message] | asyncio.Future[None]] = {pending, upload.cut}
    await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
    if pending.done():
        return pending.result()
    pending.cancel()
    return None


async def _too_slow(scope: Scope, send: Send) -> None:
    await refusal(408, "BODY_TOO_SLOW", "the body arrived slower than the minimum rate")(
        scope, _closed_receive, send)


async def _closed_receive() -> Message:
    return {"type": "http.disconnect"}


async def _early_answer(response: JSONResponse, scope: Scope, receive: Receive, send: Send,
                        finished: bool = False) -> None:
    """Answer without having read the body: a small body is discarded first, briefly (a client
    that sent it at once then reads the answer, not a reset); a larger one is not waited for
    at all. The connection closes."""
    declared = _declared_length(scope)
    if not finished and (declared is None or 0 <= declared <= EARLY_DRAIN_LIMIT_BYTES):
        try:
            await asyncio.wait_for(_drain(receive, EARLY_DRAIN_LIMIT_BYTES),
                                   EARLY_DRAIN_TIMEOUT_S)
        except asyncio.TimeoutError:
            pass
    await response(scope, _closed_receive, send)


async def _drain(receive: Receive, limit: int) -> None:
    drained = 0
    while drained <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
