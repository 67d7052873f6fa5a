"""CertLogic values: the error type, date-time values, and the spec's truthy/falsy notions."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from firmware.protocol.decoded import Decoded


class CertLogicError(Exception):
    """The one error type of the CertLogic engine: an invalid expression, or a type mismatch
    found while evaluating. Messages name operators and types, never data values, so that
    they can be logged without leaking personal data from a certificate payload."""


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, order=True, slots=True)
class DateTime:
    """A CertLogic date-time: milliseconds since 1970-01-01T00:00:00Z, like a JavaScript Date.

    Only `plusTime` and `dccDateOfBirth` produce these; there are no date-time literals.
    """

    epoch_ms: int

    def isoformat(self) -> str:
        """The JavaScript `toISOString()` rendering, e.g. `2021-06-01T00:00:00.000Z`."""
        from firmware.credentials.certlogic.datetimes import format_iso  # avoid an import cycle

        return format_iso(self.epoch_ms)

    def to_datetime(self) -> datetime:
        """As an aware UTC `datetime` (raises OverflowError outside Python's years 1..9999)."""
        return _EPOCH + timedelta(milliseconds=self.epoch_ms)

    def __str__(self) -> str:
        return self.isoformat()


def is_int(value: Decoded) -> bool:
    """Whether `value` is a CertLogic integer: a JSON number with no fractional part.

    JSON does not distinguish 42 from 42.0 (and JavaScript numbers do not either), so an
    integral float counts; booleans do not, although Python makes them ints.
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and value.is_integer()


def boolsiness(value: Decoded) -> bool | None:
    """True for truthy, False for falsy, None for values that are neither (spec "Values").

    Falsy: false, null, "", 0, [], {}. Truthy: true, non-empty strings, non-zero integers,
    non-empty arrays and objects. Everything else (non-integer numbers, date-times, non-JSON
    objects) is neither, and using it as a condition is an error.
    """
    if value is True:
        return True
    if value is False or value is None:
        return False
    if isinstance(value, str):
        return value != ""
    if isinstance(value, int):
        return value != 0
    if isinstance(value, float):
        return (value != 0) if value.is_integer() else None
    if isinstance(value, (list, dict)):
        return len(value) > 0
    return None


def type_name(value: Decoded) -> str:
    """A JSON-ish type name for error messages (never the value itself: privacy)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if is_int(value):
        return "integer"
    if isinstance(value, float):
        return "non-integer number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, DateTime):
        return "date-time"
    return f"non-JSON value ({type(value).__name__})"


def described(value: Decoded) -> str:
    """The type of `value` with its article, for messages: "an array", "null", ..."""
    name = type_name(value)
    if name == "null":
        return name
    return ("an " if name[0] in "aeiou" else "a ") + name


def js_string(value: Decoded) -> str:
    """Render a value of an *expression* (never of data) as JavaScript's String(value) does,
    so that validation messages read exactly like those of the reference JS validator."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        mantissa, _, exponent = repr(value).partition("e")
        return mantissa if not exponent else f"{mantissa}e{'-' if exponent[0] == '-' else '+'}" \
            f"{exponent.lstrip('+-').lstrip('0') or '0'}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        # Array.prototype.toString: items joined by commas, null as the empty string.
        return ",".join("" if item is None else js_string(item) for item in value)
    if isinstance(value, dict):
        return "[object Object]"
    return type_name(value)


_COMPOSITES = (list, dict, DateTime)


def strict_equals(left: Decoded, right: Decoded) -> bool:
    """`===`: equality without type coercion on strings, integers, booleans and null.

    A composite value (array, object, date-time) never equals a scalar. Two composites raise:
    the reference implementations disagree there (JavaScript compares identity, Kotlin
    structure), so no rule can rely on the outcome and an error is the honest answer.
    """
    left_composite = isinstance(left, _COMPOSITES)
    right_composite = isinstance(right, _COMPOSITES)
    if left_composite and right_composite:
        raise CertLogicError(
            f"=== / in cannot compare {described(left)} with {described(right)}: "
            "only strings, integers, booleans and null compare reliably"
        )
    if left_composite or right_composite:
        return False
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left is right
    if isinstance(left, str) or isinstance(right, str):
        return isinstance(left, str) and isinstance(right, str) and left == right
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return bool(left == right)
    return False
