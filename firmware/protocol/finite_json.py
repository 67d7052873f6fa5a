"""JSON from outside, parsed strictly: no NaN/Infinity literals, no number that overflows a float."""
from __future__ import annotations

import json
import math
from typing import Any


def _reject_constant(name: str) -> Any:
    # RFC 8259 has no NaN or Infinity; Python's json accepts them by default.
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses to inf
        raise ValueError("number out of range")
    return value


def loads(data: str | bytes | bytearray) -> Any:
    """`json.loads` that refuses NaN, Infinity, -Infinity and overflowing numbers (ValueError).

    Deep nesting raises RecursionError in json; it is turned into ValueError so callers catch one
    type.
    """
    try:
        return json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
