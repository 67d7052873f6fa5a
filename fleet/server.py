"""The fleet HTTP API (FastAPI): registration, signed event ingest, trust data, time."""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, TypedDict, Unpack

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI, Path as PathParam, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from firmware.protocol import events as event_schema
from firmware.protocol.decoded import Decoded
from firmware.protocol.event_codec import Event
from firmware.protocol.freshness import FRESHNESS_HEADER
from firmware.protocol.timestamps import rfc3339, utc_now
from firmware.status.file import STATUS_HEADER
from firmware.status.file import parse_header as parse_status_header
from fleet import admission, models
from fleet.admission import AdmissionMiddleware, BodyGuard, Limits, Refused, refusal
from fleet.dashboard import mount_dashboard, operator_uploads
from fleet.dashboard.ratelimit import LoginLimiter
from fleet.dashboard.schema import note_trust_fetch
from fleet.ingest import MAX_BATCH_EVENTS, ingest
from fleet.requestauth import (DEFAULT_SKEW_WINDOW_S, AuthError, Caller, authenticate,
                               check_device, check_request)
from fleet.runner import ServerHandle, run_in_thread as _run_in_thread
from fleet.storage import Store
from fleet.trust import freshness_header, load_signing_key

log = logging.getLogger("healthgate.fleet")

DEFAULT_MAX_BODY_BYTES = admission.DEFAULT_MAX_BODY_BYTES
MAX_SEQ = 2**53  # JSON-safe integers only; also far inside BIGINT
API_VERSION = "1.0.0"
BASIC_ERRORS: dict[int | str, dict[str, Decoded]] = {
    status: {"model": models.ErrorResponse, "description": text} for status, text in {
        408: "BODY_TOO_SLOW: the body arrived slower than the minimum receive rate",
        413: "Body or batch too large (BODY_TOO_LARGE, BATCH_TOO_LARGE)",
        422: "Malformed request (MALFORMED_JSON, MALFORMED_REQUEST, MALFORMED_EVENT, ...)",
        503: "Busy, retry after Retry-After seconds: STORE_UNAVAILABLE (database down or busy), "
             "SERVER_BUSY (the budget for bodies in flight is used up), DEVICE_BUSY (too many "
             "uploads in flight for this device)",
    }.items()}
ERROR_RESPONSES: dict[int | str, dict[str, Decoded]] = {
    **BASIC_ERRORS, 401: {"model": models.ErrorResponse,
                          "description": "Request not authenticated: AUTH_FAILED (unknown "
                                         "device, bad signature, replayed nonce: one answer), "
                                         "or AUTH_MISSING, AUTH_BAD_TIMESTAMP, "
                                         "AUTH_STALE_TIMESTAMP, AUTH_BAD_NONCE"}}
STORE_UNAVAILABLE_DETAIL = "the database is unavailable or busy; retry later"
STORE_RETRY_AFTER_S = 5
# Store look-ups of the header checks at once: a flood of forged headers then queues in the
# event loop (cheap) instead of taking every worker thread and pooled connection from /healthz
# and the uploads that did authenticate.
PREAUTH_STORE_CONCURRENCY = 2
PRECHECKED = "healthgate.prechecked"  # scope key: the header checks' SignedHeaders
SIGNED_ROUTES = (("POST", "/v1/events"), ("GET", "/v1/trust/"))  # (method, path or prefix/)


class ApiError(Exception):
    """An answer with a status, a stable code and a human detail."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def error_response(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def create_app(db_url: str, signing_key_path: Path | str | None = None, *,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               skew_window_s: int = DEFAULT_SKEW_WINDOW_S,
               clock: Callable[[], datetime] = utc_now,
               body_budget_bytes: int = admission.DEFAULT_BODY_BUDGET_BYTES,
               max_uploads_per_device: int = admission.DEFAULT_MAX_UPLOADS_PER_DEVICE,
               min_receive_rate_bps: float = admission.DEFAULT_MIN_RECEIVE_RATE_BPS,
               receive_grace_s: float = admission.DEFAULT_RECEIVE_GRACE_S,
               body_clock: Callable[[], float] = time.monotonic,
               rate_check_interval_s: float | None = admission.RATE_CHECK_INTERVAL_S,
               login_limiter: LoginLimiter | None = None,
               max_operator_upload_bytes: int = admission.DEFAULT_MAX_OPERATOR_UPLOAD_BYTES,
               ) -> FastAPI:
    """Build the app over a store at `db_url`. With `signing_key_path`, `app.state.signing_key`
    is set so in-process callers (demo, tests) can publish trust data. The body limits are in
    `app.state.body_guard` (`body_clock` and `rate_check_interval_s=None` let a test drive the
    receive-rate rule by hand: advance the clock, call `body_guard.check_rates()`).
    `login_limiter` replaces the dashboard's login rate limiter (a test's, on its own clock).
    `max_operator_upload_bytes` bounds a trust file an operator publishes on the dashboard."""
    store = Store(db_url)
    app = FastAPI(title="healthgate fleet API", version=API_VERSION,
                  description="Device registration, signed event ingest and signed trust data "
                              "for healthgate kiosks. See docs/fleet-api.md.")
    app.state.store = store
    app.state.signing_key = load_signing_key(Path(signing_key_path)) if signing_key_path else None
    guard = BodyGuard(Limits(max_body_bytes=max_body_bytes, budget_bytes=body_budget_bytes,
                             max_uploads_per_device=max_uploads_per_device,
                             min_receive_rate_bps=min_receive_rate_bps,
                             receive_grace_s=receive_grace_s),
                      clock=body_clock, rate_check_interval_s=rate_check_interval_s)
    app.state.body_guard = guard

    store_checks = asyncio.Semaphore(PREAUTH_STORE_CONCURRENCY)

    async def preauth(scope: Scope) -> str:
        """The signed headers, checked before any body is read (AdmissionMiddleware)."""
        try:
            request = check_request(Headers(scope=scope), clock(), skew_window_s)
            async with store_checks:
                signed = await run_in_threadpool(check_device, store, request, clock())
        except AuthError as error:
            raise Refused(_auth_refusal(error)) from None
        except Exception as error:
            if is_store_unavailable(error):
                raise Refused(refusal(503, "STORE_UNAVAILABLE", STORE_UNAVAILABLE_DETAIL,
                                      {"Retry-After": str(STORE_RETRY_AFTER_S)})) from None
            raise
        scope[PRECHECKED] = signed  # the endpoint does not ask the store again
        return signed.device_id

    app.add_middleware(AdmissionMiddleware, guard=guard, is_signed=_is_signed, preauth=preauth,
                       operator_uploads=operator_uploads(store, max_operator_upload_bytes))
    mount_dashboard(app, store, login_limiter)  # operator pages under /dashboard, /metrics (fleet/dashboard/)
    app.router.on_shutdown.append(store.close)

    @app.exception_handler(Refused)  # a 401 raised inside an endpoint: see _auth_refusal
    async def _refused(_: Request, error: Refused) -> Response:
        return error.response

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return error_response(422, "MALFORMED_REQUEST", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400:  # FastAPI's "error parsing the body": same as /v1/events
            return error_response(422, "MALFORMED_JSON", "body is not valid UTF-8 JSON")
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(error.status_code, "HTTP_ERROR")
        response = error_response(error.status_code, code, str(error.detail))
        response.headers.update(error.headers or {})  # e.g. Allow on 405 (RFC 9110)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        if is_store_unavailable(error):
            log.error("store unavailable: %s", type(error).__name__)
            response = error_response(503, "STORE_UNAVAILABLE", STORE_UNAVAILABLE_DETAIL)
            response.headers["Retry-After"] = str(STORE_RETRY_AFTER_S)
            return response
        log.exception("unexpected error")
        return error_response(500, "INTERNAL_ERROR", "unexpected server error")

    async def _authenticated(request: Request, body: bytes) -> Caller:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        try:
            # burning the nonce also notes the device as seen, with what the kiosk says of
            # itself (`healthgate-fleet devices list`): one write transaction per request
            return await run_in_threadpool(
                authenticate, store, request.headers, request.method, path, body, clock(),
                skew_window_s, parse_status_header(request.headers.get(STATUS_HEADER)),
                request.scope.get(PRECHECKED))
        except AuthError as error:
            raise Refused(_auth_refusal(error)) from None

    @app.get("/healthz", response_model=models.HealthResponse, tags=["operations"])
    def healthz() -> dict[str, Decoded]:
        """Liveness and schema version."""
        return {"status": "ok", "schema_version": store.schema_version(),
                "database": store.dialect}

    @app.get("/v1/time", response_model=models.TimeResponse, tags=["time"])
    def get_time() -> dict[str, str]:
        """Server time; the response's Date header carries it too."""
        return {"now": rfc3339(clock())}

    @app.post("/v1/devices/register", status_code=201, response_model=models.RegisterResponse,
              tags=["devices"], responses={**BASIC_ERRORS,
                                           403: {"model": models.ErrorResponse,
                                                 "description": "TOKEN_INVALID"},
                                           409: {"model": models.ErrorResponse,
                                                 "description": "DEVICE_KEY_CONFLICT"}})
    def register(request: models.RegisterRequest) -> dict[str, str]:
        """Register a device's Ed25519 public key with a one-time enrolment token."""
        try:
            Ed25519PublicKey.from_public_bytes(base64.b64decode(request.public_key,
                                                                validate=True))
        except (binascii.Error, ValueError):
            raise ApiError(422, "BAD_PUBLIC_KEY", "public_key is not a raw Ed25519 key") from None
        outcome = store.register(request.token, request.device_id, request.public_key, clock())
        if outcome == "bad_token":
            raise ApiError(403, "TOKEN_INVALID", "enrolment token unknown, used or expired")
        if outcome == "conflict":
            raise ApiError(409, "DEVICE_KEY_CONFLICT",
                           "device id already registered with another key")
        log.info("device registered (%s)", outcome)
        return {"device_id": request.device_id}

    @app.post("/v1/events", response_model=models.IngestResponse, tags=["events"],
              responses=ERROR_RESPONSES,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/EventBatch"}}}},
                  "parameters": _auth_parameters()})
    async def post_events(request: Request) -> dict[str, Decoded]:
        """Ingest a batch of signed events (any order). Signed request headers required."""
        body = await request.body()
        caller = await _authenticated(request, body)
        events = parse_batch(body)
        result = await run_in_threadpool(ingest, store, caller.device_id, caller.public_key,
                                         events)
        if result.rejected:
            log.warning("device %s: %d event(s) rejected: %s", caller.device_id,
                        len(result.rejected), sorted({r["reason"] for r in result.rejected}))
        return result.as_json()

    @app.get("/v1/trust/{name}", tags=["trust"],
             responses={**ERROR_RESPONSES,
                        200: {"model": models.TrustEnvelope, "description": "Signed envelope"},
                        304: {"description": "Not modified (If-None-Match matched the ETag)"},
                        404: {"model": models.ErrorResponse,
                              "description": "TRUST_NOT_PUBLISHED"}},
             openapi_extra={"parameters": _auth_parameters()})
    async def get_trust(request: Request,
                        name: str = PathParam(pattern=models.TRUST_NAME_API_PATTERN)) -> Response:
        """A signed trust-data envelope, served with an ETag; signed request headers required."""
        caller = await _authenticated(request, b"")
        item = await run_in_threadpool(store.trust, name)
        if item is None:
            raise ApiError(404, "TRUST_NOT_PUBLISHED", f"nothing published under {name}")
        # the dashboard's "trust fetched" (a 200 or a 304 below; never fails the answer)
        await run_in_threadpool(note_trust_fetch, store, caller.device_id, rfc3339(utc_now()))
        headers = {"ETag": item.etag, "Cache-Control": "no-cache"}
        if app.state.signing_key is not None:  # kiosks age their copy by this, not by a 304
            headers[FRESHNESS_HEADER] = freshness_header(app.state.signing_key, item, clock())
        wanted = _etags(request.headers.get("if-none-match", ""))
        if item.etag in wanted or "*" in wanted:
            return Response(status_code=304, headers=headers)
        return Response(item.envelope, media_type="application/json", headers=headers)

    generate_openapi = app.openapi

    def openapi() -> dict[str, Decoded]:
        """The generated document plus the event batch schema (parsed by hand, see above)."""
        if app.openapi_schema is None:
            schema = generate_openapi()
            batch = models.EventBatch.model_json_schema(
                ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(batch.pop("$defs", {}))
            components["EventBatch"] = batch
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _auth_refusal(error: AuthError) -> JSONResponse:
    """One 401 for the middleware and the endpoints alike, so the answer (and whether the
    connection closes) never tells which check refused; the precise reason is logged only."""
    log.warning("request refused: %s (device %.140r)", error.reason, error.device_id)
    return refusal(401, error.code, error.detail)


def _is_signed(scope: Scope) -> bool:
    path = scope.get("path", "")
    return any(scope.get("method") == method and
               (path.startswith(route) if route.endswith("/") else path == route)
               for method, route in SIGNED_ROUTES)


def _auth_parameters() -> list[dict[str, Decoded]]:
    described = {"X-Device-Id": "Registered device id",
                 "X-Timestamp": "RFC 3339 UTC time of signing",
                 "X-Nonce": "Random, never reused (8-128 of [A-Za-z0-9_-])",
                 "X-Signature": "Base64 Ed25519 over METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\n"
                                "hex(sha256(body))"}
    return [{"name": name, "in": "header", "required": True, "description": text,
             "schema": {"type": "string"}} for name, text in described.items()]


def is_store_unavailable(error: Exception) -> bool:
    """Database down, locked past its timeout, or no pooled connection free: worth a retry."""
    if isinstance(error, (TimeoutError, sqlite3.OperationalError)):
        return True
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(error, (psycopg.OperationalError, psycopg.errors.QueryCanceled,
                              psycopg.errors.LockNotAvailable))


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def parse_batch(body: bytes) -> list[Event]:
    """Parse {"events": [...]} into Events; ApiError 422/413 naming the first problem."""
    try:
        # NaN/Infinity/1e400 inside an event body refuse that event (ingest, with an incident);
        # anywhere else the whole body (event_schema.loads_batch)
        payload = event_schema.loads_batch(body)
    except (ValueError, RecursionError):
        raise ApiError(422, "MALFORMED_JSON", "body is not valid UTF-8 JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        raise ApiError(422, "MALFORMED_REQUEST", 'body must be {"events": [...]}')
    if len(payload["events"]) > MAX_BATCH_EVENTS:
        raise ApiError(413, "BATCH_TOO_LARGE", f"at most {MAX_BATCH_EVENTS} events per batch")
    events = []
    for index, item in enumerate(payload["events"]):
        if not isinstance(item, dict):
            raise ApiError(422, "MALFORMED_EVENT", f"events[{index}] is not an object")
        try:
            event = Event.from_wire(item)
            event_schema.check_encodable(event.to_wire())  # lone surrogates etc. fail here
        except (ValueError, UnicodeError, RecursionError) as error:
            raise ApiError(422, "MALFORMED_EVENT", f"events[{index}]: {error}") from None
        if not 0 <= event.seq < MAX_SEQ:
            raise ApiError(422, "MALFORMED_EVENT", f"events[{index}]: seq out of range")
        if any("\x00" in value for value in (event.device_id, event.ts, event.kind,
                                              event.prev_hash, event.hash, event.sig)):
            raise ApiError(422, "MALFORMED_EVENT", f"events[{index}]: NUL character")
        events.append(event)
    return events


ENV_DB = "HEALTHGATE_FLEET_DB"
ENV_MAX_BODY = "HEALTHGATE_FLEET_MAX_BODY_BYTES"
ENV_SKEW_WINDOW = "HEALTHGATE_FLEET_SKEW_WINDOW_S"
ENV_KEY = "HEALTHGATE_FLEET_SERVE_KEY"  # signs freshness statements when set (serve --workers)
ENV_BODY_BUDGET = "HEALTHGATE_FLEET_BODY_BUDGET_BYTES"
ENV_UPLOADS_PER_DEVICE = "HEALTHGATE_FLEET_MAX_UPLOADS_PER_DEVICE"
ENV_MIN_RATE = "HEALTHGATE_FLEET_MIN_RECEIVE_RATE"
ENV_GRACE = "HEALTHGATE_FLEET_RECEIVE_GRACE_S"


def app_from_environment() -> FastAPI:
    """App factory for uvicorn worker processes (`serve --workers N`), configured by the
    environment the CLI sets: each worker opens its own connection pool on the same store."""
    env = os.environ.get
    return create_app(
        os.environ[ENV_DB], env(ENV_KEY) or None,
        max_body_bytes=int(env(ENV_MAX_BODY, DEFAULT_MAX_BODY_BYTES)),
        skew_window_s=int(env(ENV_SKEW_WINDOW, DEFAULT_SKEW_WINDOW_S)),
        body_budget_bytes=int(env(ENV_BODY_BUDGET, admission.DEFAULT_BODY_BUDGET_BYTES)),
        max_uploads_per_device=int(env(ENV_UPLOADS_PER_DEVICE,
                                       admission.DEFAULT_MAX_UPLOADS_PER_DEVICE)),
        min_receive_rate_bps=float(env(ENV_MIN_RATE, admission.DEFAULT_MIN_RECEIVE_RATE_BPS)),
        receive_grace_s=float(env(ENV_GRACE, admission.DEFAULT_RECEIVE_GRACE_S)))


def openapi_document() -> str:
    """The API's OpenAPI document as stable, pretty JSON (docs/fleet-openapi.json is this)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="healthgate-openapi-") as folder:
        app = create_app(f"sqlite:///{folder}/schema-only.db")
        try:
            document = app.openapi()
        finally:
            app.state.store.close()
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


class AppOptions(TypedDict, total=False):
    """create_app's keyword options, passed on unchanged."""

    max_body_bytes: int
    skew_window_s: int
    clock: Callable[[], datetime]
    body_budget_bytes: int
    max_uploads_per_device: int
    min_receive_rate_bps: float
    receive_grace_s: float
    body_clock: Callable[[], float]
    rate_check_interval_s: float | None
    login_limiter: LoginLimiter | None
    max_operator_upload_bytes: int


def run_in_thread(db_url: str, host: str = "127.0.0.1", port: int = 0,
                  signing_key_path: Path | str | None = None,
                  **app_options: Unpack[AppOptions]) -> ServerHandle:
    """Serve a fresh app with uvicorn in a background thread; returns once it accepts
    connections. `.url` is the base URL (actual port when port=0), `.stop()` shuts down."""
    app = create_app(db_url, signing_key_path, **app_options)
    return _run_in_thread(app, host, port)
