"""Dashboard pages: login, device list, device page, trust publishing history, tokens,
provisioning codes."""
from __future__ import annotations

import secrets
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from firmware.protocol import finite_json
from firmware.protocol.decoded import Decoded
from firmware.protocol.timestamps import utc_now
from fleet.dashboard import queries
from fleet.dashboard.auth import COOKIE, SESSION_TTL_S, Session, SessionSigner, check_password, \
    operator_exists
from fleet.provisioncodes import DEFAULT_TTL_MIN, MAX_TTL_MIN, create_code, fleet_url_problem, \
    qr_svg
from fleet.dashboard.ratelimit import LoginLimiter
from fleet.tokens import new_token
from fleet.trust import KNOWN_TRUST_NAMES, publish

if TYPE_CHECKING:
    from fleet.storage import Store, TrustItem

BASE = "/dashboard"
MAX_FORM_BYTES = 8 * 1024  # a login or token form is tiny
MAX_TOKEN_TTL_H = 24 * 30
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
STATIC = {"dashboard.css": "text/css; charset=utf-8",
          "dashboard.js": "text/javascript; charset=utf-8"}


def _environment() -> Environment:
    # autoescape on for every template: a device name or reason is text, never markup
    return Environment(loader=PackageLoader("fleet.dashboard", "templates"),
                       autoescape=select_autoescape(default=True, default_for_string=True))


def dashboard_router(store: Store, login_limiter: LoginLimiter | None = None) -> APIRouter:
    router = APIRouter(prefix=BASE, include_in_schema=False)
    env = _environment()
    signer = SessionSigner(store)
    limiter = login_limiter or LoginLimiter()

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:  # Any: Jinja's context
        html = env.get_template(name).render(base=BASE, **context)
        return HTMLResponse(html, status_code=status, headers=_headers())

    async def session_of(request: Request) -> Session | None:
        session = signer.verify(request.cookies.get(COOKIE))
        if session is None:
            return None
        # deleting an operator ends their sessions at once
        return session if await run_in_threadpool(operator_exists, store, session.operator) else None

    async def form(request: Request) -> dict[str, str]:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return {}
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
        return {k: v[0] for k, v in fields.items()}

    def to_login() -> RedirectResponse:
        return RedirectResponse(f"{BASE}/login", status_code=303, headers=_headers())

    def chrome(session: Session) -> dict[str, Decoded]:
        return {"operator": session.operator, "csrf": signer.csrf(session)}

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC:
            return Response("not found", status_code=404, media_type="text/plain")
        from importlib import resources
        data = resources.files("fleet.dashboard").joinpath("static", name).read_bytes()
        return Response(data, media_type=STATIC[name], headers=_headers())

    @router.get("/login")
    async def login_form(request: Request) -> Response:
        return page("login.html", error=None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        fields = await form(request)
        name, password = fields.get("name", ""), fields.get("password", "")
        # the address the connection comes from: a forwarded-for header is the client's to forge
        address = request.client.host if request.client else ""
        wait_s = limiter.begin(name, address)
        if wait_s:  # refused before the password is checked: guessing costs no argon2 time
            refused = page("login.html", status=429,
                           error=f"Too many failed logins. Try again in {wait_s} s.")
            refused.headers["Retry-After"] = str(wait_s)
            return refused
        if not await run_in_threadpool(check_password, store, name, password):
            return page("login.html", status=401, error="Wrong name or password.")
        limiter.succeeded(name, address)
        response = RedirectResponse(f"{BASE}/", status_code=303, headers=_headers())
        response.set_cookie(COOKIE, signer.issue(name), max_age=SESSION_TTL_S, httponly=True,
                            samesite="strict", path=BASE, secure=request.url.scheme == "https")
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        response = to_login()
        response.delete_cookie(COOKIE, path=BASE)
        return response

    @router.get("/")
    async def devices(request: Request, page_no: int = 0) -> Response:
        session = await session_of(request)
        if session is None:
            return to_login()
        rows, total = await run_in_threadpool(queries.device_page, store, page_no)
        pages = max(1, -(-total // queries.PAGE_SIZE))
        return page("devices.html", devices=rows, total=total, page_no=page_no, pages=pages,
                    flagged=queries.FLAGGED_REASONS, **chrome(session))

    @router.get("/devices/{device_id:path}")
    async def device(request: Request, device_id: str) -> Response:
        session = await session_of(request)
        if session is None:
            return to_login()  # before the 404: no probing for device ids without login
        detail = await run_in_threadpool(queries.device_detail, store, device_id)
        if detail is None:
            return page("404.html", status=404, what=device_id, **chrome(session))
        peak = max([g + d for _, g, d in detail.hours] or [1])
        return page("device.html", d=detail, peak=peak, **chrome(session))

    @router.get("/trust")
    async def trust(request: Request) -> Response:
        session = await session_of(request)
        if session is None:
            return to_login()
        return await trust_page(session)

    async def trust_page(session: Session, status: int = 200, published: TrustItem | None = None,
                         error: str | None = None, name: str = "") -> Response:
        history = await run_in_threadpool(queries.trust_history, store)
        return page("trust.html", status=status, history=history, names=KNOWN_TRUST_NAMES,
                    published=published, error=error, chosen=name, **chrome(session))

    @router.post("/trust")
    async def publish_trust(request: Request) -> Response:
        """Sign and publish an uploaded JSON file as the next version of a trust item. The
        body was admitted for a logged-in operator only (fleet/dashboard operator_uploads)."""
        session = await session_of(request)
        if session is None:
            return to_login()
        try:
            fields = await request.form(max_files=1, max_fields=3)
        except Exception:  # a malformed multipart body: starlette's MultiPartException et al.
            return await trust_page(session, 400, error="The upload could not be read.")
        name = str(fields.get("name", ""))
        upload = fields.get("content")
        if not secrets.compare_digest(str(fields.get("csrf", "")), signer.csrf(session)):
            return await trust_page(session, 403, error="The form expired; reload the page.")
        if name not in KNOWN_TRUST_NAMES:
            return await trust_page(session, 422, error="Choose one of the names kiosks fetch.")
        if isinstance(upload, str) or upload is None:
            return await trust_page(session, 422, name=name, error="Choose a JSON file.")
        try:
            content = finite_json.loads(await upload.read())
        except (ValueError, UnicodeDecodeError) as problem:
            return await trust_page(session, 422, name=name,
                                    error=f"{upload.filename or 'The file'} is not JSON a kiosk "
                                          f"accepts: {str(problem)[:200]}")
        key = request.app.state.signing_key
        if key is None:
            return await trust_page(session, 503, name=name,
                                    error="This server runs without the fleet signing key "
                                          "(serve --key), so it cannot sign trust data.")
        try:
            item = await run_in_threadpool(publish, store, key, name, content, session.operator)
        except ValueError as problem:  # content canonical JSON cannot carry
            return await trust_page(session, 422, name=name, error=str(problem)[:200])
        return await trust_page(session, 201, published=item, name=name)

    @router.get("/tokens")
    async def tokens(request: Request) -> Response:
        session = await session_of(request)
        if session is None:
            return to_login()
        rows = await run_in_threadpool(queries.tokens, store)
        return page("tokens.html", tokens=rows, created=None, error=None, **chrome(session))

    @router.post("/tokens")
    async def create_token(request: Request) -> Response:
        session = await session_of(request)
        if session is None:
            return to_login()
        fields = await form(request)
        if not secrets.compare_digest(fields.get("csrf", ""), signer.csrf(session)):
            return page("tokens.html", status=403, tokens=[], created=None,
                        error="The form expired; reload the page.", **chrome(session))
        try:
            ttl_h = float(fields.get("ttl_hours", "24"))
        except ValueError:
            ttl_h = -1.0
        if not 0 < ttl_h <= MAX_TOKEN_TTL_H:
            rows = await run_in_threadpool(queries.tokens, store)
            return page("tokens.html", status=422, tokens=rows, created=None,
                        error=f"Validity must be more than 0 and at most {MAX_TOKEN_TTL_H} hours.",
                        **chrome(session))
        token = new_token()
        await run_in_threadpool(store.add_token, token, utc_now() + timedelta(hours=ttl_h))
        rows = await run_in_threadpool(queries.tokens, store)
        return page("tokens.html", status=201, tokens=rows, created=token, error=None,
                    **chrome(session))

    @router.get("/provisioning")
    async def provisioning(request: Request) -> Response:
        session = await session_of(request)
        if session is None:
            return to_login()
        return page("provisioning.html", fleet_url=_own_url(request), code=None, error=None,
                    ttl=DEFAULT_TTL_MIN, **chrome(session))

    @router.post("/provisioning")
    async def create_provisioning_code(request: Request) -> Response:
        session = await session_of(request)
        if session is None:
            return to_login()
        fields = await form(request)
        fleet_url = fields.get("fleet_url", "").strip() or _own_url(request)

        def refuse(status: int, error: str) -> Response:
            return page("provisioning.html", status=status, fleet_url=fleet_url, code=None,
                        error=error, ttl=DEFAULT_TTL_MIN, **chrome(session))

        if not secrets.compare_digest(fields.get("csrf", ""), signer.csrf(session)):
            return refuse(403, "The form expired; reload the page.")
        key = request.app.state.signing_key
        if key is None:
            return refuse(503, "This server runs without the fleet signing key (serve --key), "
                               "so it cannot sign provisioning codes.")
        problem = fleet_url_problem(fleet_url)
        try:
            ttl_min = float(fields.get("ttl_minutes", str(DEFAULT_TTL_MIN)))
        except ValueError:
            ttl_min = -1.0
        if problem is None and not 0 < ttl_min <= MAX_TTL_MIN:
            problem = f"Validity must be more than 0 and at most {MAX_TTL_MIN:.0f} minutes."
        if problem is not None:
            return refuse(422, problem)
        created = await run_in_threadpool(create_code, store, key, fleet_url, ttl_min,
                                          utc_now())
        return page("provisioning.html", status=201, fleet_url=fleet_url, code=created,
                    svg=Markup(qr_svg(created.text)), error=None, ttl=ttl_min,
                    **chrome(session))

    return router


def _own_url(request: Request) -> str:
    """This server's address as the operator's browser reached it: the default fleet URL."""
    return str(request.base_url).rstrip("/")


def _headers() -> dict[str, str]:
    return {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
