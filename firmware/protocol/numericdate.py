"""NumericDate (RFC 7519 2): the one check of every time read from outside, numeric or ISO 8601."""
from __future__ import annotations

import math
from datetime import datetime, timezone

from firmware.protocol.decoded import Decoded

# 9999-12-31T23:59:59Z: the last second a datetime can hold. Any later time is not a date a
# credential or a trust item can mean, and beyond 2**53 a float can no longer count seconds.
MAX_NUMERICDATE = 253_402_300_799
# Before the epoch nothing we read was issued; a negative time is an error, not a date.
MIN_NUMERICDATE = 0


class NumericDateError(ValueError):
    """A value that is not a usable time; the message names the field, never its value."""


def numeric_date(value: Decoded, name: str = "time") -> int | float:
    """`value` when it is a finite, non-negative int or float no later than MAX_NUMERICDATE.

    NaN compares false with everything, so a NaN expiry would pass `iat <= now <= exp`; an
    infinity never expires; bool is an int subclass in Python and a string is not a number:
    all are refused here, once, for every format.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NumericDateError(f"{name} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise NumericDateError(f"{name} is not a finite number")
    if not MIN_NUMERICDATE <= value <= MAX_NUMERICDATE:
        raise NumericDateError(f"{name} is outside {MIN_NUMERICDATE}..{MAX_NUMERICDATE}")
    return value


def int_numeric_date(value: Decoded, name: str = "time") -> int:
    """`numeric_date(value)` for formats whose NumericDate is an integer (NZCP, status codes):
    a float is refused too."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise NumericDateError(f"{name} is not an integer")
    numeric_date(value, name)
    return value


def optional_numeric_date(value: Decoded, name: str = "time") -> int | float | None:
    """None for a missing (None) value, else `numeric_date(value)`."""
    return None if value is None else numeric_date(value, name)


def iso_time(value: Decoded, name: str = "time") -> datetime:
    """An ISO 8601 / RFC 3339 text time (naive taken as UTC) within the NumericDate range."""
    if not isinstance(value, str):
        raise NumericDateError(f"{name} is not a text time")
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise NumericDateError(f"{name} is not an ISO 8601 time") from None
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
    try:
        numeric_date(stamp.timestamp(), name)
    except OverflowError:  # an offset pushes the time past what datetime holds
        raise NumericDateError(f"{name} is outside the NumericDate range") from None
    return stamp
