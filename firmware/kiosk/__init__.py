"""The kiosk: its loop, states, inbox, capture thread, face stage, decision policy, supervisor."""
from __future__ import annotations

from firmware.kiosk.inbox import Inbox, Message
from firmware.kiosk.loop import MAX_TRUST_PROBLEMS_LOGGED, TRUST_PROBLEM_CHARS, DisplayPort, \
    EventSink, Kiosk, LoopProgress, ProvisioningCrashed, Summary
from firmware.kiosk.policy import Decision, FaceError, Policy, awaits_face, decide
from firmware.kiosk.states import State

__all__ = ["Decision", "DisplayPort", "EventSink", "FaceError", "Inbox", "Kiosk", "LoopProgress",
           "MAX_TRUST_PROBLEMS_LOGGED", "Message", "Policy", "ProvisioningCrashed", "State",
           "Summary", "TRUST_PROBLEM_CHARS", "awaits_face", "decide"]
