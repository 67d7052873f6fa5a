"""systemd notifications reach a real datagram socket; nothing happens outside systemd."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from firmware.sdnotify import notify, watchdog_pinger


def test_notify_and_watchdog_over_a_real_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(2.0)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert notify("READY=1")
        assert server.recv(64) == b"READY=1"
        ping = watchdog_pinger(min_interval_s=60)
        assert ping is not None
        ping()
        ping()  # rate-limited: only one datagram
        assert server.recv(64) == b"WATCHDOG=1"
        server.settimeout(0.1)
        with pytest.raises(socket.timeout):
            server.recv(64)


def test_outside_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
    assert watchdog_pinger() is None
    assert notify("READY=1", socket_path="/nonexistent/socket") is False
