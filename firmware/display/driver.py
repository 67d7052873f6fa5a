"""Kiosk-facing display driver: show screens, heartbeat, latch errors, reconnect by itself."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from typing import Callable, TextIO

from firmware.display.codec import MsgType
from firmware.display.emulator import DisplayEmulator
from firmware.display.link import LinkConfig, LinkError, SerialLink
from firmware.display.screen import Screen

log = logging.getLogger(__name__)

EMULATOR_PORT = "emulator"


class DisplayError(Exception):
    """The display did not take a command. `reason`: closed, port_unavailable, link_dead,
    not_acknowledged, deadline, reconnect_wait or bad_status."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"display {reason}: {message}")
        self.reason = reason


class Display:
    """One LED display. Thread-safe; every call returns or raises within the link's ladder."""

    def __init__(self, link: SerialLink, emulator: DisplayEmulator | None = None,
                 on_close: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._link = link
        self._emulator = emulator
        self._on_close = on_close
        self._clock = clock
        self._lock = threading.RLock()
        self._closed = False
        self._answering = False  # the last exchange with the display succeeded
        self._wanted: Screen | None = None  # what the kiosk last asked to show
        self._shown_seq = 0  # seq of the SHOW of _wanted that the display acknowledged
        self._last_connect_attempt = float("-inf")
        self.last_error: DisplayError | None = None

    # -- what the kiosk calls -----------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """True while the port is open and the display answered the last exchange."""
        return not self._closed and self._link.is_open and self._answering

    @property
    def emulator(self) -> DisplayEmulator | None:
        """The in-process emulator when the port is "emulator", else None."""
        return self._emulator

    @property
    def config(self) -> LinkConfig:
        return self._link.config

    @property
    def link(self) -> SerialLink:
        return self._link

    def show(self, screen: Screen, timeout: float | None = None) -> None:
        """Show `screen`; returns once the display ACKed it, else raises DisplayError.

        `timeout` caps the whole escalation ladder (resends, probe); None means the ladder alone.
        A dead link is reopened first if reconnect_interval_s has passed since the last try.
        """
        with self._lock:
            self._check_open()
            self._wanted = screen  # remembered even if this fails: shown again on reconnect
            deadline = None if timeout is None else self._clock() + timeout
            if not self._link.is_open:
                self._reconnect(deadline, reshow=False)
            self._send_show(screen, deadline)

    def poll(self) -> None:
        """Heartbeat when due; reconnect a dead link. Raises DisplayError while the link is down."""
        with self._lock:
            self._check_open()
            if not self._link.is_open:
                self._reconnect(None, reshow=True)
                return
            due = self._clock() - self._link.last_exchange >= self._link.config.heartbeat_s
            if not (due or not self._answering):
                return
            try:
                status = self._link.ping()
            except LinkError as error:
                raise self._failed(error) from error
            self._answering = True
            if self._wanted is not None and (status.blank or status.shown_seq != self._shown_seq):
                # The controller restarted (brown-out) or fell back to its own screen after the
                # host went quiet: paint the screen the kiosk wants again.
                log.info("display shows something else (blank=%s); showing the current screen again",
                         status.blank)
                self._send_show(self._wanted, None)

    def set_brightness(self, level: int, timeout: float | None = None) -> None:
        """Backlight level 0..255."""
        if not 0 <= level <= 255:
            raise ValueError(f"brightness {level} is not in 0..255")
        with self._lock:
            self._check_open()
            self._request(MsgType.BRIGHTNESS, bytes([level]),
                          None if timeout is None else self._clock() + timeout)

    def connect(self) -> bool:
        """Try to open the port now (ignoring the reconnect interval); True when it answers."""
        with self._lock:
            self._check_open()
            self._last_connect_attempt = float("-inf")
            try:
                self._reconnect(None, reshow=True)
            except DisplayError:
                return False
            return True

    def close(self) -> None:
        """Close the port and stop the owned emulator. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._link.close()
            if self._emulator is not None:
                self._emulator.stop()
            if self._on_close is not None:
                self._on_close()

    def __enter__(self) -> Display:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _send_show(self, screen: Screen, deadline: float | None) -> None:
        self._shown_seq = 0  # unknown until acknowledged
        self._shown_seq = self._request(MsgType.SHOW, screen.encode(), deadline)

    def _request(self, msg_type: MsgType, payload: bytes, deadline: float | None) -> int:
        try:
            seq = self._link.request(msg_type, payload, deadline)
        except LinkError as error:
            raise self._failed(error) from error
        self._answering = True
        return seq

    def _reconnect(self, deadline: float | None, reshow: bool) -> None:
        now = self._clock()
        wait = self._last_connect_attempt + self._link.config.reconnect_interval_s - now
        if wait > 0:
            raise DisplayError("reconnect_wait", f"link down ({self._describe_last()}); next try in {wait:.2f} s")
        self._last_connect_attempt = now
        try:
            self._link.open()
        except LinkError as error:
            raise self._failed(error) from error
        log.info("display on %s answers again", self._link.port_name)
        self._answering = True
        self.last_error = None
        if reshow and self._wanted is not None:
            self._send_show(self._wanted, deadline)

    def _failed(self, error: LinkError) -> DisplayError:
        self._answering = False
        self.last_error = DisplayError(error.reason, str(error))
        return self.last_error

    def _describe_last(self) -> str:
        return str(self.last_error) if self.last_error else "not connected"

    def _check_open(self) -> None:
        if self._closed:
            raise DisplayError("closed", "display was closed")


def open_display(port: str, baudrate: int = 115200, ack_timeout_s: float = 0.25,
                 max_retries: int = 3, heartbeat_s: float = 2.0, *,
                 reconnect_interval_s: float = 1.0, probe_pings: int = 2,
                 render: bool = False, render_stream: TextIO | None = None) -> Display:
    """A Display on `port` (a device path or pyserial URL), or on an in-process emulator.

    Never raises because the display is absent or silent: the Display is then not `healthy`,
    `poll()` raises DisplayError and keeps trying, so a display plugged in later is picked up.
    Raises ValueError for invalid settings.
    """
    config = LinkConfig(ack_timeout_s=ack_timeout_s, max_retries=max_retries, heartbeat_s=heartbeat_s,
                        reconnect_interval_s=reconnect_interval_s, probe_pings=probe_pings,
                        baudrate=baudrate)
    emulator: DisplayEmulator | None = None
    on_close: Callable[[], None] | None = None
    if port == EMULATOR_PORT:
        folder = tempfile.mkdtemp(prefix="healthgate-display-")
        emulator = DisplayEmulator(link_path=os.path.join(folder, "display"), render=render,
                                   stream=render_stream)
        port = emulator.start()
        on_close = lambda: shutil.rmtree(folder, ignore_errors=True)  # noqa: E731
    display = Display(SerialLink(port, config), emulator=emulator, on_close=on_close)
    if not display.connect():
        log.warning("display on %s not answering yet: %s", port, display.last_error)
    return display
