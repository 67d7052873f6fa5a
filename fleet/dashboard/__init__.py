"""The fleet dashboard: operator pages, pre-aggregated device status, and /metrics."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import Scope

    from fleet.admission import OperatorUploads
    from fleet.dashboard.ratelimit import LoginLimiter
    from fleet.storage import Store


def mount_dashboard(app: FastAPI, store: Store, login_limiter: LoginLimiter | None = None) -> None:
    """Add the dashboard's routes (outside the API's OpenAPI document) and /metrics (the trust
    endpoint notes each device's trust fetches itself: schema.note_trust_fetch). Imported
    lazily: the storage layer imports this package's schema module, and must not pull in the
    web parts. `login_limiter` (a ratelimit.LoginLimiter) replaces the default one (tests pass
    one on a clock they move)."""
    from fleet.dashboard.metrics import metrics_router
    from fleet.dashboard.routes import dashboard_router

    app.include_router(dashboard_router(store, login_limiter))
    app.include_router(metrics_router(store))


def operator_uploads(store: Store, max_bytes: int) -> OperatorUploads:
    """The dashboard routes that take a large body (trust data publishing), for the admission
    middleware: the session cookie is checked before any of the body is read."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import HTTPConnection

    from fleet.admission import OperatorUploads
    from fleet.dashboard.auth import COOKIE, SessionSigner, operator_exists
    from fleet.dashboard.routes import BASE

    signer = SessionSigner(store)

    async def operator(scope: Scope) -> str | None:
        session = signer.verify(HTTPConnection(scope).cookies.get(COOKIE))
        if session is None or not await run_in_threadpool(operator_exists, store,
                                                          session.operator):
            return None
        return session.operator

    return OperatorUploads(((("POST", f"{BASE}/trust")),), max_bytes, operator)
