"""The kiosk's states, grouped the way the loop and the display reason about them."""
from __future__ import annotations

from enum import Enum


class State(Enum):
    BOOT = "BOOT"
    IDLE = "IDLE"  # attract screen
    SCANNING = "SCANNING"  # a code or a face is in view, nothing decided yet
    ASSEMBLING = "ASSEMBLING"  # some parts of a multi-code card read; the rest must follow in time
    VERIFYING = "VERIFYING"
    AWAIT_FACE = "AWAIT_FACE"  # a valid credential waits for its holder's face
    GRANTED = "GRANTED"
    DENIED = "DENIED"
    FAULT = "FAULT"  # a part failed; latched until it recovers
    MAINTENANCE = "MAINTENANCE"  # technician mode: no decisions


RESULT_STATES = frozenset({State.GRANTED, State.DENIED})
READY_STATES = frozenset({State.IDLE, State.SCANNING, State.ASSEMBLING})  # may start a decision
# A person is mid-check: a software error here denies them (never leaves them hanging).
CHECKING_STATES = frozenset({State.SCANNING, State.ASSEMBLING, State.VERIFYING, State.AWAIT_FACE})
NO_DECISION_STATES = frozenset({State.BOOT, State.FAULT, State.MAINTENANCE})
