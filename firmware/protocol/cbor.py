"""Bounded decoding of CBOR from outside: a header pre-pass (bytes, nodes, depth, tags, trailing
bytes) that builds nothing, then `cbor2.loads` only on input that passed it."""
from __future__ import annotations

from collections.abc import Collection

import cbor2

from firmware.protocol.decoded import Decoded

# Value sharing (RFC 8949 registry: 28 "shareable", 29 "sharedref") lets a few bytes describe a
# graph whose tree expansion is exponential; no format we read uses it, so it is never allowed,
# whatever the caller's allow-list says.
VALUE_SHARING_TAGS = frozenset({28, 29})
# Defaults sized for a scanned credential: a QR code carries at most ~3 KB of binary, a real
# DCC payload has well under 200 data items and nests 7 deep.
DEFAULT_MAX_NODES = 4096
DEFAULT_MAX_DEPTH = 16

# Problems that look like a damaged or foreign input (reported with the format's "damaged" code);
# the rest (value_sharing, too_many_nodes, too_deep, too_large) never occur in a real credential
# and are reported with the format's *_CBOR_REFUSED code.
STRUCTURAL_PROBLEMS = frozenset({"malformed", "trailing_bytes", "tag"})

_MAJOR_UINT, _MAJOR_NINT, _MAJOR_BYTES, _MAJOR_TEXT = 0, 1, 2, 3
_MAJOR_ARRAY, _MAJOR_MAP, _MAJOR_TAG, _MAJOR_SIMPLE = 4, 5, 6, 7
_AI_INDEFINITE = 31
_ARGUMENT_BYTES = {24: 1, 25: 2, 26: 4, 27: 8}
_BREAK = 0xFF
_INDEFINITE = -1  # frame count of an indefinite-length container (ends at a break byte)


class CborRefused(ValueError):
    """CBOR from outside that we will not decode; `problem` is one of: too_large, malformed,
    trailing_bytes, too_many_nodes, too_deep, value_sharing, tag (a tag the format does not use)."""

    def __init__(self, problem: str, detail: str) -> None:
        super().__init__(f"{problem}: {detail}")
        self.problem = problem
        self.detail = detail

    @property
    def structural(self) -> bool:
        """True for damaged bytes, trailing bytes or an unused tag; False for an attack-shaped
        construct (value sharing, past a node, depth or byte bound)."""
        return self.problem in STRUCTURAL_PROBLEMS


def check(data: bytes, *, max_bytes: int, allowed_tags: Collection[int] = (),
          max_nodes: int = DEFAULT_MAX_NODES, max_depth: int = DEFAULT_MAX_DEPTH) -> int:
    """Walk the item headers of `data` without building objects; return its node count.

    Exactly one data item must fill `data`. Every data item (a tag, each array element, each map
    key and value) is one node. Depth counts the containers and tags around an item (the
    top-level item is at 0). The walk stops at the first node past a bound, so its cost is
    O(min(len(data), max_nodes)).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CborRefused("malformed", f"{type(data).__name__} is not bytes")
    view = bytes(data)
    if len(view) > max_bytes:
        raise CborRefused("too_large", f"{len(view)} bytes > {max_bytes}")
    if not view:
        raise CborRefused("malformed", "empty")
    allowed = frozenset(allowed_tags) - VALUE_SHARING_TAGS
    end, pos, nodes = len(view), 0, 0
    # Each open container or tag: [items still expected (or _INDEFINITE), major type of a
    # chunked string (-1 otherwise)]. The top level expects exactly one item.
    stack: list[list[int]] = [[1, -1]]
    while stack:
        frame = stack[-1]
        if frame[0] == 0:
            stack.pop()
            continue
        if pos >= end:
            raise CborRefused("malformed", "truncated")
        initial = view[pos]
        if frame[0] == _INDEFINITE and initial == _BREAK:
            pos += 1
            stack.pop()
            continue
        if frame[0] != _INDEFINITE:
            frame[0] -= 1
        nodes += 1
        if nodes > max_nodes:
            raise CborRefused("too_many_nodes", f"more than {max_nodes} data items")
        if len(stack) - 1 > max_depth:
            raise CborRefused("too_deep", f"nested deeper than {max_depth}")
        major, info = initial >> 5, initial & 0x1F
        pos += 1
        if frame[1] >= 0 and (major != frame[1] or info == _AI_INDEFINITE):
            raise CborRefused("malformed", "bad chunk in an indefinite-length string")
        if info == _AI_INDEFINITE:
            if major in (_MAJOR_BYTES, _MAJOR_TEXT):
                stack.append([_INDEFINITE, major])
            elif major in (_MAJOR_ARRAY, _MAJOR_MAP):
                stack.append([_INDEFINITE, -1])
            else:  # a break outside an indefinite container, or indefinite int/tag
                raise CborRefused("malformed", f"unexpected indefinite/break byte {initial:#x}")
            continue
        argument, pos = _argument(view, pos, info)
        if major in (_MAJOR_BYTES, _MAJOR_TEXT):
            if argument > end - pos:
                raise CborRefused("malformed", "string runs past the end")
            pos += argument
        elif major in (_MAJOR_ARRAY, _MAJOR_MAP) and argument:
            # The declared count is only a promise: each item is still read and counted, so a
            # huge count costs nothing until the node budget stops it.
            stack.append([argument if major == _MAJOR_ARRAY else 2 * argument, -1])
        elif major == _MAJOR_TAG:
            _check_tag(argument, allowed)
            stack.append([1, -1])
    if pos != end:
        raise CborRefused("trailing_bytes", f"{end - pos} byte(s) after the data item")
    return nodes


def _argument(view: bytes, pos: int, info: int) -> tuple[int, int]:
    """The header argument (RFC 8949 3.1) for additional info `info` read at `pos`."""
    if info < 24:
        return info, pos
    size = _ARGUMENT_BYTES.get(info)
    if size is None:
        raise CborRefused("malformed", f"reserved additional information {info}")
    if pos + size > len(view):
        raise CborRefused("malformed", "truncated header")
    return int.from_bytes(view[pos:pos + size], "big"), pos + size


def _check_tag(tag: int, allowed: frozenset[int]) -> None:
    if tag in VALUE_SHARING_TAGS:
        raise CborRefused("value_sharing", f"tag {tag} (value sharing) is never accepted")
    if tag not in allowed:
        raise CborRefused("tag", f"tag {tag} is not used by this format")


def loads(data: bytes, *, max_bytes: int, allowed_tags: Collection[int] = (),
          max_nodes: int = DEFAULT_MAX_NODES, max_depth: int = DEFAULT_MAX_DEPTH) -> Decoded:
    """`cbor2.loads` of data that passed `check`; raises CborRefused for a refused construct and
    ValueError (cbor2's own errors) for content cbor2 cannot decode."""
    check(data, max_bytes=max_bytes, allowed_tags=allowed_tags, max_nodes=max_nodes,
          max_depth=max_depth)
    try:
        return cbor2.loads(bytes(data))
    except Exception as exc:  # cbor2 raises several types (CBORDecodeError, ValueError, ...)
        raise ValueError(f"not decodable CBOR: {type(exc).__name__}: {exc}") from None
