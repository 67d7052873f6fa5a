"""The status page's HTTP server: stdlib http.server in a daemon thread; GET only, read-only."""
from __future__ import annotations

import hmac
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from firmware.status.collect import StatusCollector
from firmware.status.metrics import metrics_text

log = logging.getLogger(__name__)

# The page loads no third-party or inline code: even a string that slipped past escaping
# could not run a script.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
STATIC = {"/status.js": ("status.js", "text/javascript; charset=utf-8"),
          "/status.css": ("status.css", "text/css; charset=utf-8")}
PAGE = ("status.html", "text/html; charset=utf-8")
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TOKEN_PARAM = "token"
MAX_TOKEN_CHARS = 256  # a longer offer is refused unread (compare_digest runs on what fits)


class StatusServer:
    """Serves `/` (the page), `/status.json`, `/metrics` and two static files.

    With a token configured, every data route needs it (`Authorization: Bearer <token>` or
    `?token=<token>`, which the page passes on to its own requests); the static script and
    style carry no data and are served to anyone.
    """

    def __init__(self, collector: StatusCollector, host: str, port: int,
                 token: str = "") -> None:
        self.collector = collector
        self.token = token
        handler = type("Handler", (_Handler,), {"status_server": self})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True  # a slow browser never holds up shutdown
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="status-page",
                                        kwargs={"poll_interval": 0.2}, daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    def start(self) -> None:
        self._thread.start()
        log.info("status page on %s", self.url)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5.0)

    def authorised(self, header: str | None, query: dict[str, list[str]]) -> bool:
        if not self.token:
            return True
        offered = ""
        if header and header.startswith("Bearer "):
            offered = header[len("Bearer "):].strip()
        elif query.get(TOKEN_PARAM):
            offered = query[TOKEN_PARAM][0]
        if not offered or len(offered) > MAX_TOKEN_CHARS:
            return False
        return hmac.compare_digest(offered.encode(), self.token.encode())


class _Handler(BaseHTTPRequestHandler):
    status_server: StatusServer
    server_version = "healthgate-status"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)

    def do_POST(self) -> None:  # noqa: N802
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only\n", "text/plain", {"Allow": "GET, HEAD"})

    do_PUT = do_DELETE = do_PATCH = do_POST

    def _serve(self, head: bool) -> None:
        parts = urlsplit(self.path)
        server = self.status_server
        if parts.path in STATIC:
            name, kind = STATIC[parts.path]
            self._send(HTTPStatus.OK, _asset(name), kind, head=head)
            return
        if parts.path not in ("/", "/status.json", "/metrics"):
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", head=head)
            return
        if not server.authorised(self.headers.get("Authorization"), parse_qs(parts.query)):
            self._send(HTTPStatus.UNAUTHORIZED, b"token required\n", "text/plain",
                       {"WWW-Authenticate": 'Bearer realm="healthgate kiosk"'}, head=head)
            return
        try:
            if parts.path == "/":
                self._send(HTTPStatus.OK, _asset(PAGE[0]), PAGE[1], head=head)
            elif parts.path == "/status.json":
                body = json.dumps(server.collector.current(), sort_keys=True).encode()
                self._send(HTTPStatus.OK, body, "application/json", head=head)
            else:
                self._send(HTTPStatus.OK, metrics_text(server.collector.current), METRICS_TYPE,
                           head=head)
        except Exception:  # a bug in the page must never reach the kiosk loop: log and answer
            log.exception("status page: %s failed", parts.path)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b"error\n", "text/plain", head=head)

    def _send(self, status: HTTPStatus, body: bytes, kind: str,
              headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")  # the token may be in the URL
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  # Any: the stdlib's signature
        log.debug("status page: " + format, *args)


def _asset(name: str) -> bytes:
    return resources.files("firmware.status").joinpath("static", name).read_bytes()


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:8080`) -> (host, port); raises ValueError with the reason."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError("expected host:port such as '127.0.0.1:8080'")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0..65535")
    return host, port
