"""The frame of the staged verifiers (NZCP, SHC, status): stop at the first Deny, never accept a failed stage."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict

from firmware.credentials.cose_sign1 import CoseError, Sign1, decode_sign1
from firmware.credentials.verdict import Verdict, empty_checks
from firmware.protocol.decoded import Decoded

Checks = dict[str, bool | None]


class StageState(TypedDict, total=False):
    """What the stages leave for the verdict (see `run_stages`)."""

    payload: dict[str, Decoded]  # the credential's decoded claims: personal data
    credential_id: str
    extras: dict[str, Decoded]  # Verdict.extras


Stages = Callable[[Checks, StageState], None]


class Deny(Exception):
    """Stops a staged verification; `code` is the reason code of the failing stage."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def cose_stage(raw: bytes, checks: Checks, reason_prefix: str) -> Sign1:
    """The tagged COSE_Sign1 of a CBOR format; a bomb or bound is `<prefix>_CBOR_REFUSED`, any
    other malformation `<prefix>_COSE_INVALID` (the stage's further checks are the format's)."""
    try:
        return decode_sign1(raw, require_tag=True)
    except CoseError as exc:
        checks["cose"] = False
        refused = exc.code == "refused"  # value sharing or a bound passed
        raise Deny(f"{reason_prefix}_CBOR_REFUSED" if refused
                   else f"{reason_prefix}_COSE_INVALID") from None


def run_stages(fmt: str, stages: Stages) -> Verdict:
    """Run `stages(checks, state)` and turn what it left into the Verdict of format `fmt`.

    The stages record each outcome in `checks` and fill `state`: "payload", "credential_id" and
    "extras" (a dict from the start). A Deny is a refusal with its code, carrying what `state`
    holds so far; a stage recorded False without a Deny is a bug, reported as INTERNAL_ERROR.
    """
    checks = empty_checks()
    state: StageState = {"extras": {}}
    try:
        stages(checks, state)
    except Deny as deny:
        return Verdict(False, fmt, deny.code, state.get("payload"), checks,
                       credential_id=state.get("credential_id"), extras=state["extras"])
    if any(outcome is False for outcome in checks.values()):
        # Belt and braces: a stage that failed without stopping the pipeline is never an accept.
        return Verdict(False, fmt, "INTERNAL_ERROR", state.get("payload"), checks)
    return Verdict(True, fmt, None, state["payload"], checks,
                   credential_id=state["credential_id"], extras=state["extras"])
