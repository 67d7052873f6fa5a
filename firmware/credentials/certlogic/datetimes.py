"""Date-time parsing and offsetting for CertLogic (`plusTime`, `dccDateOfBirth`), to the spec.

Date-times are integer milliseconds since the Unix epoch, with JavaScript `Date` semantics for
calendar arithmetic (the spec defines `plusTime` through `setUTCFullYear` and friends), done
with exact proleptic-Gregorian day arithmetic so the whole JavaScript range is covered.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

from firmware.credentials.certlogic.values import CertLogicError, DateTime

TIME_UNITS: tuple[str, ...] = ("year", "month", "day", "hour")

_MS_PER_DAY = 86_400_000
_MS_PER_HOUR = 3_600_000
# ECMAScript TimeClip: a Date holds at most 8.64e15 ms either side of the epoch.
_MAX_EPOCH_MS = 8_640_000_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# All shapes the spec allows: YYYY, YYYY-MM, YYYY-MM-DD, and YYYY-MM-DDThh:mm:ss with optional
# fraction (any number of digits) and optional zone Z / [+-]h / hh / hmm / hhmm / h:mm / hh:mm.
_DATE_TIME = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:(Z)|([+-])(\d{1,2})(?::?(\d{2}))?)?)?"
    r")?)?",
    re.ASCII,  # \d must not match other scripts' digits
)
_DATE_OF_BIRTH = re.compile(r"\d{4}(?:-\d{2}(?:-\d{2})?)?", re.ASCII)


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic-Gregorian date (month 1..12, any day >= 1)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def civil_from_days(days: int) -> tuple[int, int, int]:
    """Inverse of `days_from_civil`: (year, month 1..12, day 1..31)."""
    days += 719_468
    era = days // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524
                   - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + (3 if shifted_month < 10 else -9)
    return year_of_era + era * 400 + (month <= 2), month, day


def days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return days_from_civil(year, month + 1, 1) - days_from_civil(year, month, 1)


def _make_day(year: int, month0: int, day: int) -> int:
    """ECMAScript MakeDay: month0 may be any integer (overflows into years), day any integer."""
    year += month0 // 12
    return days_from_civil(year, month0 % 12 + 1, 1) + day - 1


def _clip(epoch_ms: int) -> DateTime:
    if abs(epoch_ms) > _MAX_EPOCH_MS:
        raise CertLogicError("date-time out of range (beyond +-8.64e15 ms around 1970)")
    return DateTime(epoch_ms)


def parse_date_time(text: str) -> DateTime:
    """Parse a date or date-time string in one of the shapes the spec allows.

    Partial dates take the last day they can mean (as `dccDateOfBirth`); a missing time is
    midnight; a missing zone is UTC; fractions are truncated to milliseconds. Values the spec
    calls invalid (month 13, day 99, hour 25, offset 24h) raise instead of being undefined.
    """
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise CertLogicError("not an allowed date or date-time format")
    (year_s, month_s, day_s, hour_s, minute_s, second_s, fraction_s,
     zulu, sign, offset_h_s, offset_m_s) = match.groups()
    year = int(year_s)
    month = int(month_s) if month_s else 12
    if not 1 <= month <= 12:
        raise CertLogicError("month out of range in date-time string")
    last_day = days_in_month(year, month)
    day = int(day_s) if day_s else last_day
    if not 1 <= day <= last_day:
        raise CertLogicError("day out of range in date-time string")
    epoch_ms = days_from_civil(year, month, day) * _MS_PER_DAY
    if hour_s is not None:
        hour, minute, second = int(hour_s), int(minute_s), int(second_s)
        if hour > 23 or minute > 59 or second > 59:
            raise CertLogicError("time of day out of range in date-time string")
        millis = int((fraction_s or "")[:3].ljust(3, "0"))
        epoch_ms += ((hour * 60 + minute) * 60 + second) * 1000 + millis
        if sign is not None:
            offset_h = int(offset_h_s)
            offset_m = int(offset_m_s) if offset_m_s else 0
            if offset_h > 23 or offset_m > 59:
                raise CertLogicError("timezone offset out of range in date-time string")
            offset_ms = (offset_h * 60 + offset_m) * 60_000
            epoch_ms -= offset_ms if sign == "+" else -offset_ms
        del zulu  # "Z", or no zone at all: both mean UTC
    return _clip(epoch_ms)


def plus_time(text: str, amount: int, unit: str) -> DateTime:
    """`plusTime`: parse `text`, then add `amount` units the way JavaScript's setUTC* do.

    Years and months keep the day of month and overflow past the month's end
    (2020-02-29 + 1 year = 2021-03-01; 2021-01-31 + 1 month = 2021-03-03); days and hours are
    exact multiples of 24h and 1h, since UTC has no daylight saving time.
    """
    start = parse_date_time(text)
    if amount == 0:
        return start
    if unit == "day":
        return _clip(start.epoch_ms + amount * _MS_PER_DAY)
    if unit == "hour":
        return _clip(start.epoch_ms + amount * _MS_PER_HOUR)
    if unit not in ("month", "year"):
        raise CertLogicError(f'unknown time unit "{unit}"')
    days, time_of_day = divmod(start.epoch_ms, _MS_PER_DAY)
    year, month, day = civil_from_days(days)
    if unit == "month":
        new_days = _make_day(year, month - 1 + amount, day)
    else:
        new_days = _make_day(year + amount, month - 1, day)
    return _clip(new_days * _MS_PER_DAY + time_of_day)


def dcc_date_of_birth(text: str) -> DateTime:
    """`dccDateOfBirth`: YYYY -> YYYY-12-31, YYYY-MM -> last day of that month, YYYY-MM-DD as
    is; always at 00:00:00.000Z ("the last date consistent with the provided data")."""
    if _DATE_OF_BIRTH.fullmatch(text) is None:
        raise CertLogicError("not a DCC date of birth (YYYY, YYYY-MM or YYYY-MM-DD)")
    return parse_date_time(text)


def format_iso(epoch_ms: int) -> str:
    """JavaScript `Date.prototype.toISOString()` (6-digit signed years outside 0000..9999)."""
    days, time_of_day = divmod(epoch_ms, _MS_PER_DAY)
    year, month, day = civil_from_days(days)
    seconds, millis = divmod(time_of_day, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    year_text = f"{year:04d}" if 0 <= year <= 9999 else f"{'+' if year > 0 else '-'}{abs(year):06d}"
    return (f"{year_text}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
            f".{millis:03d}Z")


def from_datetime(moment: datetime) -> DateTime:
    """A timezone-aware Python datetime as a CertLogic date-time (floored to milliseconds)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise CertLogicError("a naive datetime has no defined instant: give it a timezone")
    delta = moment - _EPOCH
    # Whole days/seconds/microseconds avoid float rounding.
    return _clip((delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000)


def format_validation_clock(moment: datetime) -> str:
    """The `external.validationClock` string for an injected, timezone-aware clock reading."""
    return from_datetime(moment).isoformat()
