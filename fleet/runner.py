"""Run an ASGI app under uvicorn in a background thread (demo, tests, benchmarks)."""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import uvicorn

from firmware.protocol.decoded import Decoded

if TYPE_CHECKING:
    from fastapi import FastAPI

    from fleet.storage import Store, TrustItem

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


@dataclass
class ServerHandle:
    """A running server: `.url` to reach it, `.app` (its `state.store` is the live store)."""

    url: str
    app: FastAPI
    port: int
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def store(self) -> Store:
        store: Store = self.app.state.store
        return store

    def publish(self, name: str, content: Decoded) -> TrustItem:
        """Sign and publish a trust item with the app's signing key (needs signing_key_path)."""
        from fleet.trust import publish

        if self.app.state.signing_key is None:
            raise RuntimeError("server started without signing_key_path")
        return publish(self.store, self.app.state.signing_key, name, content)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(STOP_TIMEOUT_S)

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def run_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> ServerHandle:
    """Bind first (so port 0 yields the real port before start), then serve in a thread."""
    # proto IPPROTO_TCP, as uvicorn's own bind_socket: asyncio sets TCP_NODELAY only on
    # connections whose socket says TCP, and without it every answer on a kept-alive
    # connection waited ~40 ms for a delayed ACK (Nagle)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"fleet-server:{bound_port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("fleet server did not start")
        time.sleep(0.01)
    shown_host = f"[{host}]" if ":" in host else host
    return ServerHandle(f"http://{shown_host}:{bound_port}", app, bound_port, server, thread)
