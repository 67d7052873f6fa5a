"""Waiting for progress: the one polling helper of the test suite (see docs/testing.md).

A test waits for something the code under test observably did (a counter, a screen, a queued
item, a server that answers), never for a stretch of time. `wait_for` polls a condition until
it holds. Its hang guard only stops a hung test: a slow, loaded machine never reaches it, and
nothing is timed against it. `poll_s` only sets how often the condition is looked at again;
no outcome depends on it."""
from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import requests

# A wait not over by then is a hang, not a slow machine; nothing is timed against it.
HANG_GUARD_S = 60.0
POLL_S = 0.01  # how often a waiting test looks again; results never depend on it

T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], what: str | Callable[[], str],
             guard_s: float = HANG_GUARD_S, poll_s: float = POLL_S) -> T:
    """Call `condition` until it returns something truthy, and return that.

    Past the hang guard: AssertionError naming `what` (a string, or a callable that describes
    the state at that moment). `poll_s=0` suits a condition that itself makes progress (steps
    a clock) or blocks for a while."""
    deadline = time.monotonic() + guard_s
    pause = threading.Event()  # never set: an interruptible pause between looks
    while not (value := condition()):
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"gave up waiting for {described} (hang guard {guard_s:g} s)")
        if poll_s > 0:
            pause.wait(poll_s)
    return value


def wait_for_healthz(url: str, process: subprocess.Popen[bytes] | None = None,
                     guard_s: float = HANG_GUARD_S) -> requests.Response:
    """Until the server at `url` answers GET /healthz (any status); returns that answer.

    Fails at once, with what the process printed if it is piped, when `process` has exited:
    a server that died will never answer."""

    def answer() -> tuple[requests.Response] | None:
        try:  # in a tuple: a Response is falsy when its status is an error, but it did answer
            return (requests.get(url + "/healthz", timeout=2),)
        except requests.ConnectionError:
            if process is not None and process.poll() is not None:
                output = process.stdout.read().decode(errors="replace") if process.stdout else ""
                raise AssertionError(f"the server at {url} exited with {process.returncode} "
                                     f"before it answered: {output}") from None
            return None

    # poll_s: a refused connect returns at once; look again soon, it costs nothing
    return wait_for(answer, f"the server at {url} to answer /healthz", guard_s, poll_s=0.05)[0]
