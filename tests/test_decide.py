"""Every decision from the one pure policy function: a table of all verdict x face x setting cases."""
from __future__ import annotations

import itertools
from typing import Any

import pytest

from firmware.credentials import Verdict
from firmware.kiosk.facecheck import FaceOutcome
from firmware.kiosk.policy import FACE_PASS_FORMAT, FaceError, Policy, awaits_face, decide

CHECKS: dict[str, bool | None] = {"signature": True, "expiry": True}
VERDICTS = {
    "valid": Verdict(True, "dcc", None, "URN:UVCI:01:XA:1", CHECKS),
    "expired": Verdict(False, "dcc", "DCC_EXPIRED", "URN:UVCI:01:XA:1", {"expiry": False}),
    "stale trust": Verdict(False, "dcc", "TRUST_DATA_STALE", None, {}),  # refused unread
}
MATCH = FaceOutcome(True, None, similarity=0.81234, live=True, frames=6)
FACES: dict[str, FaceOutcome | FaceError | None] = {
    "none": None,
    "match": MATCH,
    "spoof": FaceOutcome(False, "FACE_SPOOF", live=False, frames=4,
                         pad={"pad_live": 0.02, "pad_model": "m"}),
    "mismatch": FaceOutcome(False, "FACE_MISMATCH", similarity=0.1, live=True, frames=5),
    "timeout": FaceOutcome(False, "NO_FACE", frames=0),  # no usable face by face.timeout_s
    "too small": FaceOutcome(False, "FACE_TOO_SMALL", frames=0),  # the last hint at the timeout
    "shared": FaceOutcome(False, "SHARED_CREDENTIAL", similarity=0.2, live=True, frames=5),
    "no reason": FaceOutcome(False, None, frames=1),  # a face check bug: still a reasoned deny
    "check error": FaceError("FACE_CHECK_ERROR"),
    "template": FaceError("FACE_TEMPLATE_UNAVAILABLE"),
}
GRANT = (True, None)
FACE_REQUIRED = (True, False)

# (verdict, face) -> (granted, reason) for a face required and for codes only. A face result
# always counts when there is one; None counts only where no face is required.
TABLE: dict[tuple[str, str], tuple[tuple[bool, str | None], tuple[bool, str | None]]] = {
    ("valid", "none"): ((False, "NO_FACE"), GRANT),
    ("valid", "match"): (GRANT, GRANT),
    ("valid", "spoof"): ((False, "FACE_SPOOF"),) * 2,
    ("valid", "mismatch"): ((False, "FACE_MISMATCH"),) * 2,
    ("valid", "timeout"): ((False, "NO_FACE"),) * 2,
    ("valid", "too small"): ((False, "FACE_TOO_SMALL"),) * 2,
    ("valid", "shared"): ((False, "SHARED_CREDENTIAL"),) * 2,
    ("valid", "no reason"): ((False, "FACE_CHECK_ERROR"),) * 2,
    ("valid", "check error"): ((False, "FACE_CHECK_ERROR"),) * 2,
    ("valid", "template"): ((False, "FACE_TEMPLATE_UNAVAILABLE"),) * 2,
    **{("expired", face): ((False, "DCC_EXPIRED"),) * 2 for face in FACES},
    **{("stale trust", face): ((False, "TRUST_DATA_STALE"),) * 2 for face in FACES},
}


def test_the_table_covers_every_combination() -> None:
    assert set(TABLE) == set(itertools.product(VERDICTS, FACES))


@pytest.mark.parametrize("face_pass", [False, True], ids=["code", "face pass"])
@pytest.mark.parametrize("face_required", FACE_REQUIRED, ids=["face required", "codes only"])
@pytest.mark.parametrize("verdict_name,face_name", sorted(TABLE))
def test_decide(verdict_name: str, face_name: str, face_required: bool, face_pass: bool) -> None:
    verdict, face = VERDICTS[verdict_name], FACES[face_name]
    expected = TABLE[verdict_name, face_name][0 if face_required else 1]
    if face_pass and face is None and expected == GRANT:
        expected = (False, "NO_FACE")  # face pass is a face: none seen never grants
    decision = decide(verdict, face, Policy(face_required=face_required), "pseudo",
                      face_pass=face_pass)
    assert (decision.granted, decision.reason) == expected
    assert decision.format == (FACE_PASS_FORMAT if face_pass else "dcc")
    assert decision.pseudonym == "pseudo" and decision.checks == dict(verdict.checks)
    assert decision.checks is not verdict.checks  # the decision owns its copy
    scores = face.as_event() if isinstance(face, FaceOutcome) else None
    assert decision.face == scores  # what was measured is logged; an error measured nothing
    assert decision.latency_ms == 0.0  # the loop fills it in


def test_granted_only_for_a_valid_credential_and_a_passing_or_unneeded_face() -> None:
    """The fail-safe rule over every combination, independent of the table above."""
    for (verdict_name, face_name), face_required, face_pass in itertools.product(
            TABLE, FACE_REQUIRED, (False, True)):
        verdict, face = VERDICTS[verdict_name], FACES[face_name]
        decision = decide(verdict, face, Policy(face_required), None, face_pass=face_pass)
        face_ok = (isinstance(face, FaceOutcome) and face.ok) \
            or (face is None and not face_required and not face_pass)
        assert decision.granted == (verdict.valid and face_ok)
        assert decision.granted == (decision.reason is None)  # every deny has its reason code


def test_the_loops_own_denials_are_decided_like_any_verdict() -> None:
    """The kiosk's errors (a software error mid-check, half a multi-code card) are verdicts
    the loop makes up; they decide the same whatever the settings."""
    for face_required in FACE_REQUIRED:
        policy = Policy(face_required)
        bug = decide(Verdict(False, "unknown", "INTERNAL_ERROR", None, {}), None, policy)
        half = decide(Verdict(False, "shc", "SHC_CHUNKS_INCOMPLETE", None, {}), None, policy)
        assert (bug.granted, bug.reason, bug.format, bug.pseudonym, bug.checks, bug.face) == \
            (False, "INTERNAL_ERROR", "unknown", None, {}, None)
        assert (half.granted, half.reason, half.format, half.face) == \
            (False, "SHC_CHUNKS_INCOMPLETE", "shc", None)


@pytest.mark.parametrize("verdict_name,face_required,waits", [
    ("valid", True, True), ("valid", False, False),
    ("expired", True, False), ("expired", False, False),
    ("stale trust", True, False), ("stale trust", False, False),
])
def test_only_a_valid_credential_waits_for_a_face(verdict_name: str, face_required: bool,
                                                   waits: bool) -> None:
    assert awaits_face(VERDICTS[verdict_name], Policy(face_required)) is waits


def test_the_face_scores_carry_no_template_or_image() -> None:
    decision: Any = decide(VERDICTS["valid"], FACES["spoof"], Policy(True))
    assert set(decision.face) == {"ok", "reason", "similarity", "live", "frames", "pad_live",
                                  "pad_model"}
    assert decide(VERDICTS["valid"], MATCH, Policy(True)).face["similarity"] == 0.812
