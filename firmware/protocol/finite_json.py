"""JSON from outside, parsed strictly (no NaN/Infinity literals, no number that overflows a float),
and a node/depth budget check for decoded JSON values."""
from __future__ import annotations

import json
import math
import re
from typing import NoReturn

import numpy as np

from firmware.protocol.decoded import Decoded

# Deeper than any real document (CertLogic rules nest ~20 levels), far below the depth where
# json's C scanner recurses near the interpreter's stack limit (a RecursionError there can also
# break unrelated finalizers that run at that moment).
MAX_DEPTH = 128
# A JSON string: quote, then runs of plain characters and escapes (unrolled: linear, no backtracking).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)


def _reject_constant(name: str) -> NoReturn:
    # RFC 8259 has no NaN or Infinity; Python's json accepts them by default.
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses to inf
        raise ValueError("number out of range")
    return value


def nesting_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text (brackets inside strings do not
    count), found without parsing: strings removed by one regex pass, then a running sum."""
    if data.count(b"[") + data.count(b"{") == 0:
        return 0
    outside = np.frombuffer(_STRING.sub(b"", data), dtype=np.uint8)
    steps = (np.isin(outside, (ord("["), ord("{"))).astype(np.int32)
             - np.isin(outside, (ord("]"), ord("}"))).astype(np.int32))
    return int(np.cumsum(steps).max(initial=0))


def loads(data: str | bytes | bytearray, max_depth: int | None = MAX_DEPTH) -> Decoded:
    """`json.loads` that refuses NaN, Infinity, -Infinity, overflowing numbers and nesting deeper
    than `max_depth` (checked before parsing), all with ValueError. `max_depth=None` skips the
    depth pre-check, for a caller whose own scan has already bounded the nesting."""
    if max_depth is not None:
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
        if raw.count(b"[") + raw.count(b"{") > max_depth and nesting_depth(raw) > max_depth:
            raise ValueError(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:  # not reachable below MAX_DEPTH; kept so callers catch one type
        raise ValueError("JSON nested too deeply") from None


def within_budget(value: Decoded, max_nodes: int, max_depth: int) -> bool:
    """Whether a decoded JSON-like value has at most `max_nodes` values (each dict, list/tuple
    and scalar is one) nested at most `max_depth` deep. Iterative, and it stops at the first
    node past the budget, so it costs O(max_nodes) whatever it is given (a shared-reference
    graph included)."""
    stack: list[tuple[Decoded, int]] = [(value, 0)]
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
