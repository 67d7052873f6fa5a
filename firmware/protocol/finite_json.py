"""JSON from outside, parsed strictly (no NaN/Infinity literals, no number that overflows a float),
and a node/depth budget check for decoded JSON values."""
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


def within_budget(value: Any, max_nodes: int, max_depth: int) -> bool:
    """Whether a decoded JSON-like value has at most `max_nodes` values (each dict, list/tuple
    and scalar is one) nested at most `max_depth` deep. Iterative, and it stops at the first
    node past the budget, so it costs O(max_nodes) whatever it is given (a shared-reference
    graph included)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes or depth > max_depth:
            return False
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((child, depth + 1) for child in item)
    return True
