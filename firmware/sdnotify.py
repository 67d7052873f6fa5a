"""systemd notifications (READY, WATCHDOG) over $NOTIFY_SOCKET; silent when not under systemd."""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable


def notify(message: str, socket_path: str | None = None) -> bool:
    """Send one sd_notify datagram; False when there is no service manager to tell."""
    path = socket_path or os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):  # abstract namespace socket
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(message.encode(), path)
        except OSError:
            return False
    return True


def watchdog_pinger(min_interval_s: float = 1.0) -> Callable[[], None] | None:
    """A callable for the kiosk loop that pets systemd's watchdog at most once per interval:
    if the loop hangs, the pings stop and systemd restarts the service (WatchdogSec=)."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return None
    last = [0.0]

    def ping() -> None:
        now = time.monotonic()
        if now - last[0] >= min_interval_s:
            last[0] = now
            notify("WATCHDOG=1")

    return ping
