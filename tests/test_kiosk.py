"""The kiosk state machine on real parts: decisions, faults that latch and recover, policies."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from firmware.camera.fake import FakeCamera
from firmware.clock import FixedClock
from firmware.eventlog.outbox import Outbox
from tests.kiosk_harness import HANG_GUARD_S, NOW, make_rig, wait_until


@pytest.fixture
def rig(tmp_path: Path):  # type: ignore[no-untyped-def]
    rig = make_rig(tmp_path)
    yield rig
    rig.stop()


def _decisions(log: Any) -> list[dict[str, Any]]:
    return [e.body for e in Outbox(log).pending(limit=1000, newest_first=False) if e.kind == "decision"]


def test_valid_code_is_granted_and_logged_before_display(rig) -> None:  # type: ignore[no-untyped-def]
    rig.show_code(rig.valid_code())
    rig.wait_state("GRANTED")
    # durable before shown: the decision is in the log by the time the display has it
    bodies = _decisions(rig.eventlog)
    assert bodies and bodies[-1]["decision"] == "granted"
    assert bodies[-1]["pseudonym"] and len(bodies[-1]["pseudonym"]) == 32
    rig.next_person()
    assert ("GRANTED", "IDLE") in rig.kiosk.summary.transitions


def test_same_code_in_view_is_decided_once(rig) -> None:  # type: ignore[no-untyped-def]
    rig.show_code(rig.valid_code())
    rig.wait_state("GRANTED")
    rig.advance(rig.kiosk.config.result_hold_s)  # well inside the same-code cooldown
    rig.wait_state("IDLE")
    rig.wait_frames()  # the pass stays in view: the loop reads the same code again and again
    assert rig.kiosk.state.value == "IDLE"
    assert len(_decisions(rig.eventlog)) == 1


def test_garbage_code_is_denied_with_reason(rig) -> None:  # type: ignore[no-untyped-def]
    rig.show_code("HC1:this is not base45 at all!!")
    screen = rig.wait_state("DENIED")
    assert screen.colour == "red"
    assert _decisions(rig.eventlog)[-1]["reason"].startswith("DCC_")


def test_camera_disconnect_latches_fault_and_recovers(rig) -> None:  # type: ignore[no-untyped-def]
    rig.camera.script("disconnect")
    fault = rig.wait_state("FAULT")
    assert "camera" in (fault.line2 + fault.line1).lower()
    rig.wait_messages("camera_fault")  # capture retried the camera, which is still away
    rig.camera.reconnect()
    rig.wait_state("IDLE")
    kinds = [e.kind for e in Outbox(rig.eventlog).pending(limit=100, newest_first=False)]
    assert "fault" in kinds and "recovered" in kinds


def test_corrupt_frame_latches_camera_fault(rig) -> None:  # type: ignore[no-untyped-def]
    rig.camera.script("corrupt")
    rig.wait_state("FAULT")
    rig.wait_state("IDLE")  # next good frame clears it
    assert ("camera", ) == tuple(part for part, _ in rig.kiosk.summary.faults)[:1]


def test_silent_camera_is_a_fault(rig) -> None:  # type: ignore[no-untyped-def]
    rig.camera.script(*["silent"] * 3)
    rig.wait_state("FAULT")
    rig.wait_state("IDLE")


def test_unplugged_display_latches_and_recovers(rig) -> None:  # type: ignore[no-untyped-def]
    emulator = rig.display.emulator
    emulator.unplug()
    wait_until(lambda: rig.kiosk.state.value == "FAULT", "the display fault")
    # no decision can be shown while the display is gone, so none is taken
    rig.show_code(rig.valid_code())
    rig.wait_frames()
    assert _decisions(rig.eventlog) == []
    rig.show_nothing()
    rig.wait_frames(1)
    emulator.replug()
    rig.wait_state_retrying("IDLE")
    assert any(part == "display" for part, _ in rig.kiosk.summary.faults)


class _BrokenLog:
    """An event log whose disk is full while `full` is set; `refused` counts failed appends."""

    def __init__(self) -> None:
        self.full = False
        self.refused = 0
        self.events: list[tuple[str, dict[str, Any]]] = []

    def append(self, kind: str, body: dict[str, Any]) -> None:
        if self.full:
            self.refused += 1
            raise OSError(28, "No space left on device")
        self.events.append((kind, body))

    def pending(self, limit: int, newest_first: bool) -> list[Any]:
        return []

    def close(self) -> None:
        pass


FULL_DISK_RETRIES = 3  # retries of a full log seen to fail before the disk is freed


def test_full_disk_never_shows_an_unlogged_grant(tmp_path: Path) -> None:
    log = _BrokenLog()
    rig = make_rig(tmp_path, eventlog=log)
    try:
        log.full = True
        rig.show_code(rig.valid_code())
        rig.wait_state("FAULT")
        refused = log.refused
        for _ in range(FULL_DISK_RETRIES):  # the kiosk retries the log; the disk stays full
            rig.advance(rig.kiosk.config.fault_retry_s)
        assert log.refused >= refused + FULL_DISK_RETRIES
        assert not any(s.state == "GRANTED" for s in rig.display.emulator.screens)
        log.full = False
        rig.show_nothing()
        rig.wait_frames(1)
        rig.wait_state_retrying("IDLE")
        kinds = [kind for kind, _ in log.events]
        # the decision taken while the disk was full was kept in memory and written on recovery
        assert "decision" in kinds and kinds[-1] == "recovered"
        assert [b["decision"] for k, b in log.events if k == "decision"] == ["granted"]
    finally:
        rig.stop()


def test_a_fault_whose_event_the_log_refuses_latches_both_and_loses_nothing(
        tmp_path: Path) -> None:
    """Latching the camera's fault writes its event; the log refuses it, and the kiosk (not the
    log) latches the log's fault too. Once the log works again, the queued events are written
    in order and only the camera's fault stays latched."""
    log = _BrokenLog()
    rig = make_rig(tmp_path, eventlog=log)
    try:
        log.full = True
        rig.camera.script("disconnect")
        rig.wait_state("FAULT")
        rig.wait_messages("camera_fault")  # the loop has handled the camera's fault
        assert [part for part, _ in rig.kiosk.summary.faults] == ["camera", "eventlog"]
        assert [kind for kind, _ in log.events] == ["boot"]
        log.full = False
        rig.advance(rig.kiosk.config.fault_retry_s)  # the retry writes the queue
        wait_until(lambda: ("recovered", {"part": "eventlog"}) in log.events,
                   "the log's recovery to be written")
        assert [(kind, body["part"]) for kind, body in log.events[1:]] == [
            ("fault", "camera"), ("fault", "eventlog"), ("recovered", "eventlog")]
        assert rig.kiosk.state.value == "FAULT"  # the camera is still away
        rig.camera.reconnect()
        rig.wait_state("IDLE")
    finally:
        rig.stop()


def test_stale_trust_data_denies(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, trust_age=timedelta(hours=100))
    try:
        rig.show_code(rig.valid_code())
        screen = rig.wait_state("DENIED")
        assert "old" in screen.line2.lower()
        assert _decisions(rig.eventlog)[-1]["reason"] == "TRUST_DATA_STALE"
    finally:
        rig.stop()


def test_untrusted_clock_denies(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, clock=FixedClock(NOW, trusted=False))
    try:
        rig.show_code(rig.valid_code())
        rig.wait_state("DENIED")
        assert _decisions(rig.eventlog)[-1]["reason"] == "CLOCK_UNTRUSTED"
    finally:
        rig.stop()


def _two_chunk_card(rig) -> list[str]:  # type: ignore[no-untyped-def]
    from firmware.demo.issuers.shc import card_claims, issue_card, new_issuer

    issuer = new_issuer()
    rig.trust.shc = issuer.trust()
    texts = issue_card(issuer, card_claims(issuer.iss, NOW.timestamp() - 86400, doses=60))
    assert len(texts) == 2
    return texts


def test_multi_code_shc_is_assembled_across_frames_in_any_order(rig) -> None:  # type: ignore[no-untyped-def]
    first, second = _two_chunk_card(rig)
    rig.show_code(second, 800, 800)
    assembling = rig.wait_state("ASSEMBLING")
    assert "1 of 2" in assembling.line2
    assert rig.kiosk.status.snapshot().state == "ASSEMBLING"
    rig.show_code(first, 800, 800)
    rig.wait_state("GRANTED")
    body = _decisions(rig.eventlog)[-1]
    assert body["format"] == "shc" and body["decision"] == "granted"


def test_half_a_multi_code_card_times_out(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, multi_code_timeout_s=0.5)
    try:
        first, _ = _two_chunk_card(rig)
        rig.show_code(first, 800, 800)
        rig.wait_state("ASSEMBLING")
        rig.show_nothing()
        rig.wait_frames(1)
        rig.advance(rig.kiosk.config.multi_code_timeout_s)  # the rest of the card never comes
        rig.wait_state("DENIED")
        assert _decisions(rig.eventlog)[-1]["reason"] == "SHC_CHUNKS_INCOMPLETE"
    finally:
        rig.stop()


def test_a_card_being_assembled_outlasts_the_scan_timeout(tmp_path: Path) -> None:
    """ASSEMBLING is left by the rest of the card or by the multi-code timeout, not by the
    shorter scan timeout: the display never shows the attract screen while parts are held."""
    rig = make_rig(tmp_path, scan_timeout_s=1.0, multi_code_timeout_s=5.0)
    try:
        first, _ = _two_chunk_card(rig)
        rig.show_code(first, 800, 800)
        rig.wait_state("ASSEMBLING")
        rig.show_nothing()
        rig.wait_frames(1)
        rig.advance(rig.kiosk.config.scan_timeout_s)
        assert rig.kiosk.state.value == "ASSEMBLING"
        rig.advance(rig.kiosk.config.multi_code_timeout_s - rig.kiosk.config.scan_timeout_s)
        rig.wait_state("DENIED")
        assert [d["reason"] for d in _decisions(rig.eventlog)] == ["SHC_CHUNKS_INCOMPLETE"]
        assert ("ASSEMBLING", "VERIFYING") in rig.kiosk.summary.transitions
    finally:
        rig.stop()


def test_another_pass_ends_a_half_read_card_without_a_late_denial(tmp_path: Path) -> None:
    """The parts of a card belong to ASSEMBLING: another code read meanwhile is decided, and
    the half card is dropped with the state, so its timeout cannot deny anyone later."""
    rig = make_rig(tmp_path, multi_code_timeout_s=5.0)
    try:
        first, _ = _two_chunk_card(rig)
        rig.show_code(first, 800, 800)
        rig.wait_state("ASSEMBLING")
        rig.show_code(rig.valid_code())
        rig.wait_state("GRANTED")
        rig.next_person()
        rig.advance(rig.kiosk.config.multi_code_timeout_s)  # when the half card would expire
        rig.wait_frames()
        assert rig.kiosk.state.value == "IDLE"
        assert [d["decision"] for d in _decisions(rig.eventlog)] == ["granted"]
    finally:
        rig.stop()


def test_hung_camera_driver_is_detected_and_capture_restarted(tmp_path: Path) -> None:
    from firmware.camera.fake import HangingCamera
    from tests.kiosk_harness import make_rig

    rig = make_rig(tmp_path, camera_class=HangingCamera)
    try:
        rig.camera.hang()
        fault = rig.wait_state("FAULT")
        assert "camera" in (fault.line1 + fault.line2).lower()
        rig.camera.release()
        rig.wait_state("IDLE")
        assert any("stalled" in problem for _, problem in rig.kiosk.summary.faults)
    finally:
        rig.stop()


def test_maintenance_mode_takes_no_decisions(rig) -> None:  # type: ignore[no-untyped-def]
    from firmware.kiosk.inbox import Message

    rig.kiosk.post(Message("maintenance", True))
    rig.wait_state("MAINTENANCE")
    rig.show_code(rig.valid_code())
    rig.wait_frames()
    assert _decisions(rig.eventlog) == []
    rig.kiosk.post(Message("maintenance", False))
    rig.wait_state("IDLE")
    rig.wait_state("GRANTED")  # the pass still held up is decided once the kiosk is back


def test_a_verifier_bug_denies_that_person_and_the_kiosk_goes_on(tmp_path: Path) -> None:
    from firmware.credentials import verify

    calls = {"n": 0}

    def flaky_verifier(text, trust, at):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in a verifier")
        return verify(text, trust, at)

    rig = make_rig(tmp_path, verifier=flaky_verifier, same_code_cooldown_s=0.2)
    try:
        rig.show_code(rig.valid_code())
        rig.wait_state("DENIED")
        assert _decisions(rig.eventlog)[-1]["reason"] == "INTERNAL_ERROR"
        rig.next_person()  # the hold (0.3 s) outlasts the cooldown (0.2 s)
        rig.show_code(rig.valid_code())
        rig.wait_state("GRANTED")
    finally:
        rig.stop()


class _FlakyLog(_BrokenLog):
    """An event log whose next `failures` appends fail, then work again (a disk freed by the
    uploader's compaction, a lock released): the retry can succeed within the same tick."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    def append(self, kind: str, body: dict[str, Any]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        self.events.append((kind, body))


def test_an_eventlog_fault_that_clears_at_once_does_not_leave_fault_latched(tmp_path: Path) -> None:
    log = _FlakyLog()
    rig = make_rig(tmp_path, eventlog=log, same_code_cooldown_s=0.2)
    try:
        log.failures = 1
        rig.show_code(rig.valid_code())
        # the decision was written on the retry, so it is durable and may be shown
        rig.wait_state("GRANTED")
        rig.next_person()
        rig.show_code(rig.valid_code())  # and the kiosk goes on deciding
        rig.wait_state("GRANTED")
        kinds = [kind for kind, _ in log.events]
        assert kinds.count("decision") == 2 and "recovered" in kinds
    finally:
        rig.stop()


class _InFlightLog(_BrokenLog):
    """An event log whose next append is left in flight (EVENTLOG_BUSY with a pending handle,
    as the real log says when another thread's slow commit holds the event), and which stores
    it after all: a retry that passes the handle back gets that event, not a second copy."""

    def __init__(self) -> None:
        super().__init__()
        self.stall_next = False
        self.in_flight: dict[object, tuple[str, dict[str, Any]]] = {}
        self.retries: list[object] = []

    def append(self, kind: str, body: dict[str, Any], retry_of: object = None) -> None:
        from firmware.eventlog import EventLogError

        if retry_of is not None:
            self.retries.append(retry_of)
            return  # the commit that held it finished: stored once, already in self.events
        self.events.append((kind, body))  # the slow commit will store it...
        if self.stall_next:
            self.stall_next = False
            handle = object()
            self.in_flight[handle] = (kind, body)
            raise EventLogError("EVENTLOG_BUSY", "the commit holding this event did not finish "
                                "within 0.2 s; it may still be stored", handle)


def test_a_retry_after_an_in_flight_append_passes_the_handle_and_stores_nothing_twice(
        tmp_path: Path) -> None:
    log = _InFlightLog()
    rig = make_rig(tmp_path, eventlog=log, same_code_cooldown_s=0.2)
    try:
        log.stall_next = True
        rig.show_code(rig.valid_code())
        rig.wait_state("GRANTED")  # shown once the retry settled it as stored
        assert log.retries == list(log.in_flight)  # the retry named the attempt in flight
        assert [kind for kind, _ in log.events].count("decision") == 1
    finally:
        rig.stop()


class _ErrnoCamera(FakeCamera):
    """A driver that fails with an error other than CameraError (an errno from a USB camera,
    a library's own exception) while `broken` is set."""

    broken = False

    def read(self, timeout: float) -> Any:
        if self.broken:
            raise OSError(19, "No such device")
        return super().read(timeout)


def test_a_driver_error_of_any_kind_latches_camera_fault_and_recovers(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, camera_class=_ErrnoCamera)
    try:
        rig.camera.broken = True
        fault = rig.wait_state("FAULT")  # not a silently dead capture thread
        assert "camera" in (fault.line1 + fault.line2).lower()
        rig.camera.broken = False
        rig.wait_state("IDLE")
        rig.show_code(rig.valid_code())
        rig.wait_state("GRANTED")
    finally:
        rig.stop()


def test_maintenance_outlasts_a_fault_and_no_decision_is_taken_in_it(rig) -> None:  # type: ignore[no-untyped-def]
    from firmware.kiosk.inbox import Message

    rig.camera.script("disconnect")
    rig.wait_state("FAULT")
    rig.wait_messages("camera_fault")  # the camera stays away: its fault is latched
    assert rig.kiosk.state.value == "FAULT"
    rig.kiosk.post(Message("maintenance", True))  # the technician comes to fix the camera
    rig.wait_messages("maintenance")
    rig.show_code(rig.valid_code())
    rig.camera.reconnect()
    rig.wait_state("MAINTENANCE")  # the camera fault has cleared: back to the technician
    rig.wait_frames()  # frames with the pass keep flowing
    assert rig.kiosk.state.value == "MAINTENANCE"
    assert _decisions(rig.eventlog) == []
    rig.kiosk.post(Message("maintenance", False))
    rig.wait_state("IDLE")
    rig.wait_state("GRANTED")


def test_a_frame_taken_before_a_camera_fault_does_not_clear_it(rig) -> None:  # type: ignore[no-untyped-def]
    # The inbox hands control messages first, so the frame read just before the disconnect
    # used to be handled after the fault and "recover" a camera that was gone.
    rig.camera.script("disconnect")
    rig.wait_state("FAULT")
    rig.wait_messages("camera_fault")  # retried and still away; the old frame was handled
    kinds = [e.kind for e in Outbox(rig.eventlog).pending(limit=100, newest_first=False)]
    assert "fault" in kinds and "recovered" not in kinds
    assert ("FAULT", "IDLE") not in rig.kiosk.summary.transitions
    rig.camera.reconnect()
    rig.wait_state("IDLE")


def test_an_event_the_log_refuses_for_good_does_not_block_the_queue(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    try:
        rig.kiosk._log_event("decision", {"decision": "granted", "dob": "1990-01-01"})
        rig.show_code(rig.valid_code())
        rig.wait_state("GRANTED")  # later events are written and shown
        kinds = [e.kind for e in Outbox(rig.eventlog).pending(limit=100, newest_first=False)]
        assert "event_refused" in kinds and kinds[-1] == "decision"
        assert rig.kiosk.state.value != "FAULT"
    finally:
        rig.stop()


def test_replay_ends_even_with_a_fault_latched(tmp_path: Path) -> None:
    import threading

    from firmware.camera.files import ArraySource
    from firmware.clock import FixedClock
    from firmware.config import KioskSection
    from firmware.credentials import TrustStore
    from firmware.display import open_display, screen_for
    from firmware.kiosk import Kiosk
    from firmware.kiosk.pseudonym import Pseudonymiser
    from tests.kiosk_harness import blank

    display = open_display("emulator", ack_timeout_s=0.05, max_retries=1, heartbeat_s=0.2)
    display.emulator.unplug()  # the display is absent for the whole replay
    log = _BrokenLog()
    kiosk = Kiosk(KioskSection(fault_retry_s=0.1), ArraySource([blank()] * 5, fps=50), display,
                  log, TrustStore, FixedClock(NOW), Pseudonymiser(b"k" * 32, 86400.0), screen_for,
                  display_timeout_s=0.2)
    done = threading.Event()
    threading.Thread(target=lambda: (kiosk.run(exit_on_end_of_stream=True), done.set()),
                     daemon=True).start()
    try:
        assert done.wait(HANG_GUARD_S), "the replay never ended"
        assert kiosk.state.value == "FAULT"
    finally:
        kiosk.stop()
        display.close()


def test_a_latched_fault_is_shown_once_not_on_every_repeat(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, frame_timeout_s=0.05)
    try:
        rig.camera.script(*["silent"] * 12)  # twelve "no frame" reports in a row
        rig.wait_state("FAULT")
        rig.wait_state("IDLE")
        faults = [s for s in rig.display.emulator.screens if s.state == "FAULT"]
        assert len(faults) == 1
    finally:
        rig.stop()
