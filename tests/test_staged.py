"""The staged-verifier frame: a Deny keeps what the stages learnt; a silent failed stage never accepts."""
from __future__ import annotations

from typing import Any

from firmware.credentials.staged import Checks, Deny, run_stages


def test_deny_carries_the_code_and_what_the_stages_recorded() -> None:
    def stages(checks: Checks, state: dict[str, Any]) -> None:
        checks["prefix"] = True
        state["credential_id"], state["payload"] = "id-1", {"iss": "x"}
        checks["signature"] = False
        raise Deny("FMT_SIGNATURE_INVALID")

    verdict = run_stages("fmt", stages)
    assert (verdict.valid, verdict.format, verdict.failure) == (False, "fmt", "FMT_SIGNATURE_INVALID")
    assert verdict.credential_id == "id-1" and verdict.payload == {"iss": "x"}
    assert verdict.checks["prefix"] is True and verdict.checks["signature"] is False


def test_a_failed_stage_without_a_deny_is_an_internal_error_not_an_accept() -> None:
    def stages(checks: Checks, state: dict[str, Any]) -> None:
        checks["expiry"] = False  # a bug: no Deny raised
        state["payload"], state["credential_id"] = {}, "id"

    verdict = run_stages("fmt", stages)
    assert not verdict.valid and verdict.failure == "INTERNAL_ERROR" and verdict.credential_id is None


def test_all_stages_passing_is_valid_with_payload_id_and_extras() -> None:
    def stages(checks: Checks, state: dict[str, Any]) -> None:
        checks["signature"] = True
        state["payload"], state["credential_id"] = {"a": 1}, "id"
        state["extras"]["kid"] = "k"

    verdict = run_stages("fmt", stages)
    assert verdict.valid and verdict.failure is None
    assert (verdict.payload, verdict.credential_id, verdict.extras) == ({"a": 1}, "id", {"kid": "k"})
