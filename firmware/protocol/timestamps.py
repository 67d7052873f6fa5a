"""RFC 3339 UTC timestamps with milliseconds, as events, requests and statements carry them."""
from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(moment: datetime) -> str:
    """UTC with milliseconds (truncated), e.g. "2026-11-26T08:00:00.123Z"."""
    utc = moment.astimezone(timezone.utc)
    if utc.year < 1000:  # isoformat pads the year to four digits, strftime does not
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    # isoformat is several times cheaper than strftime and gives the same text ("+00:00" off)
    return utc.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
