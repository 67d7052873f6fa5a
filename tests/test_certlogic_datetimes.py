"""CertLogic date-times: every string shape the spec allows, JavaScript-Date offsetting."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.credentials.certlogic import CertLogicError, evaluate
from firmware.credentials.certlogic.datetimes import (
    civil_from_days,
    days_from_civil,
    dcc_date_of_birth,
    format_iso,
    format_validation_clock,
    from_datetime,
    parse_date_time,
    plus_time,
)

# Every format listed in the spec, for 2021-06-01 12:30:45 (local time, before the offset).
@pytest.mark.parametrize(("text", "iso"), [
    ("2021", "2021-12-31T00:00:00.000Z"),
    ("2020-02", "2020-02-29T00:00:00.000Z"),
    ("2021-02", "2021-02-28T00:00:00.000Z"),
    ("2021-06-01", "2021-06-01T00:00:00.000Z"),
    ("2021-06-01T12:30:45", "2021-06-01T12:30:45.000Z"),
    ("2021-06-01T12:30:45Z", "2021-06-01T12:30:45.000Z"),
    ("2021-06-01T12:30:45+2", "2021-06-01T10:30:45.000Z"),
    ("2021-06-01T12:30:45+02", "2021-06-01T10:30:45.000Z"),
    ("2021-06-01T12:30:45+230", "2021-06-01T10:00:45.000Z"),
    ("2021-06-01T12:30:45+0230", "2021-06-01T10:00:45.000Z"),
    ("2021-06-01T12:30:45+2:30", "2021-06-01T10:00:45.000Z"),
    ("2021-06-01T12:30:45+02:30", "2021-06-01T10:00:45.000Z"),
    ("2021-06-01T12:30:45-5", "2021-06-01T17:30:45.000Z"),
    ("2021-06-01T12:30:45-0530", "2021-06-01T18:00:45.000Z"),
    ("2021-06-01T12:30:45.5", "2021-06-01T12:30:45.500Z"),
    ("2021-06-01T12:30:45.5Z", "2021-06-01T12:30:45.500Z"),
    ("2021-06-01T12:30:45.12+2", "2021-06-01T10:30:45.120Z"),
    ("2021-06-01T12:30:45.123+02", "2021-06-01T10:30:45.123Z"),
    ("2021-06-01T12:30:45.1239+230", "2021-06-01T10:00:45.123Z"),   # truncated, not rounded
    ("2021-06-01T12:30:45.999999999+0230", "2021-06-01T10:00:45.999Z"),
    ("2021-06-01T12:30:45.0+2:30", "2021-06-01T10:00:45.000Z"),
    ("2021-06-01T12:30:45.001-02:30", "2021-06-01T15:00:45.001Z"),
    ("2021-01-01T00:30:00+01:00", "2020-12-31T23:30:00.000Z"),       # offset crosses a year
    ("2021-06-01T00:00:00+00:00", "2021-06-01T00:00:00.000Z"),
    ("0001-01-01", "0001-01-01T00:00:00.000Z"),
])
def test_allowed_shapes(text: str, iso: str) -> None:
    assert parse_date_time(text).isoformat() == iso
    assert evaluate({"plusTime": [text, 0, "year"]}, None).isoformat() == iso


@pytest.mark.parametrize("text", [
    "", "21", "2021-6-01", "2021-06-1", "2021-13", "2021-00", "2021-02-29", "2021-06-31",
    "2021-06-01T", "2021-06-01T12:30", "2021-06-01 12:30:45", "2021-06-01t12:30:45",
    "2021-06-01T24:00:00", "2021-06-01T12:60:00", "2021-06-01T12:30:60",
    "2021-06-01T12:30:45z", "2021-06-01T12:30:45.", "2021-06-01T12:30:45.Z",
    "2021-06-01T12:30:45+", "2021-06-01T12:30:45+123:00", "2021-06-01T12:30:45+1:3",
    "2021-06-01T12:30:45+24:00", "2021-06-01T12:30:45+02:60", "2021-06-01T12:30:45+02:30:00",
    "2021-06-01T12:30:45GMT", "+2021-06-01", "2021-06-01Z", "2021-W22", "2021-152",
    " 2021-06-01", "2021-06-01\n", "２０２１-06-01",
])
def test_shapes_and_values_outside_the_spec_raise(text: str) -> None:
    with pytest.raises(CertLogicError):
        parse_date_time(text)


@pytest.mark.parametrize(("start", "amount", "unit", "iso"), [
    # The spec's leap-day table.
    ("2020-02-29", 1, "day", "2020-03-01T00:00:00.000Z"),
    ("2020-02-29", 1, "month", "2020-03-29T00:00:00.000Z"),
    ("2020-02-29", 1, "year", "2021-03-01T00:00:00.000Z"),
    # JavaScript setUTCMonth/setUTCFullYear overflow and borrow.
    ("2021-01-31", 1, "month", "2021-03-03T00:00:00.000Z"),
    ("2020-01-31", 1, "month", "2020-03-02T00:00:00.000Z"),
    ("2021-03-31", -1, "month", "2021-03-03T00:00:00.000Z"),
    ("2021-12-15", 1, "month", "2022-01-15T00:00:00.000Z"),
    ("2021-01-15", -13, "month", "2019-12-15T00:00:00.000Z"),
    ("2020-03-01", 1, "year", "2021-03-01T00:00:00.000Z"),
    ("2024-02-29", -18, "year", "2006-03-01T00:00:00.000Z"),
    ("2022-12-31T13:37:00.042Z", -18, "year", "2004-12-31T13:37:00.042Z"),
    # Days and hours are exact, unaffected by daylight saving time (UTC throughout).
    ("2021-03-27T12:00:00+01:00", 1, "day", "2021-03-28T11:00:00.000Z"),
    ("2021-06-23T00:00:00Z", -180, "day", "2020-12-25T00:00:00.000Z"),
    ("2021-06-01T00:00:00+00:00", 40, "hour", "2021-06-02T16:00:00.000Z"),
    ("2021-01-01", -1, "hour", "2020-12-31T23:00:00.000Z"),
    ("2021", 1, "day", "2022-01-01T00:00:00.000Z"),
    ("2021-02", 1, "month", "2021-03-28T00:00:00.000Z"),
])
def test_plus_time_follows_javascript_date(start: str, amount: int, unit: str, iso: str) -> None:
    assert plus_time(start, amount, unit).isoformat() == iso


def test_out_of_javascript_range_raises() -> None:
    with pytest.raises(CertLogicError):
        plus_time("2021-01-01", 300_000, "year")
    assert plus_time("2021-01-01", 200_000, "year").isoformat() == "+202021-01-01T00:00:00.000Z"


@pytest.mark.parametrize(("dob", "iso"), [
    ("2004", "2004-12-31T00:00:00.000Z"),
    ("2004-01", "2004-01-31T00:00:00.000Z"),
    ("2004-02", "2004-02-29T00:00:00.000Z"),
    ("2003-02", "2003-02-28T00:00:00.000Z"),
    ("2004-04", "2004-04-30T00:00:00.000Z"),
    ("2004-12", "2004-12-31T00:00:00.000Z"),
    ("2004-06-15", "2004-06-15T00:00:00.000Z"),
])
def test_dcc_date_of_birth_is_the_last_consistent_date(dob: str, iso: str) -> None:
    assert dcc_date_of_birth(dob).isoformat() == iso
    assert dcc_date_of_birth(dob) == plus_time(dob, 0, "day")


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)))
def test_civil_day_arithmetic_matches_the_gregorian_calendar(day: date) -> None:
    days = days_from_civil(day.year, day.month, day.day)
    assert days == day.toordinal() - date(1970, 1, 1).toordinal()
    assert civil_from_days(days) == (day.year, day.month, day.day)


_aware = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1),
                      timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30)),
                                                 timezone(timedelta(hours=-8))]))


@settings(max_examples=200, deadline=None)
@given(moment=_aware, amount=st.integers(-5000, 5000), unit=st.sampled_from(["day", "hour"]))
def test_days_and_hours_agree_with_python(moment: datetime, amount: int, unit: str) -> None:
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    text = moment.isoformat()   # e.g. 2021-06-01T12:00:00.123000+05:30: an allowed shape
    expected = moment + timedelta(**{f"{unit}s": amount})
    assert plus_time(text, amount, unit) == from_datetime(expected)


@settings(max_examples=200, deadline=None)
@given(moment=_aware, amount=st.integers(-600, 600))
def test_months_and_years_keep_the_day_when_it_exists(moment: datetime, amount: int) -> None:
    moment = moment.astimezone(timezone.utc).replace(day=min(moment.day, 28), microsecond=0)
    text = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    month_index = moment.month - 1 + amount
    shifted = moment.replace(year=moment.year + month_index // 12, month=month_index % 12 + 1)
    assert plus_time(text, amount, "month") == from_datetime(shifted)
    if 1 <= moment.year + amount // 12 <= 9999:
        years = amount // 12
        assert plus_time(text, years, "year") == from_datetime(moment.replace(year=moment.year + years))


@settings(max_examples=100, deadline=None)
@given(_aware)
def test_validation_clock_round_trips(moment: datetime) -> None:
    text = format_validation_clock(moment)
    assert parse_date_time(text) == from_datetime(moment)
    assert format_iso(parse_date_time(text).epoch_ms) == text


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(CertLogicError):
        from_datetime(datetime(2021, 6, 1))
