"""The supervisor: a worker thread that died or stopped beating is restarted within its budget;
a spent budget latches FAULT with a reason code, cleared when the worker runs again.

The supervisor's clock is injected and moved by the tests; the real threads here (capture,
trust sync) are waited for by what they did (a thread ended, a frame counted), never by time."""
from __future__ import annotations

import threading
from typing import Any

import pytest

from firmware.camera.base import Frame
from firmware.camera.fake import FakeCamera
from firmware.clock import FixedClock
from firmware.kiosk.capture import CaptureWorker
from firmware.kiosk.inbox import Inbox
from firmware.kiosk.supervisor import WORKER_DIED, WORKER_RESTARTS_EXHAUSTED, WORKER_STALLED, \
    Budget, Change, Supervisor
from firmware.status.board import StatusBoard
from firmware.status.collect import StatusCollector, StatusParts
from firmware.status.metrics import metrics_text
from firmware.sync.trustworker import TrustSyncWorker
from tests.kiosk_harness import NOW, ManualMonotonic, make_rig
from tests.waiting import wait_for

SILENCE_S = 10.0
# Thread deaths on purpose: pytest's report of the unhandled exception is expected here.
EXPECTED_DEATHS = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


class FakeWorker:
    """A worker without a thread: the test says whether it is alive and when it beats."""

    def __init__(self, max_silence_s: float = SILENCE_S) -> None:
        self.beats = 0
        self.max_silence_s = max_silence_s
        self.started = True
        self.thread_alive = True
        self.survives_restart = True
        self.restarts = 0

    def running(self) -> bool:
        return self.started

    def alive(self) -> bool:
        return self.thread_alive

    def restart(self) -> None:
        self.restarts += 1
        self.thread_alive = self.survives_restart

    def beat(self) -> None:
        self.beats += 1


def _kinds(changes: list[Change]) -> list[tuple[str, str | None]]:
    return [(change.kind, change.reason) for change in changes]


def test_a_dead_worker_is_restarted_at_once() -> None:
    clock = ManualMonotonic()
    supervisor = Supervisor(clock)
    worker = FakeWorker()
    supervisor.watch("uploader", worker)
    assert supervisor.check() == []
    worker.thread_alive = False
    assert _kinds(supervisor.check()) == [("restarted", WORKER_DIED)]
    assert worker.restarts == 1
    assert supervisor.check() == []  # alive again: nothing more to do
    (health,) = supervisor.health()
    assert (health.part, health.restarts, health.problem, health.faulted) == \
        ("uploader", 1, None, False)


def test_a_worker_that_stops_beating_is_restarted_after_its_allowed_silence() -> None:
    clock = ManualMonotonic()
    supervisor = Supervisor(clock)
    worker = FakeWorker()
    supervisor.watch("trust_sync", worker)
    for _ in range(3):  # a beating worker is left alone however much time passes
        clock.advance(SILENCE_S * 0.9)
        worker.beat()
        assert supervisor.check() == []
    clock.advance(SILENCE_S)  # exactly its allowance: not yet
    assert supervisor.check() == []
    clock.advance(0.01)
    assert _kinds(supervisor.check()) == [("restarted", WORKER_STALLED)]
    clock.advance(SILENCE_S * 0.9)  # the new thread has its whole allowance
    assert supervisor.check() == []


def test_a_stopped_or_unstarted_worker_is_not_watched() -> None:
    clock = ManualMonotonic()
    supervisor = Supervisor(clock)
    worker = FakeWorker()
    worker.started = False
    worker.thread_alive = False
    supervisor.watch("uploader", worker)
    clock.advance(SILENCE_S * 10)
    assert supervisor.check() == [] and worker.restarts == 0
    worker.started, worker.thread_alive = True, True  # started now: the allowance starts too
    clock.advance(SILENCE_S * 0.5)
    assert supervisor.check() == []


def test_a_worker_that_keeps_dying_spends_its_budget_then_faults_and_recovers() -> None:
    clock = ManualMonotonic()
    supervisor = Supervisor(clock)
    worker = FakeWorker()
    worker.survives_restart = False
    budget = Budget(restarts=3, window_s=100.0, backoff_initial_s=1.0, backoff_max_s=4.0)
    supervisor.watch("uploader", worker, budget)
    worker.thread_alive = False
    assert _kinds(supervisor.check()) == [("restarted", WORKER_DIED)]
    # backoff: 1 s after the first restart, then 2 s after the second
    clock.advance(0.5)
    assert supervisor.check() == []
    clock.advance(0.5)
    assert _kinds(supervisor.check()) == [("restarted", WORKER_DIED)]
    clock.advance(1.5)
    assert supervisor.check() == []
    clock.advance(0.5)
    assert _kinds(supervisor.check()) == [("restarted", WORKER_DIED)]
    clock.advance(10.0)
    (fault,) = supervisor.check()
    assert (fault.kind, fault.part, fault.reason) == ("fault", "uploader", WORKER_DIED)
    assert fault.problem is not None and fault.problem.startswith(WORKER_RESTARTS_EXHAUSTED)
    assert worker.restarts == 3
    clock.advance(10.0)
    assert supervisor.check() == []  # latched once; no restart while the budget is spent
    assert supervisor.health()[0].faulted
    # the first restart leaves the window: one more try, and this time the thread lives
    worker.survives_restart = True
    clock.advance(budget.window_s - 20.0)
    assert _kinds(supervisor.check()) == [("restarted", WORKER_DIED)]
    assert supervisor.check() == []  # alive, but not shown to work yet: still latched
    worker.beat()
    assert _kinds(supervisor.check()) == [("recovered", None)]
    assert not supervisor.health()[0].faulted


def test_a_stalled_worker_that_comes_back_by_itself_clears_its_fault() -> None:
    clock = ManualMonotonic()
    supervisor = Supervisor(clock)
    worker = FakeWorker()
    supervisor.watch("capture", worker, Budget(restarts=1, window_s=1000.0))
    clock.advance(SILENCE_S + 1)
    assert _kinds(supervisor.check()) == [("restarted", WORKER_STALLED)]
    clock.advance(SILENCE_S + 1)
    assert [c.kind for c in supervisor.check()] == ["fault"]
    worker.beat()  # the driver call returned after all
    assert _kinds(supervisor.check()) == [("recovered", None)]


def test_a_budget_must_allow_a_restart() -> None:
    with pytest.raises(ValueError):
        Budget(restarts=0)
    with pytest.raises(ValueError):
        Budget(backoff_initial_s=5.0, backoff_max_s=1.0)


class _Crash(BaseException):
    """What `except Exception` in a worker's loop does not catch: the thread dies of it."""


class _CrashingSync:
    """A trust-sync client whose first round kills the worker thread; later rounds succeed."""

    def __init__(self) -> None:
        self.calls = 0
        self.clock_skew_s = None

    def sync(self) -> list[Any]:
        self.calls += 1
        if self.calls == 1:
            raise _Crash("a bug the worker's loop does not catch")
        return []


@EXPECTED_DEATHS
def test_a_trust_sync_thread_that_raises_is_restarted() -> None:
    sync = _CrashingSync()
    worker = TrustSyncWorker(sync, FixedClock(NOW), interval_s=3600.0)
    supervisor = Supervisor(ManualMonotonic())
    supervisor.watch("trust_sync", worker)
    worker.start()
    try:
        wait_for(lambda: sync.calls == 1 and not worker.alive(), "the sync thread to die")
        assert _kinds(supervisor.check()) == [("restarted", WORKER_DIED)]
        wait_for(lambda: worker.rounds == 1, "a round of the restarted thread")
        assert worker.alive() and supervisor.check() == []
    finally:
        worker.stop()


class CrashingCamera(FakeCamera):
    """The scripted fake camera; `crash()` makes the next read kill the capture thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._crash = threading.Event()
        self.crashes = 0

    def crash(self) -> None:
        self._crash.set()

    def read(self, timeout: float) -> Frame | None:
        if self._crash.is_set():
            self._crash.clear()
            self.crashes += 1
            raise _Crash("the capture thread dies")
        return super().read(timeout)


@EXPECTED_DEATHS
def test_the_capture_thread_is_restarted_after_it_died() -> None:
    camera = CrashingCamera(fps=200)
    inbox = Inbox()
    capture = CaptureWorker(camera, inbox, frame_timeout_s=0.05, retry_s=0.05)
    supervisor = Supervisor(ManualMonotonic())
    supervisor.watch("capture", capture)
    capture.start()
    try:
        wait_for(lambda: capture.frames > 0, "a first frame")
        camera.script("ok", "corrupt", "ok")  # the script goes on across the restart
        camera.crash()
        wait_for(lambda: camera.crashes == 1 and not capture.alive(), "the capture thread to die")
        first = capture.thread
        assert _kinds(supervisor.check()) == [("restarted", WORKER_DIED)]
        assert capture.thread is not first
        wait_for(lambda: capture.frames > 0, "a frame from the new capture thread")
        assert supervisor.check() == []
    finally:
        capture.stop()


@EXPECTED_DEATHS
def test_the_kiosk_shows_a_camera_fault_while_capture_is_restarted(tmp_path: Any) -> None:
    rig = make_rig(tmp_path, camera_class=CrashingCamera)
    try:
        camera = rig.camera
        assert isinstance(camera, CrashingCamera)
        camera.crash()
        fault = rig.wait_state("FAULT")
        assert "camera" in (fault.line1 + fault.line2).lower()
        rig.wait_state("IDLE")  # the new thread's frames clear it
        assert [p for part, p in rig.kiosk.summary.faults if part == "camera"] == \
            [f"capture thread died ({WORKER_DIED}); restarted"]
    finally:
        rig.stop()


@pytest.mark.parametrize("part, blocks", [("scanner", True), ("uploader", False)])
def test_a_spent_budget_latches_fault_in_the_kiosk_and_a_working_restart_clears_it(
        tmp_path: Any, part: str, blocks: bool) -> None:
    """A local part whose budget is spent latches FAULT; a network worker (uploader, trust
    sync) is recorded on the status page while the kiosk goes on deciding (offline first)."""
    clock = ManualMonotonic()
    # capture is watched on the same clock: a frame timeout this long gives its thread an
    # allowance (3 x 100 s) that the steps below never reach, beating or not
    rig = make_rig(tmp_path, supervisor=Supervisor(clock), frame_timeout_s=100.0)
    worker = FakeWorker()
    worker.survives_restart = False
    budget = Budget(restarts=2, window_s=10.0, backoff_initial_s=1.0, backoff_max_s=1.0)
    rig.kiosk.supervisor.watch(part, worker, budget, blocks=blocks)
    try:
        worker.thread_alive = False
        wait_for(lambda: worker.restarts == 1, "the first restart")
        clock.advance(1.0)
        wait_for(lambda: worker.restarts == 2, "the second restart, after its backoff")
        if blocks:
            fault = rig.wait_state("FAULT")
            assert part in (fault.line1 + fault.line2).lower()
        else:
            wait_for(lambda: part in rig.kiosk.status.snapshot().faults, "the worker recorded")
            assert rig.kiosk.state.name == "IDLE"  # no FAULT: decisions go on
        (_, problem), = [f for f in rig.kiosk.summary.faults if f[0] == part]
        assert problem.startswith(WORKER_RESTARTS_EXHAUSTED)
        assert rig.kiosk.status.snapshot().faults[part] == problem
        worker.survives_restart = True
        clock.advance(budget.window_s)  # both restarts leave the window: one more try
        wait_for(lambda: worker.restarts == 3, "a restart once the budget allows it again")
        worker.beat()
        wait_for(lambda: part not in rig.kiosk.status.snapshot().faults, "the part cleared")
        if blocks:
            rig.wait_state("IDLE")
        assert rig.kiosk.state.name == "IDLE"
    finally:
        rig.stop()


def test_the_status_json_shows_the_supervised_workers() -> None:
    supervisor = Supervisor(ManualMonotonic())
    supervisor.watch("uploader", FakeWorker())
    supervisor.check()
    status = StatusCollector(StatusParts(StatusBoard(), supervisor=supervisor)).current()
    assert status["workers"]["uploader"] == {
        "running": True, "problem": None, "silent_s": 0.0, "max_silence_s": SILENCE_S,
        "restarts": 0, "restarts_in_window": 0, "faulted": False}
    metrics = metrics_text(lambda: status).decode()
    assert 'healthgate_kiosk_worker_restarts{worker="uploader"} 0.0' in metrics
    assert 'healthgate_kiosk_fault{part="uploader"} 0.0' in metrics
