"""Network failures in a few words: "cannot reach URL: connection refused", never a requests repr."""
from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator

import requests

# errno -> words, for the OSErrors a kiosk meets in the field
_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ETIMEDOUT: "timed out",
}
MAX_CHAIN = 16  # exceptions walked through causes and wrappers: requests nests about five


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, the exceptions it wraps (args, `reason`, causes), breadth first, bounded."""
    seen: set[int] = set()
    queue = [exc]
    while queue and len(seen) < MAX_CHAIN:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [arg for arg in current.args if isinstance(arg, BaseException)]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            nested.append(reason)
        nested += [e for e in (current.__cause__, current.__context__) if e is not None]
        queue.extend(nested)


def network_reason(exc: BaseException) -> str:
    """Why a request did not get an answer, in a few words ("connection refused")."""
    chain = list(_chain(exc))
    for error in chain:  # the most specific cause first
        if isinstance(error, ssl.SSLError) or isinstance(error, requests.exceptions.SSLError):
            return "TLS handshake failed (is it a plain http:// server?)"
        if isinstance(error, socket.gaierror):
            return "host not found"
        if isinstance(error, OSError) and error.errno in _ERRNO_WORDS:
            return _ERRNO_WORDS[error.errno]
    for error in chain:
        if type(error).__name__ == "NameResolutionError":  # urllib3's, without importing it
            return "host not found"
        if isinstance(error, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                              requests.exceptions.InvalidSchema)):
            return "not a valid http(s) URL"
        if isinstance(error, (requests.Timeout, TimeoutError, socket.timeout)):
            return "timed out"
        if isinstance(error, ConnectionRefusedError):
            return "connection refused"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the connection broke during the answer"
    return "no answer (" + type(exc).__name__ + ")"


def cannot_reach(url: str, exc: BaseException) -> str:
    """One line: 'cannot reach URL: connection refused'."""
    return f"cannot reach {url}: {network_reason(exc)}"
