"""The kiosk's states, grouped the way the loop and the display reason about them."""
from __future__ import annotations

from enum import Enum


class State(Enum):
    BOOT = "BOOT"
    IDLE = "IDLE"  # attract screen
    SCANNING = "SCANNING"  # a code or a face is in view, nothing decided yet
    VERIFYING = "VERIFYING"
    GRANTED = "GRANTED"
    DENIED = "DENIED"
    FAULT = "FAULT"  # a part failed; latched until it recovers
    MAINTENANCE = "MAINTENANCE"  # technician mode: no decisions


RESULT_STATES = frozenset({State.GRANTED, State.DENIED})
READY_STATES = frozenset({State.IDLE, State.SCANNING})  # may start a decision
NO_DECISION_STATES = frozenset({State.BOOT, State.FAULT, State.MAINTENANCE})
