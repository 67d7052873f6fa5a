"""The kiosk's face half on real TFLite inference and real LFW faces: 1:1, sharing, absence."""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from firmware.camera.files import load_rgb
from firmware.credentials.status import StatusTrust
from firmware.credentials.status.code import new_subject_pseudonym
from firmware.demo.issuers.status import issue_status_code
from firmware.credentials.status.records import StatusIssuerKey, StatusRecord, StatusRecordCache
from firmware.eventlog.outbox import Outbox
from firmware.demo.issuers.status import sign_status_record
from firmware.kiosk.facecheck import FaceCheck
from firmware.vision.liveness import LivenessConfig
from firmware.vision.record_template import TemplateKeyring, seal_template
from tests.kiosk_harness import NOW, make_rig, wait_until

W, H = 960, 540


@pytest.fixture(scope="module")
def pipeline() -> Any:
    from firmware.vision import FacePipeline

    return FacePipeline()


@pytest.fixture(scope="module")
def people(shared_data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two photos of one person and one of another, from LFW View 1."""
    images = shared_data / "lfw-view1" / "images"
    same = images / "Colin_Powell"
    other = images / "Jean_Chretien"  # a frontal photo, well inside the pose gates
    if not same.is_dir() or not other.is_dir():
        pytest.skip("LFW people used by this test are missing")
    first, second = sorted(same.glob("*.jpg"))[:2]
    return load_rgb(first), load_rgb(second), load_rgb(sorted(other.glob("*.jpg"))[0])


def _decisions(log: Any) -> list[dict[str, Any]]:
    return [e.body for e in Outbox(log).pending(limit=1000, newest_first=False) if e.kind == "decision"]


def _await_face(rig: Any) -> Any:
    """Until the kiosk waits for the holder's face: the AWAIT_FACE screen (with the first
    frame's hint) is shown once the wait and its deadline have begun, so a clock step after it
    counts towards the face timeout."""
    return rig.wait_state("AWAIT_FACE")


def test_valid_pass_needs_a_face_and_one_pass_cannot_serve_two_faces(
        tmp_path: Path, pipeline: Any, people: tuple[np.ndarray, ...]) -> None:
    person, _, stranger = people
    rig = make_rig(tmp_path, face=FaceCheck(pipeline, liveness="off"), same_code_cooldown_s=0.2,
                   result_hold_s=0.2)
    try:
        text = rig.valid_code()
        rig.show_code(text, W, H)  # nobody in view
        waiting = _await_face(rig)
        assert (waiting.line1, waiting.line2) == ("Please look at the", "camera")  # the hint
        assert rig.kiosk.status.snapshot().state == "AWAIT_FACE"
        rig.advance(2.0)  # face.timeout_s passes without a face
        assert rig.wait_state("DENIED").state == "DENIED"
        assert _decisions(rig.eventlog)[-1]["reason"] == "NO_FACE"
        rig.next_person()  # the hold (0.2 s) lets the same pass be read again
        rig.show_code(text, W, H, face=person)
        rig.wait_state("GRANTED")
        granted = _decisions(rig.eventlog)[-1]
        assert granted["face"]["ok"] and granted["face"]["frames"] >= 1
        rig.next_person()
        rig.show_code(text, W, H, face=stranger)  # the same pass, another face, in the window
        rig.wait_state("DENIED")
        assert _decisions(rig.eventlog)[-1]["reason"] == "SHARED_CREDENTIAL"
    finally:
        rig.stop()


def test_status_code_is_matched_one_to_one_against_its_records_template(
        tmp_path: Path, pipeline: Any, people: tuple[np.ndarray, ...]) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    person, same_person_again, stranger = people
    enrolled = pipeline.embed(person)
    assert enrolled is not None
    site_key = os.urandom(32)
    keyring = TemplateKeyring(tmp_path / "template-keys")
    keyring.install("site", site_key)
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    keys = {b"k1": StatusIssuerKey("shop", issuer_key.public_key())}
    cache = StatusRecordCache(keys)
    subject, stamp = new_subject_pseudonym(), int(NOW.timestamp())
    record = StatusRecord("shop", subject, "green", stamp - 60, stamp + 3600, face_key_id="site",
                          face_template=seal_template(enrolled, site_key, "site"))
    cache.apply_sync([sign_status_record(record, issuer_key, kid=b"k1")], synced_at=NOW)
    code = issue_status_code(issuer_key, kid=b"k1", issuer="shop", subject=subject,
                             issued_at=stamp - 10)
    rig = make_rig(tmp_path, face=FaceCheck(pipeline, liveness="off"), open_template=keyring.open,
                   same_code_cooldown_s=0.2, result_hold_s=0.2)
    rig.trust.status = StatusTrust(keys=keys, cache=cache, max_cache_age=timedelta(hours=1))
    try:
        rig.show_code(code, W, H, face=stranger)
        rig.wait_state("DENIED")
        denied = _decisions(rig.eventlog)[-1]
        assert denied["reason"] == "FACE_MISMATCH" and denied["face"]["similarity"] < pipeline.threshold
        rig.next_person()
        rig.show_code(code, W, H, face=same_person_again)  # another photo of the enrolled person
        rig.wait_state("GRANTED")
        granted = _decisions(rig.eventlog)[-1]
        assert granted["format"] == "status" and granted["face"]["similarity"] >= pipeline.threshold
    finally:
        rig.stop()


def test_record_template_that_cannot_be_opened_denies(tmp_path: Path, pipeline: Any,
                                                      people: tuple[np.ndarray, ...]) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    person = people[0]
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    keys = {b"k1": StatusIssuerKey("shop", issuer_key.public_key())}
    cache = StatusRecordCache(keys)
    subject, stamp = new_subject_pseudonym(), int(NOW.timestamp())
    sealed = seal_template(np.ones(128), os.urandom(32), "missing-key")
    record = StatusRecord("shop", subject, "green", stamp - 60, stamp + 3600,
                          face_key_id="missing-key", face_template=sealed)
    cache.apply_sync([sign_status_record(record, issuer_key, kid=b"k1")], synced_at=NOW)
    rig = make_rig(tmp_path, face=FaceCheck(pipeline, liveness="off"),
                   open_template=TemplateKeyring(tmp_path / "none").open)
    rig.trust.status = StatusTrust(keys=keys, cache=cache, max_cache_age=timedelta(hours=1))
    try:
        rig.show_code(issue_status_code(issuer_key, kid=b"k1", issuer="shop", subject=subject,
                                        issued_at=stamp - 10), W, H, face=person)
        rig.wait_state("DENIED")
        assert _decisions(rig.eventlog)[-1]["reason"] == "FACE_TEMPLATE_UNAVAILABLE"
    finally:
        rig.stop()


def _sensor_noise(frame: np.ndarray, seed: int) -> np.ndarray:
    """A camera's per-frame noise (without it, upscaled JPEG blocks look periodic, like a screen)."""
    rng = np.random.default_rng(seed)
    return np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8)


def _face_pass_rig(tmp_path: Path, pipeline: Any, member_face: np.ndarray) -> Any:
    """A kiosk with one opted-in member whose green record is cached."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from firmware.vision.matcher import Gallery

    issuer_key = ec.generate_private_key(ec.SECP256R1())
    keys = {b"k1": StatusIssuerKey("shop", issuer_key.public_key())}
    cache = StatusRecordCache(keys)
    subject, stamp = new_subject_pseudonym(), int(NOW.timestamp())
    record = StatusRecord("shop", subject, "green", stamp - 60, stamp + 3600)
    cache.apply_sync([sign_status_record(record, issuer_key, kid=b"k1")], synced_at=NOW)
    template = pipeline.embed(member_face)
    gallery = Gallery(dim=template.size)
    gallery.add(f"shop/{subject.hex()}", template)
    from firmware.vision.pad import PresentationAttackDetector

    # face pass always requires the PAD model
    rig = make_rig(tmp_path, face=FaceCheck(pipeline, liveness="advisory",
                                            pad=PresentationAttackDetector()), gallery=gallery,
                   same_code_cooldown_s=60.0)
    rig.trust.status = StatusTrust(keys=keys, cache=cache, max_cache_age=timedelta(hours=1))
    return rig


def test_face_pass_admits_a_live_enrolled_member_without_a_code(
        tmp_path: Path, pipeline: Any, people: tuple[np.ndarray, ...]) -> None:
    from firmware.demo.frames import frame_with_face
    from tests.test_liveness import close_eyes

    member = people[0]
    rig = _face_pass_rig(tmp_path, pipeline, member)
    try:
        shut = close_eyes(member)  # a blink: the cue a photo held up cannot give
        rig.show_frames([_sensor_noise(frame_with_face(f, W, H), seed) for seed, f in
                         enumerate([member] * 3 + [shut] * 2 + [member] * 3)])
        rig.wait_state("GRANTED")
        body = _decisions(rig.eventlog)[-1]
        assert body["format"] == "face_pass" and body["face"]["live"] is True
        assert body["face"]["similarity"] >= pipeline.threshold
    finally:
        rig.stop()


def test_face_pass_refuses_a_still_photo_and_ignores_strangers(
        tmp_path: Path, pipeline: Any, people: tuple[np.ndarray, ...]) -> None:
    from firmware.demo.frames import frame_with_face

    member, _, stranger = people
    rig = _face_pass_rig(tmp_path, pipeline, member)
    try:
        rig.show_frames([_sensor_noise(frame_with_face(stranger, W, H), 9)])
        # a passer-by who never enrolled: enough frames for two attempts at identifying them,
        # and no decision, nothing recorded
        rig.wait_frames(2 * LivenessConfig.min_frames)
        assert _decisions(rig.eventlog) == []
        rig.show_frames([_sensor_noise(frame_with_face(member, W, H), seed)
                         for seed in range(4)])  # a still photo: no liveness cue
        rig.wait_state("DENIED")
        body = _decisions(rig.eventlog)[-1]
        assert body["format"] == "face_pass" and body["face"]["live"] is False
        assert body["reason"] in ("NO_LIVENESS_CUES", "PLANAR_MOTION", "SCREEN_PATTERN",
                                  "FACE_SPOOF")
    finally:
        rig.stop()


def test_maintenance_ends_the_wait_for_a_face_without_a_decision(tmp_path: Path,
                                                                  pipeline: Any) -> None:
    from firmware.kiosk.inbox import Message

    rig = make_rig(tmp_path, face=FaceCheck(pipeline, liveness="off"), face_timeout_s=2.0)
    try:
        rig.show_code(rig.valid_code(), W, H)  # nobody in view: the kiosk waits for a face
        _await_face(rig)
        rig.kiosk.post(Message("maintenance", True))
        rig.wait_state("MAINTENANCE")
        rig.advance(2.0)  # past face.timeout_s
        rig.wait_frames()  # and frames with the pass keep coming
        assert rig.kiosk.state.value == "MAINTENANCE"
        assert _decisions(rig.eventlog) == []
    finally:
        rig.stop()


def test_a_display_lost_while_a_face_is_awaited_is_a_fault_and_no_decision(
        tmp_path: Path, pipeline: Any) -> None:
    rig = make_rig(tmp_path, face=FaceCheck(pipeline, liveness="off"), face_timeout_s=2.0)
    try:
        rig.show_code(rig.valid_code(), W, H)  # nobody in view: the kiosk waits for a face
        _await_face(rig)  # with its hint: nothing more is shown until the timeout
        rig.display.emulator.unplug()
        # the heartbeat, polled while the face is awaited, finds the display gone...
        wait_until(lambda: rig.kiosk.state.value == "FAULT", "the display fault")
        rig.advance(2.0)  # ...and then face.timeout_s passes
        assert rig.kiosk.state.value == "FAULT"
        assert _decisions(rig.eventlog) == []  # nothing decided that could not be shown
    finally:
        rig.display.emulator.replug()
        rig.stop()


def test_the_face_wait_returns_hints_and_then_its_outcome_not_a_decision(
        pipeline: Any, people: tuple[np.ndarray, ...]) -> None:
    """The face stage reports what it saw; the loop decides (firmware.kiosk.policy.decide)."""
    from firmware.credentials import Verdict
    from firmware.demo.frames import background, frame_with_code
    from firmware.kiosk.facecheck import FaceOutcome
    from firmware.kiosk.facestage import FaceStage
    from firmware.kiosk.policy import Policy, decide
    from tests.kiosk_harness import ManualMonotonic

    clock = ManualMonotonic()
    stage = FaceStage(FaceCheck(pipeline, liveness="advisory", clock=clock), 2.0, clock=clock)
    verdict = Verdict(True, "dcc", None, "URN:UVCI:01:XA:42", {"signature": True})
    stage.begin(verdict, "pseudo", captured_at=5.0)
    nobody, holder = background(W, H), frame_with_code("HC1:x", W, H, face=people[0])
    first = stage.on_frame(nobody)
    assert (first.concluded, first.hint, first.hint_changed) == (None, "NO_FACE", True)
    assert stage.on_frame(nobody) == type(first)()  # the same hint is not sent again
    back = stage.on_frame(holder)  # liveness wants more frames: the hint clears meanwhile
    assert (back.concluded, back.hint, back.hint_changed) == (None, None, True)
    assert stage.expire_if_due().concluded is None  # not before face.timeout_s
    clock.advance(2.0)
    done = stage.expire_if_due().concluded
    assert done is not None and stage.expire_if_due().concluded is None  # concluded once
    assert (done.verdict, done.pseudonym, done.captured_at) == (verdict, "pseudo", 5.0)
    assert isinstance(done.face, FaceOutcome) and done.face.ok and done.face.frames == 1
    decision = decide(done.verdict, done.face, Policy(face_required=True), done.pseudonym)
    assert decision.granted and decision.face == done.face.as_event()


class _FailingFaceCheck(FaceCheck):
    """The real face check, with one injected failure: `observe` (a vision error the face stage
    catches) or `conclude` (a software error only the loop catches)."""

    fail_in = ""

    def observe(self, rgb: np.ndarray) -> Any:
        if self.fail_in == "observe":
            raise RuntimeError("injected vision failure")
        return super().observe(rgb)

    def conclude(self, *args: Any, **kwargs: Any) -> Any:
        if self.fail_in == "conclude":
            raise RuntimeError("injected software error")
        return super().conclude(*args, **kwargs)


def test_errors_while_a_face_is_awaited_deny_with_their_reason(
        tmp_path: Path, pipeline: Any, people: tuple[np.ndarray, ...]) -> None:
    check = _FailingFaceCheck(pipeline, liveness="off")
    rig = make_rig(tmp_path, face=check, same_code_cooldown_s=0.2, result_hold_s=0.2)
    try:
        rig.show_code(rig.valid_code(), W, H)  # nobody in view: the kiosk waits for a face
        _await_face(rig)
        check.fail_in = "observe"
        rig.wait_state("DENIED")
        error = _decisions(rig.eventlog)[-1]
        assert (error["decision"], error["reason"]) == ("denied", "FACE_CHECK_ERROR")
        assert "face" not in error  # nothing was measured
        check.fail_in = "conclude"
        rig.next_person()
        rig.show_code(rig.valid_code(), W, H)
        _await_face(rig)
        rig.advance(2.0)  # face.timeout_s: concluding raises inside the loop
        rig.wait_state("DENIED")
        assert _decisions(rig.eventlog)[-1]["reason"] == "INTERNAL_ERROR"
        check.fail_in = ""
        rig.next_person()
        rig.show_code(rig.valid_code(), W, H, face=people[0])  # and the kiosk goes on
        rig.wait_state("GRANTED")
    finally:
        rig.stop()


def test_face_pass_bar_comes_from_the_model_unless_configured(pipeline: Any) -> None:
    """The 1:N threshold belongs to the model (face_models.json): a number calibrated for one
    embedder means nothing for another. A mode the manifest did not calibrate has none, and
    face pass then refuses to start rather than guess."""
    import json

    from firmware.kiosk.facestage import FaceStage
    from firmware.vision import FacePipeline
    from firmware.vision.matcher import Gallery
    from firmware.vision.modeldir import default_model_dir

    manifest = json.loads((default_model_dir() / "face_models.json").read_text())["embedder"]
    assert pipeline.face_pass_threshold == manifest["face_pass_threshold"] > pipeline.threshold
    members = Gallery(dim=128)
    members.add("shop/0001", np.ones(128, np.float32))
    stage = FaceStage(FaceCheck(pipeline), 5.0, gallery=members)
    assert stage.face_pass_threshold == manifest["face_pass_threshold"]
    assert FaceStage(FaceCheck(pipeline), 5.0, gallery=members,
                     face_pass_threshold=0.99).face_pass_threshold == 0.99
    other_mode = FacePipeline(mirror_average=not pipeline.mirror_average)
    assert other_mode.face_pass_threshold is None
    with pytest.raises(ValueError, match="face_pass_threshold"):
        FaceStage(FaceCheck(other_mode), 5.0, gallery=members)
