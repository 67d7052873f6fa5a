"""Opens the kiosk's event log, starting a new chain when the old log is gone or unusable.

A kiosk that keeps its key but loses its log (a replaced SD card image, a technician deleting a
damaged file, corruption) would otherwise start again at seq 1: the fleet already holds seq 1
from the old chain, so it refuses every new event as a fork, for ever. Instead the new log is
numbered past anything the old one can have used (the time in milliseconds, and at least
SEQ_GAP past the previous start recorded beside the log, so that a clock that is wrong at that
moment, say a board without a real-time clock, cannot make it collide) and opens with a signed `log_restarted` event,
which the fleet accepts as a second chain start (fleet/ingest.py) and reports as an incident:
decisions the old log had not uploaded are lost, and the fleet should know.

A log that exists but fails its checks at open (corrupt, or its newest event does not verify)
is moved aside, not deleted, so a technician can still read what it holds.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, TypedDict, Unpack

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.eventlog.common import EventLogError
from firmware.eventlog.log import EventLog
from firmware.eventlog.sqlitefile import Durability
from firmware.fsutil import write_atomic
from firmware.protocol.event_codec import LOG_RESTARTED_KIND

log = logging.getLogger(__name__)

START_FILE_SUFFIX = ".start"  # beside the log: the first seq of its chain, one line
# More events than one chain can hold (a 256 MiB log holds ~0.5 M; a decision a second for 30
# years is ~1e9 with compaction), and still far below the 2^53 the fleet accepts.
SEQ_GAP = 10**9
# Failures at open that mean the file cannot be extended; others (a full disk, a wrong key,
# bad configuration) are left to the caller, since a new log would not cure them.
UNUSABLE = frozenset({"EVENTLOG_CORRUPT", "EVENTLOG_CHAIN_BROKEN"})


class OpenOptions(TypedDict, total=False):
    """EventLog.open's options, passed on unchanged."""

    quota_bytes: int | None
    retention: timedelta
    durability: Durability
    clock: Callable[[], datetime]
    integrity_check: bool
    commit_timeout_s: float


def open_or_restart(path: Path, key: Ed25519PrivateKey, device_id: str,
                    now: Callable[[], datetime], **options: Unpack[OpenOptions]) -> EventLog:
    """The log at `path`, created anew when it is missing; see the module docstring."""
    start_file = path.with_name(path.name + START_FILE_SUFFIX)
    previous_start = _read_start(start_file)
    reason = None
    if path.exists():
        try:
            event_log = EventLog.open(path, key, device_id, **options)
        except EventLogError as exc:
            if exc.code not in UNUSABLE:
                raise
            reason = exc.code
            aside = _move_aside(path, now())
            log.error("event log %s unusable (%s): moved to %s; starting a new chain",
                      path, exc.code, aside.name)
        else:
            if previous_start is None:  # a log from before start files existed
                write_atomic(start_file, b"1\n")
            return event_log
    elif previous_start is not None:
        reason = "EVENTLOG_MISSING"
        log.error("event log %s is missing but this kiosk had one: starting a new chain", path)
    if reason is None:  # the kiosk's first log
        event_log = EventLog.open(path, key, device_id, **options)
        write_atomic(start_file, b"1\n")
        return event_log
    start = max(int(now().timestamp() * 1000), (previous_start or 1) + SEQ_GAP)
    event_log = EventLog.open(path, key, device_id, restart_after=start - 1, **options)
    try:
        event_log.append(LOG_RESTARTED_KIND, {"reason": reason, "previous_start": previous_start})
        write_atomic(start_file, f"{start}\n".encode())
    except BaseException:
        event_log.close()
        raise
    return event_log


def _read_start(start_file: Path) -> int | None:
    try:
        return int(start_file.read_text().strip())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return 1  # unreadable: a log existed; 1 keeps the time-based numbering


def _move_aside(path: Path, at: datetime) -> Path:
    """Rename the log and its -wal/-shm companions to `<name>.broken-<UTC time>`."""
    stamp = at.strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.broken-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            os.replace(source, aside.with_name(aside.name + suffix))
    return aside
