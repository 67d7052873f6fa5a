"""ISO-8601 timestamps in every shape the DCC test data and trust lists use."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_ISO = re.compile(
    r"^(?P<y>\d{4})-?(?P<mo>\d{2})-?(?P<d>\d{2})"
    r"(?:[T ](?P<h>\d{2}):?(?P<mi>\d{2})(?::?(?P<s>\d{2})(?:[.,](?P<frac>\d+))?)?)?"
    r"(?P<tz>Z|[+-]\d{2}(?::?\d{2})?)?$"
)


def parse_iso8601(text: str) -> datetime:
    """An aware datetime (UTC when no offset is given); ValueError when `text` is not ISO-8601.

    Handles `Z`, `+02:00`, `+0200`, `+02`, naive times, dates alone, and 0-9 fraction digits.
    """
    match = _ISO.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not an ISO-8601 timestamp: {text!r}")
    parts = match.groupdict()
    frac = (parts["frac"] or "0")[:6].ljust(6, "0")  # datetime keeps microseconds
    tz = timezone.utc
    if parts["tz"] and parts["tz"] != "Z":
        sign = -1 if parts["tz"][0] == "-" else 1
        digits = parts["tz"][1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + int(digits[2:4] or 0)
        tz = timezone(sign * timedelta(minutes=minutes))
    return datetime(int(parts["y"]), int(parts["mo"]), int(parts["d"]), int(parts["h"] or 0),
                    int(parts["mi"] or 0), int(parts["s"] or 0), int(frac), tzinfo=tz)
