"""The kiosk's status in a few numbers: a tiny file for `healthgate status`, a header for the fleet.

No personal data: the state name, the age of the trust data, how many events wait, when the
last upload succeeded, and the software version.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from firmware.fsutil import write_atomic
from firmware.protocol.decoded import Decoded
from firmware.statefolder import StateFolder

STATUS_HEADER = "X-Healthgate-Status"  # sent with every signed request to the fleet
MAX_HEADER_CHARS = 200  # a longer header is ignored by the fleet, not parsed
MAX_STATUS_BYTES = 4096  # a larger status file is damaged, not read
SOFTWARE_PATTERN = re.compile(r"[A-Za-z0-9.+_-]{1,32}")
MAX_COUNT = 2**53 - 1  # integers the fleet stores: JSON-safe
STALE_AFTER_S = 60.0  # a status file not rewritten for this long: the kiosk is not running


@dataclass(frozen=True)
class KioskStatus:
    state: str  # IDLE, FAULT, ... or "stopped"
    software: str
    updated_at: str  # RFC 3339, UTC
    trust_updated_at: str | None = None
    max_trust_age_h: float | None = None
    pending: int | None = None  # events waiting for upload; None: no fleet configured
    last_upload: str | None = None  # last acknowledged upload (RFC 3339), None: none yet

    def trust_age_s(self, now: datetime) -> int | None:
        if self.trust_updated_at is None:
            return None
        return max(0, int((now - datetime.fromisoformat(self.trust_updated_at)).total_seconds()))


def write_status(state_dir: Path, status: KioskStatus) -> None:
    """Rewrite the status file whole (write_atomic, mode 0600)."""
    write_atomic(StateFolder(state_dir).status_file,
                 json.dumps(asdict(status), sort_keys=True).encode())


def read_status(state_dir: Path) -> KioskStatus | None:
    """The last status the kiosk wrote; None when it never did. ValueError when damaged."""
    path = StateFolder(state_dir).status_file
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_STATUS_BYTES + 1)
    except FileNotFoundError:
        return None
    if len(raw) > MAX_STATUS_BYTES:
        raise ValueError(f"{path} is larger than {MAX_STATUS_BYTES} bytes")
    try:
        data = json.loads(raw)
        return KioskStatus(**{k: data.get(k) for k in KioskStatus.__dataclass_fields__})
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is damaged ({exc})") from None


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def status_line(status: KioskStatus, now: datetime) -> str:
    """One line for a shop owner: state, trust age, pending events, last upload."""
    updated = datetime.fromisoformat(status.updated_at)
    quiet_s = (now - updated).total_seconds()
    if status.state == "stopped" or quiet_s > STALE_AFTER_S:
        state = f"NOT RUNNING (last seen {_age(max(0.0, quiet_s))} ago)"
    else:
        state = status.state
    age = status.trust_age_s(now)
    if age is None:
        trust = "no trust data"
    else:
        trust = f"trust data {_age(age)} old"
        if status.max_trust_age_h is not None and age > status.max_trust_age_h * 3600:
            trust += " (TOO OLD: every credential is refused)"
    if status.pending is None:
        uploads = "offline kiosk (no fleet)"
    else:
        last = ("never uploaded" if status.last_upload is None else
                f"last upload {_age(max(0.0, (now - datetime.fromisoformat(status.last_upload)).total_seconds()))} ago")
        uploads = f"{status.pending} event(s) waiting, {last}"
    return f"{state}; {trust}; {uploads}"


def format_header(software: str, trust_age_s: int | None, pending: int | None) -> str:
    parts = [f"software={software}"]
    if trust_age_s is not None:
        parts.append(f"trust_age_s={trust_age_s}")
    if pending is not None and pending >= 0:
        parts.append(f"pending={pending}")
    return "; ".join(parts)


def parse_header(value: str | None) -> dict[str, Decoded]:
    """The known fields of a status header; anything malformed or unknown is dropped (it is
    informational: a bad header must never refuse a request)."""
    fields: dict[str, Decoded] = {}
    if not value or len(value) > MAX_HEADER_CHARS:
        return fields
    for part in value.split(";"):
        name, _, raw = part.strip().partition("=")
        if name == "software" and SOFTWARE_PATTERN.fullmatch(raw):
            fields[name] = raw
        elif name in ("trust_age_s", "pending") and raw.isdigit() and int(raw) <= MAX_COUNT:
            fields[name] = int(raw)
    return fields


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
