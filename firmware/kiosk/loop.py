"""The kiosk state machine: one loop owns the state; capture and other threads post to its inbox."""
from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TypeVar, Union, cast

from firmware import __version__ as FIRMWARE_VERSION
from firmware.camera.base import Frame, FrameSource
from firmware.kiosk.capture import CaptureWorker
from firmware.clock import Clock
from firmware.codes import FrameScanner
from firmware.config import KioskSection
from firmware.credentials import TrustStore, Verdict, detect_format, verify
from firmware.credentials.reasons import message_for
from firmware.kiosk.facestage import FaceStage, FaceStep
from firmware.credentials.shc.chunks import COMPLETE, INCOMPLETE as CHUNKS_INCOMPLETE, INVALID, \
    PENDING, ChunkAssembler
from firmware.kiosk.inbox import Inbox, Message
from firmware.kiosk.policy import Decision, FaceResult, Policy, awaits_face, decide, trust_problem
from firmware.kiosk.pseudonym import Pseudonymiser
from firmware.kiosk.states import CHECKING_STATES, READY_STATES, RESULT_STATES, State
from firmware.kiosk.supervisor import WORKER_DIED, Change, Supervisor
from firmware.protocol.decoded import Decoded
from firmware.protocol.events import FAULT_PROBLEM_MAX_CHARS
from firmware.setup.code import is_provision_code
from firmware.setup.firstboot import FirstBootSetup
from firmware.status.board import StatusBoard

if TYPE_CHECKING:
    from firmware.display.screen import Screen
    from firmware.setup.provisioner import ProvisionOutcome

log = logging.getLogger(__name__)
T = TypeVar("T")

TICK_S = 0.05  # the loop wakes at least this often to run its timers
CLOCK_REMEMBER_S = 60.0
# A `trust_problems` event carries at most this many problems of this many ASCII characters
# each, so that even with every quote escaped the body stays inside the event log's 8 KiB
# (MAX_EVENT_BODY_BYTES); `count` says how many there were in all.
MAX_TRUST_PROBLEMS_LOGGED = 15
TRUST_PROBLEM_CHARS = 200
# event-log refusals that no retry can cure (the event itself is wrong, not the disk)
REFUSED_FOR_GOOD = frozenset({"EVENTLOG_BAD_BODY", "EVENTLOG_FORBIDDEN_FIELD", "EVENTLOG_BAD_KIND"})


class DisplayPort(Protocol):
    """What the kiosk needs of the display driver (firmware.display.driver.Display)."""

    def show(self, screen: Screen, timeout: float) -> None: ...

    def poll(self) -> None: ...


class EventSink(Protocol):
    """What the kiosk needs of the event log (firmware.eventlog.EventLog)."""

    def append(self, kind: str, body: dict[str, Decoded], retry_of: object = None) -> object: ...


@dataclass
class LoopProgress:
    """What the loop has got through, for whoever must wait for it (tests, a watchdog): each
    field only grows, and is updated once an iteration is complete, so a reader that sees a
    count also sees everything that iteration did (a decision logged, a state shown)."""

    iterations: int = 0  # loop iterations finished (a message handled, or a wake-up, + timers)
    messages: Counter[str] = field(default_factory=Counter)  # handled messages by kind
    last_frame_seq: int = -1  # the camera's sequence number of the last frame handled


SUMMARY_KEEP = 1000  # newest decisions, transitions and faults a run's summary keeps


def _newest() -> deque[T]:
    return deque(maxlen=SUMMARY_KEEP)


@dataclass
class Summary:
    """What a run did, for the demo, tests and benchmarks. No personal data. Bounded, since a
    kiosk runs for months: the lists keep the newest SUMMARY_KEEP entries, the counts the run."""

    decisions: deque[Decision] = field(default_factory=_newest)
    transitions: deque[tuple[str, str]] = field(default_factory=_newest)
    faults: deque[tuple[str, str]] = field(default_factory=_newest)
    decided: int = 0
    granted: int = 0
    dropped_frames: int = 0

    def add_decision(self, decision: Decision) -> None:
        self.decisions.append(decision)
        self.decided += 1
        self.granted += decision.granted


@dataclass(frozen=True)
class ProvisioningCrashed:
    """The outcome of a provisioning job that raised (a bug): refused."""

    ok: bool = False
    reason: str = "PROVISION_FAILED"
    trust_updated: int = 0  # as ProvisionOutcome's: nothing was updated
    trust_wanted: int = 0


# a provisioning job's outcome, as its message carries it (None: no bundle, nothing tried)
Outcome = Union["ProvisionOutcome", ProvisioningCrashed, None]


class Kiosk:
    """Owns the state. `run()` loops until `stop()` (or the end of a finite camera source)."""

    def __init__(self, config: KioskSection, camera: FrameSource, display: DisplayPort,
                 eventlog: EventSink, trust: Callable[[], TrustStore], clock: Clock,
                 pseudonymiser: Pseudonymiser, screen_for: Callable[..., Screen],
                 display_timeout_s: float = 1.0,
                 verifier: Callable[..., Verdict] = verify,
                 faces: FaceStage | None = None,
                 after_append: Callable[[], None] | None = None,
                 watchdog: Callable[[], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 status: StatusBoard | None = None,
                 provisioner: Callable[[str], ProvisionOutcome] | None = None,
                 bundle_source: Callable[[], ProvisionOutcome | None] | None = None,
                 setup: FirstBootSetup | None = None,
                 supervisor: Supervisor | None = None) -> None:
        self.config = config
        self.status = status or StatusBoard()  # the snapshot the status page reads
        self.state = State.BOOT
        self.summary = Summary()
        self._display = display
        self._eventlog = eventlog
        self._trust = trust
        self._trust_seen: TrustStore | None = None  # the store whose problems were last logged
        self._clock = clock
        self._pseudonymiser = pseudonymiser
        self._screen_for = screen_for
        self._display_timeout_s = display_timeout_s
        self._verifier = verifier
        # The clock of the loop's own timers (result hold, scan and multi-code timeouts, the
        # same-code cooldown, fault retries): tests inject one they advance instead of sleeping.
        # Latency and the supervisor stay on time.monotonic: they measure real threads, and a
        # test's big clock step would look like silence of a thread that is working.
        self._monotonic = monotonic
        self.progress = LoopProgress()
        self._inbox = Inbox(frame_capacity=1)  # only the newest frame: a stale one is worthless
        self._capture = CaptureWorker(camera, self._inbox, config.frame_timeout_s,
                                      config.fault_retry_s)
        # Watches the capture thread, and whatever other workers the app adds (uploader,
        # trust sync); called on every tick, so a hung loop leaves it to systemd's watchdog.
        self.supervisor = supervisor or Supervisor()
        self.supervisor.watch("capture", self._capture)
        self._watchdog = watchdog
        self._stop = threading.Event()
        self._faults: dict[str, str] = {}  # part -> what is wrong; FAULT while non-empty
        self._degraded: dict[str, str] = {}  # network workers down: recorded, not blocking
        # events waiting for the disk, each with the pending handle of an attempt that may be stored
        self._unlogged: list[tuple[str, dict[str, Decoded], object]] = []
        self._state_since = monotonic()
        self._last_code: tuple[str, float] | None = None  # (text, when) for the cooldown
        self._last_retry = 0.0
        self._last_remembered = -CLOCK_REMEMBER_S  # persist once at start
        self._end_of_stream = False
        self._maintenance = False  # technician mode: entered on request, left only on request
        self._scanner = FrameScanner(config.aztec_every_n_frames)
        self._faces = faces  # None when faces are not checked
        self._policy = Policy(face_required=faces is not None)
        self._after_append = after_append  # e.g. wake the uploader: live decisions go first
        self._chunks = ChunkAssembler(config.multi_code_timeout_s, monotonic)
        # Provisioning codes are acted on in maintenance mode only, by a worker thread
        # (firmware/setup/provisioner.py); its outcome comes back as a "provisioned" message.
        self._provisioner = provisioner
        self._bundle_source = bundle_source  # on entering maintenance: a USB bundle, or None
        self._provisioning: threading.Thread | None = None
        # First boot (firmware/setup/firstboot.py): maintenance mode by itself until provisioned,
        # then IDLE once the outcome has been shown for result_hold_s.
        self._setup = setup
        self._setup_done_at: float | None = None

    # ---- public -----------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def post(self, message: Message) -> None:
        self._inbox.post(message)

    def warm_up(self) -> None:
        """Load the trust store now, before the service is declared ready: later reloads run in
        the background, but the first one has no previous store to fall back on."""
        try:
            self._trust()
        except Exception:  # the loop meets the same error at the first decision and denies
            log.exception("loading trust data at start-up failed")

    def run(self, exit_on_end_of_stream: bool = False) -> Summary:
        self._show(State.BOOT)
        self._log_event("boot", {"firmware": FIRMWARE_VERSION})  # shown on the fleet dashboard
        self._capture.start()
        if self._setup is not None:
            self._begin_setup()
        else:
            self._transition(State.IDLE)
        try:
            while not self._stop.is_set():
                message = self._inbox.get(TICK_S)
                try:
                    if message is not None:
                        self._handle(message)
                    self._on_tick()
                except Exception as exc:  # a bug costs one person a decision, never the kiosk
                    # type and place only: an exception's message may carry credential data
                    where = traceback.extract_tb(exc.__traceback__)[-1]
                    log.error("kiosk loop error %s at %s:%d (state %s)", type(exc).__name__,
                              where.filename, where.lineno, self.state.value)
                    self._after_bug()
                self._note_progress(message)
                if exit_on_end_of_stream and self._replay_done():
                    break
        finally:
            self._capture.stop()
            self.summary.dropped_frames = self._inbox.dropped_frames
        return self.summary

    def _note_progress(self, message: Message | None) -> None:
        if message is not None:
            self.progress.messages[message.kind] += 1
            if message.kind == "frame":
                self.progress.last_frame_seq = cast(Frame, message.data).seq
        self.progress.iterations += 1

    # ---- the one transition function ------------------------------------------------
    def _transition(self, new: State, reason: str | None = None, detail: str | None = None,
                    show: bool = True) -> None:
        old = self.state
        if old != new:
            why = reason or detail
            log.info("state from %s to %s%s", old.value, new.value, f" ({why})" if why else "")
            self.summary.transitions.append((old.value, new.value))
            self._state_since = self._monotonic()
            self.status.on_state(new.value, reason or detail)
            self._leave(old)
        self.state = new
        if show:
            self._show(new, reason, detail)

    def _leave(self, old: State) -> None:
        """What a state holds ends with it: a face wait or a half-read card left other than by
        its decision (a fault, maintenance, another code) is dropped; the person starts again."""
        if old == State.AWAIT_FACE:
            self._face_stage().cancel()
        elif old == State.ASSEMBLING:
            self._chunks.reset()

    def _show(self, state: State, reason: str | None = None, detail: str | None = None) -> bool:
        text = message_for(reason) if reason else None
        if state == State.IDLE and detail is None:
            detail = self._trust_age_text()
        elif state == State.MAINTENANCE and detail is None and self._setup is not None:
            detail = self._setup.prompt()
        try:
            self._display.show(self._screen_for(state.value, text, detail), self._display_timeout_s)
        except Exception as exc:  # DisplayError or a broken port: latch, never crash
            self._latch("display", str(exc) or type(exc).__name__)
            return False
        return True

    def _replay_done(self) -> bool:
        """A finite input has ended and nobody is mid-check. A fault latched at the end (say, an
        absent display) must not keep a replay running for ever; what it could not write is
        reported, since nothing will retry it after exit."""
        if not self._end_of_stream or self.state not in (State.IDLE, State.FAULT):
            return False
        if self._unlogged:
            log.error("replay ends with %d event(s) the log could not take", len(self._unlogged))
        return True

    def _after_bug(self) -> None:
        """A person caught mid-check by a software error is denied (never left hanging, never
        accepted); the kiosk goes on."""
        if self._faces is not None:
            self._faces.cancel()
        if self.state not in CHECKING_STATES:
            return
        try:
            self._record(self._decide(Verdict(False, "unknown", "INTERNAL_ERROR", None, {})),
                         time.monotonic())
        except Exception:
            log.exception("could not record the error decision")
            self._transition(State.IDLE, show=False)

    # ---- faults ---------------------------------------------------------------------------
    def _latch(self, part: str, problem: str) -> None:
        """Latch a part's fault: its `fault` event is written before FAULT is shown."""
        new = self._note_fault(part, problem)
        if new:
            self._write_log_and_show()
        self._show_fault(part, new)

    def _clear(self, part: str) -> None:
        if not self._note_clear(part):
            return
        self._write_log_and_show()
        self._show_cleared()

    def _note_fault(self, part: str, problem: str) -> bool:
        """Record a fault and queue its event, without I/O; True when it is new."""
        new = part not in self._faults
        self._faults[part] = problem
        if new:
            self._record_fault(part, problem)
        return new

    def _record_fault(self, part: str, problem: str) -> None:
        """A fault's traces: the log line, the summary, the status page and its event."""
        log.warning("fault: %s: %s", part, problem)
        self.summary.faults.append((part, problem))
        self.status.on_fault(part, problem)
        self._unlogged.append(("fault", {"part": part, "problem": problem[:FAULT_PROBLEM_MAX_CHARS]}, None))

    def _record_clear(self, part: str) -> None:
        log.info("fault cleared: %s", part)
        self.status.on_clear(part)
        self._unlogged.append(("recovered", {"part": part}, None))

    def _note_clear(self, part: str) -> bool:
        """Record that a part works again and queue its event, without I/O; False when it had
        no fault."""
        if self._faults.pop(part, None) is None:
            return False
        self._record_clear(part)
        return True

    def _show_fault(self, part: str, new: bool) -> None:
        # a broken display cannot show its own fault; the log and the state still record it.
        # A fault that is already latched and shown is not re-sent on every tick.
        shown_already = not new and self.state == State.FAULT
        self._transition(State.FAULT, None, part, show=part != "display" and not shown_already)

    def _show_cleared(self) -> None:
        if not self._faults:
            self._transition(State.MAINTENANCE if self._maintenance else State.IDLE)
        else:
            self._show(State.FAULT, None, next(iter(self._faults)))

    def _retry_faults(self) -> None:
        now = self._monotonic()
        if now - self._last_retry < self.config.fault_retry_s:
            return
        self._last_retry = now
        if "display" in self._faults:
            try:
                self._display.poll()
            except Exception as exc:
                self._faults["display"] = str(exc) or type(exc).__name__
            else:
                self._clear("display")
        if "eventlog" in self._faults:
            self._write_log_and_show()

    # ---- events ---------------------------------------------------------------------------
    def _log_event(self, kind: str, body: dict[str, Decoded]) -> bool:
        """Append durably; on failure keep the event in memory and latch FAULT(eventlog)."""
        self._unlogged.append((kind, body, None))
        return self._write_log_and_show()

    def _write_log_and_show(self) -> bool:
        """Write the queue, then show what the log's answer changed (its fault latched or
        cleared). True when every queued event is written."""
        was_faulty = "eventlog" in self._faults
        written = self._write_log()
        if "eventlog" in self._faults:
            self._show_fault("eventlog", new=not was_faulty)
        elif was_faulty:
            self._show_cleared()
        return written

    def _write_log(self) -> bool:
        """Write the queued events and note FAULT(eventlog) from the log's answer: the log
        only reports its failure, this notes it, and the callers above show it, so latching
        never runs through the log back into itself. True when all are written."""
        failure = self._flush_unlogged()
        if failure is not None and "eventlog" not in self._faults:
            # a new failure: note it and write the queue once more at once, its `fault` event
            # included, so a passing hiccup (a busy commit) costs no retry period
            self._note_fault("eventlog", str(failure) or type(failure).__name__)
            failure = self._flush_unlogged()
        if failure is None and "eventlog" in self._faults:
            self._note_clear("eventlog")  # queues its `recovered` event: write that too
            failure = self._flush_unlogged()
        if failure is not None:
            self._note_fault("eventlog", str(failure) or type(failure).__name__)
        return failure is None

    def _flush_unlogged(self) -> Exception | None:
        """Write the queued events in order; returns the failure that stopped it (None when
        none is left). It reports and never latches."""
        while self._unlogged:
            kind, body, pending = self._unlogged[0]
            try:
                if pending is None:
                    self._eventlog.append(kind, body)
                else:  # an earlier attempt may be stored: the log settles it, no duplicate
                    self._eventlog.append(kind, body, retry_of=pending)
            except Exception as exc:  # disk full, quota, I/O: never silent, never a crash
                code = getattr(exc, "code", None)
                if code in REFUSED_FOR_GOOD:
                    # refused for good (a field the log must never hold): retrying cannot help,
                    # so record that it was refused instead of blocking every later event
                    log.error("event %s refused by the log: %s", kind, exc)
                    self._unlogged[0] = ("event_refused", {"kind": kind, "reason": code}, None)
                    continue
                self._unlogged[0] = (kind, body, getattr(exc, "pending", None) or pending)
                if "eventlog" not in self._faults:
                    log.error("event log failed: %s", exc)
                return exc
            self._unlogged.pop(0)
            if self._after_append is not None:
                self._after_append()
        return None

    # ---- message handling ----------------------------------------------------------------
    def _handle(self, message: Message) -> None:
        if message.kind == "frame":
            frame = cast(Frame, message.data)
            self._clear("camera")
            if self.state == State.AWAIT_FACE:
                self._face_step(self._face_stage().on_frame(frame.image))
            elif self.state in READY_STATES:
                self._on_frame(frame)
            elif self.state == State.MAINTENANCE:
                self._on_maintenance_frame(frame)
        elif message.kind == "provisioned":
            self._on_provisioned(cast(Outcome, message.data))
        elif message.kind == "camera_fault":
            # frames still queued were read before the fault (control messages come first):
            # they must not clear it
            self._inbox.discard_frames()
            self._latch("camera", str(message.data))
        elif message.kind == "end_of_stream":
            self._end_of_stream = True
        elif message.kind == "maintenance":
            self._set_maintenance(bool(message.data))
        elif message.kind == "stop":
            self._stop.set()

    def _set_maintenance(self, on: bool) -> None:
        """Technician mode lasts until it is left: no check runs on inside it (the person being
        checked starts again), a fault that clears returns to it, and leaving it while a fault
        is latched keeps FAULT (no decision is taken while a part is broken)."""
        if not on and self._setup is not None:
            log.warning("first-boot setup waits for a provisioning code; it is not left on request")
            return
        was, self._maintenance = self._maintenance, on
        if not on and not was:
            return  # not in technician mode: nothing to leave
        if on:
            if self._faces is not None:
                self._faces.cancel()
            self._chunks.reset()
        if not self._faults:
            self._transition(State.MAINTENANCE if on else State.IDLE)
        if on and not was and self._bundle_source is not None and self._provisioning is None:
            self._start_provisioning(self._bundle_source)  # a bundle on the USB stick, if any

    # ---- provisioning codes (maintenance mode) ---------------------------------------------
    def _on_maintenance_frame(self, frame: Frame) -> None:
        """A technician shows a provisioning code: hand it to the worker, one at a time."""
        if self._provisioner is None or self._provisioning is not None:
            return
        try:
            reads = self._scanner.scan(frame.image)
        except Exception as exc:  # a corrupt frame is the camera's fault, not a crash
            self._latch("camera", f"unreadable frame: {exc}")
            return
        text = next((read.text for read in reads if read.text and is_provision_code(read.text)),
                    None)
        now = self._monotonic()
        if text is None or (self._last_code is not None and self._last_code[0] == text
                            and now - self._last_code[1] < self.config.same_code_cooldown_s):
            return
        self._last_code = (text, now)
        self._show(State.MAINTENANCE, None, "Setting up...")
        provisioner = self._provisioner
        self._start_provisioning(lambda: provisioner(text))

    def _start_provisioning(self, job: Callable[[], ProvisionOutcome | None]) -> None:
        """Run `job` in a worker; its outcome (None: nothing to do) comes back as a message."""
        def work() -> None:
            try:
                outcome: Outcome = job()
            except Exception:  # fail safe: refused, and the next code can be tried
                log.exception("provisioning raised")
                outcome = ProvisioningCrashed()
            self.post(Message("provisioned", outcome))

        self._provisioning = threading.Thread(target=work, name="provisioning", daemon=True)
        self._provisioning.start()

    def _on_provisioned(self, outcome: Outcome) -> None:
        """Show the outcome in words; the technician leaves maintenance mode when done (a
        first-boot setup that succeeded leaves by itself, after the hold)."""
        self._provisioning = None
        if outcome is None:
            return  # no bundle in the USB folder: nothing was tried
        ok = bool(getattr(outcome, "ok", False))
        reason = getattr(outcome, "reason", "PROVISION_FAILED")
        self._log_event("provisioning", {"ok": ok, "reason": reason})
        if ok:
            detail = f"Done: trust {outcome.trust_updated}/{outcome.trust_wanted}"
        else:
            detail = message_for(reason)
        if ok and self._setup is not None:
            restart, self._setup = self._setup.finish(), None
            if restart is None:  # into normal operation after the hold
                self._setup_done_at = self._monotonic()
            detail = restart or detail
        if self.state == State.MAINTENANCE:
            self._show(State.MAINTENANCE, None, detail)

    def _begin_setup(self) -> None:
        """First boot: technician mode by itself, waiting for a code (or a USB bundle)."""
        assert self._setup is not None
        log.info("first-boot setup: waiting for a provisioning code")
        self._maintenance = True
        self._transition(State.MAINTENANCE, None, self._setup.prompt())
        if self._bundle_source is not None:
            self._start_provisioning(self._bundle_source)

    def _end_setup_when_shown(self) -> None:
        """Provisioned at first boot: once the outcome was shown for result_hold_s, IDLE."""
        if self._setup_done_at is not None \
                and self._monotonic() - self._setup_done_at >= self.config.result_hold_s:
            self._setup_done_at = None
            self._set_maintenance(False)

    def _remember_time(self) -> None:
        """Persist the time seen now and then, so a reboot with a lost clock is caught."""
        now = self._monotonic()
        if now - self._last_remembered < CLOCK_REMEMBER_S:
            return
        self._last_remembered = now
        try:
            self._clock.remember()
        except OSError as exc:  # a full disk shows up in the event log fault; this is advisory
            log.warning("could not persist the last seen time: %s", exc)

    def _supervise(self) -> None:
        """The supervisor's view of the worker threads, acted on: a spent restart budget
        latches FAULT for that part, a worker that runs again clears it."""
        for change in self.supervisor.check():
            self._on_supervisor(change)

    def _on_supervisor(self, change: Change) -> None:
        if change.kind == "fault" and change.blocks:
            self._latch(change.part, change.problem or change.part)
        elif change.kind == "fault":  # recorded, not latched: decisions go on
            if change.part not in self._degraded:
                self._degraded[change.part] = change.problem or change.part
                self._record_fault(change.part, self._degraded[change.part])
                self._write_log_and_show()
        elif change.kind == "recovered" and self._degraded.pop(change.part, None) is not None:
            self._record_clear(change.part)
            self._write_log_and_show()
        elif change.kind == "recovered":
            self._clear(change.part)
        elif change.part == "capture":
            # no frame comes while capture is being replaced: the camera shows FAULT until
            # frames flow again (a stuck driver may stay stuck for the new thread too)
            what = "thread died" if change.reason == WORKER_DIED else \
                "stalled in the camera driver"
            self._latch("camera", f"capture {what} ({change.reason}); restarted")

    def _on_tick(self) -> None:
        if self._watchdog is not None:
            self._watchdog()  # the loop is alive: tell the service manager
        self.status.tick(self._capture.frames, self._inbox.dropped_frames)
        self._supervise()
        self._remember_time()
        self._end_setup_when_shown()
        if self._faults:  # the state is FAULT: entering it ended any face wait or half card
            self._retry_faults()
            return
        if self.state == State.AWAIT_FACE:
            self._face_step(self._face_stage().expire_if_due())
            if self.state == State.AWAIT_FACE:
                self._poll_display()  # the heartbeat goes on while a face is awaited
            return
        if self.state == State.ASSEMBLING:  # left by the rest of the card, or by this timeout
            if self._chunks.check_timeout() is not None:  # half a multi-code card, then nothing
                self._transition(State.VERIFYING)
                self._record(self._decide(Verdict(False, "shc", CHUNKS_INCOMPLETE, None, {})),
                             time.monotonic())
            else:
                self._poll_display()
            return
        elapsed = self._monotonic() - self._state_since
        if self.state in RESULT_STATES and elapsed >= self.config.result_hold_s:
            self._inbox.discard_frames()  # frames taken while the result was shown are stale
            self._transition(State.IDLE)
        elif self.state == State.SCANNING and elapsed >= self.config.scan_timeout_s:
            self._transition(State.IDLE)
        else:
            self._poll_display()

    def _poll_display(self) -> None:
        try:
            self._display.poll()
        except Exception as exc:
            self._latch("display", str(exc) or type(exc).__name__)

    def _on_frame(self, frame: Frame) -> None:
        try:
            reads = self._scanner.scan(frame.image)
        except Exception as exc:  # a corrupt frame is the camera's fault, not a crash
            self._latch("camera", f"unreadable frame: {exc}")
            return
        texts = [read.text for read in reads if read.text]
        if not texts:
            if reads and self.state == State.IDLE:
                self._transition(State.SCANNING)  # a code is in view but not readable yet
            elif not reads and self._faces is not None and self._faces.face_pass:
                self._face_pass(frame)
            return
        text = self._assemble(texts)
        if text is None:
            return  # part of a multi-code card: wait for the rest
        now = self._monotonic()
        if self._last_code is not None and self._last_code[0] == text \
                and now - self._last_code[1] < self.config.same_code_cooldown_s:
            return  # the same pass is still in front of the camera
        self._last_code = (text, now)
        self._transition(State.VERIFYING)
        verdict = self._verify(text)
        pseudonym = self._pseudonym(verdict)
        if not awaits_face(verdict, self._policy):
            self._record(self._decide(verdict, pseudonym=pseudonym), frame.captured_at)
            return
        # A valid credential: now the face in front of the camera must belong with it.
        faces = self._face_stage()
        faces.begin(verdict, pseudonym, frame.captured_at)
        self._face_step(faces.on_frame(frame.image))

    def _assemble(self, texts: list[str]) -> str | None:
        """The whole credential text, assembling multi-code SMART Health Cards across frames
        (their chunks may stand side by side in one frame or come one after another)."""
        before = self._chunks.pending
        result = None
        for text in texts:
            result = self._chunks.feed(text)
            if result.status == COMPLETE or result.status == INVALID:
                return result.text if result.text is not None else text
        if result is not None and result.status == PENDING:
            if self.state != State.ASSEMBLING or self._chunks.pending != before:  # news to show
                self._transition(State.ASSEMBLING, None,
                                 f"Part {result.received} of {result.total} read")
        return None

    def _verify(self, text: str) -> Verdict:
        """The credential's verdict; a refusal without looking when trust data or the clock
        forbid any check."""
        if is_provision_code(text):  # a setup code is never a pass, whatever the trust data
            return Verdict(False, "provisioning", "PROVISION_CODE_NOT_CREDENTIAL", None, {})
        trust, now, problem = self._trust_now()
        if problem is not None:
            return Verdict(False, detect_format(text), problem, None, {})
        return self._verifier(text, trust, now)

    def _trust_now(self) -> tuple[TrustStore, datetime, str | None]:
        """The trust data, the time, and a reason to refuse every credential (or None)."""
        trust = self._current_trust()
        now = self._clock.now()
        return trust, now, trust_problem(self._clock.trust_problem(), trust.updated_at, now,
                                         self.config.max_trust_age_h)

    def _current_trust(self) -> TrustStore:
        """The trust store; the first time a newly loaded one is seen, its problems are logged."""
        trust = self._trust()
        if trust is not self._trust_seen:
            self._trust_seen = trust
            self._log_trust_problems(trust)
        return trust

    def _log_trust_problems(self, trust: TrustStore) -> None:
        """One `trust_problems` event per loaded store that skipped data (docs/eventlog.md)."""
        problems = [p.encode("ascii", "replace").decode()[:TRUST_PROBLEM_CHARS]
                    for p in getattr(trust, "problems", None) or []]
        if problems:
            self._log_event("trust_problems", {"count": len(problems),
                                               "problems": problems[:MAX_TRUST_PROBLEMS_LOGGED]})

    def _pseudonym(self, verdict: Verdict) -> str | None:
        if not verdict.credential_id:
            return None
        return self._pseudonymiser.pseudonym(verdict.credential_id, self._clock.now().timestamp())

    # ---- faces ----------------------------------------------------------------------------
    def _face_stage(self) -> FaceStage:
        assert self._faces is not None  # AWAIT_FACE is only entered with face checks on
        return self._faces

    def _face_step(self, step: FaceStep) -> None:
        """Record the decision once the face wait concluded; else enter or stay in AWAIT_FACE,
        showing a new hint ("Please step closer", "Please face the camera"...)."""
        if step.concluded is not None:
            done = step.concluded
            self._record(self._decide(done.verdict, done.face, done.pseudonym), done.captured_at)
        elif step.hint_changed or self.state != State.AWAIT_FACE:
            self._transition(State.AWAIT_FACE, show=False)  # a hint is no reason to log
            self._show(State.AWAIT_FACE, step.hint)

    def _face_pass(self, frame: Frame) -> None:
        """An opted-in member recognised 1:N without a code: their cached record decides."""
        assert self._faces is not None
        found = self._faces.on_idle_frame(frame.image)
        if found is None:
            return  # gathering frames, or a stranger: no decision, nothing recorded
        member, outcome = found
        now = self._monotonic()
        key = "face-pass:" + member
        if self._last_code is not None and self._last_code[0] == key \
                and now - self._last_code[1] < self.config.same_code_cooldown_s:
            return  # the member is still standing there
        self._last_code = (key, now)
        self._transition(State.VERIFYING)
        verdict = self._verify_member(member)
        self._record(self._decide(verdict, outcome, self._pseudonym(verdict), face_pass=True),
                     frame.captured_at)

    def _verify_member(self, member: str) -> Verdict:
        """The member's cached status record decides (member ids are "<issuer>/<subject hex>")."""
        from firmware.credentials.status import verify_member

        issuer, _, subject_hex = member.rpartition("/")
        try:
            subject = bytes.fromhex(subject_hex)
        except ValueError:
            return Verdict(False, "status", "FACE_PASS_MEMBER_INVALID", None, {})
        trust, now, problem = self._trust_now()
        if problem is not None or not issuer:
            return Verdict(False, "status", problem or "FACE_PASS_MEMBER_INVALID", None, {})
        return verify_member(issuer, subject, trust, now)

    def _decide(self, verdict: Verdict, face: FaceResult | None = None,
                pseudonym: str | None = None, face_pass: bool = False) -> Decision:
        """Every decision of the loop comes from the one pure policy function."""
        return decide(verdict, face, self._policy, pseudonym, face_pass=face_pass)

    def _record(self, decision: Decision, captured_at: float) -> None:
        body = {"decision": "granted" if decision.granted else "denied",
                "reason": decision.reason, "format": decision.format,
                "pseudonym": decision.pseudonym, "checks": decision.checks}
        if decision.face is not None:
            body["face"] = decision.face
        # The event is durable before the display shows what it records.
        if not self._log_event("decision", body):
            return
        state = State.GRANTED if decision.granted else State.DENIED
        self.status.on_decision(decision.granted, decision.reason)
        self._transition(state, decision.reason)
        latency_ms = (time.monotonic() - captured_at) * 1000.0
        self.summary.add_decision(replace(decision, latency_ms=latency_ms))

    def _trust_age_text(self) -> str | None:
        try:
            updated = self._current_trust().updated_at
        except Exception:
            return None
        if updated is None:
            return "No trust data"
        hours = (self._clock.now() - updated).total_seconds() / 3600.0
        return f"Data {hours:.0f}h old" if hours >= 1 else "Data up to date"
