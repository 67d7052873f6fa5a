"""Keeps the kiosk's status file fresh and hands the same figures to the fleet in a header."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from firmware.clihelp import software_version
from firmware.eventlog.common import EventLogError
from firmware.status.board import StatusBoard
from firmware.status.file import (STATUS_HEADER, KioskStatus, format_header, read_status,
                                  write_status)

if TYPE_CHECKING:
    from firmware.sync.uploader import Uploader

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 5.0  # how often the file is rewritten; `healthgate status` calls a
                         # kiosk silent for STALE_AFTER_S (60 s) not running


class StatusSession(requests.Session):
    """A session that adds the kiosk's status header to every request (uploads, trust sync):
    the fleet then knows each kiosk's software, trust age and backlog without a new endpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.status_header: Callable[[], str] = lambda: format_header(software_version(),
                                                                      None, None)

    def request(self, method: str, url: str,  # type: ignore[override]
                **kwargs: Any) -> requests.Response:  # Any: requests' own signature
        # get() and post() pass everything but the method and URL by keyword
        headers = dict(kwargs.pop("headers", None) or {})
        headers[STATUS_HEADER] = self.status_header()
        return super().request(method, url, headers=headers, **kwargs)


class StatusReporter:
    """Writes `status.json` every STATUS_INTERVAL_S from its own thread, and once more as
    "stopped" when the kiosk stops.

    The kiosk's state comes from the loop's published snapshot (`board`, the one the status
    page reads too). `uploader` gives the last upload (asked without its log counts) and
    `pending` the events waiting (`Outbox.pending_count`; only the count the file and header
    carry: the header is built for every fleet request, so no other log query runs for it)."""

    def __init__(self, state_dir: Path, board: StatusBoard,
                 trust_updated: Callable[[], datetime | None],
                 uploader: Uploader | None, pending: Callable[[], int] | None,
                 max_trust_age_h: float, now: Callable[[], datetime],
                 interval_s: float = STATUS_INTERVAL_S) -> None:
        self._state_dir = state_dir
        self._board = board
        self._trust_updated = trust_updated
        self._uploader = uploader
        self._pending = pending
        self._max_trust_age_h = max_trust_age_h
        self._now = now
        self._interval_s = interval_s
        self._software = software_version()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False
        try:  # the last upload survives a restart
            previous = read_status(state_dir)
        except ValueError:
            previous = None
        self._last_upload = previous.last_upload if previous is not None else None

    def snapshot(self, state: str | None = None) -> KioskStatus:
        try:
            updated = self._trust_updated()
        except Exception:  # trust data being swapped or unreadable: the kiosk says so itself
            updated = None
        pending = None
        if self._uploader is not None:
            if self._pending is not None:
                try:
                    pending = self._pending()
                except EventLogError:  # the log is closed or failing: the kiosk shows its fault
                    pending = None
            last_success = self._uploader.status(counts=False).last_success
            if last_success is not None:
                self._last_upload = last_success.isoformat()
        return KioskStatus(state=state or self._board.snapshot().state, software=self._software,
                           updated_at=self._now().isoformat(),
                           trust_updated_at=None if updated is None else updated.isoformat(),
                           max_trust_age_h=self._max_trust_age_h, pending=pending,
                           last_upload=self._last_upload)

    def header(self) -> str:
        status = self.snapshot()  # fresh: a short replay ends before the first rewrite
        return format_header(self._software, status.trust_age_s(self._now()), status.pending)

    def write_now(self, state: str | None = None) -> None:
        try:
            write_status(self._state_dir, self.snapshot(state))
        except OSError as exc:  # the status file is a convenience: never a fault of the kiosk
            if not self._warned:
                log.warning("cannot write the status file in %s: %s", self._state_dir,
                            exc.strerror)
                self._warned = True

    def start(self) -> None:
        self.write_now()
        self._thread = threading.Thread(target=self._run, name="status", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.write_now()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval_s)
        self.write_now("stopped")
