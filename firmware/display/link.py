"""Stop-and-wait link to the display over pyserial: ACK/NAK, retransmit, probe, reconnect."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import serial

from firmware.display.codec import (
    DecoderStats, Frame, MsgType, NakReason, Status, StreamDecoder, encode_frame, nak_reason,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkConfig:
    """Named timing values of the link; every wait in this module is bounded by one of them."""

    ack_timeout_s: float = 0.25  # wait for ACK/NAK/STATUS after each transmission
    max_retries: int = 3  # retransmissions of a frame after the first send
    probe_pings: int = 2  # PINGs sent after the retries, before the link is declared dead
    heartbeat_s: float = 2.0  # PING when nothing was exchanged for this long
    reconnect_interval_s: float = 1.0  # least time between two attempts to reopen the port
    baudrate: int = 115200
    read_slice_s: float = 0.02  # pyserial read timeout: how late a deadline may be noticed

    def __post_init__(self) -> None:
        for name in ("ack_timeout_s", "heartbeat_s", "read_slice_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"display link {name} must be > 0, got {getattr(self, name)!r}")
        if self.reconnect_interval_s < 0:
            raise ValueError(f"display link reconnect_interval_s must be >= 0, got {self.reconnect_interval_s!r}")
        if self.max_retries < 0 or self.probe_pings < 1:
            raise ValueError("display link needs max_retries >= 0 and probe_pings >= 1")
        if self.baudrate <= 0:
            raise ValueError(f"display link baudrate must be > 0, got {self.baudrate!r}")

    @property
    def ladder_s(self) -> float:
        """Longest time one request can take: every send and every probe waits ack_timeout_s."""
        return (1 + self.max_retries + self.probe_pings) * (self.ack_timeout_s + self.read_slice_s)


class LinkError(Exception):
    """The display did not answer as required; `reason` is a short stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class LinkDead(LinkError):
    """Nothing answers on the port (unplugged, powered off, hung): the port has been closed."""


class NotAcknowledged(LinkError):
    """The display answers pings but did not accept the frame (NAKs, lost frames, deadline)."""


@dataclass
class LinkStats:
    """Counters of the host side of the link, for logs and the bench."""

    requests: int = 0
    retransmits: int = 0
    naks: int = 0
    ack_timeouts: int = 0
    probes: int = 0
    stale_replies: int = 0
    opens: int = 0
    deaths: int = 0
    rx: DecoderStats = field(default_factory=DecoderStats)


# NAKs that a resend can cure (damage on the line, a busy display); others end the resends.
RESENDABLE_NAKS = frozenset(f"nak:{reason.name}" for reason in
                            (NakReason.BAD_CRC, NakReason.BAD_LENGTH, NakReason.BUSY))

PortOpener = Callable[..., Any]  # Any: a serial.serial_for_url-compatible factory (pyserial ships no types)


class SerialLink:
    """One display on one serial port. Thread-safe: one request at a time holds the lock."""

    def __init__(self, port: str, config: LinkConfig | None = None,
                 opener: PortOpener = serial.serial_for_url,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.port_name = port
        self.config = config or LinkConfig()
        self._opener = opener
        self._clock = clock
        self._lock = threading.RLock()
        self._port: Any = None  # Any: a pyserial port (no types)
        self._decoder = StreamDecoder()
        self._seq = 0
        self.stats = LinkStats(rx=self._decoder.stats)
        self.last_status: Status | None = None
        self.last_exchange = float("-inf")  # clock value of the last reply matched to a request
        self.last_rtt_s: float | None = None  # send -> matching reply of the last exchange

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> Status:
        """(Re)open the port and handshake with a PING; raises LinkDead if nobody answers."""
        with self._lock:
            self._close_port()
            try:
                self._port = self._opener(
                    self.port_name, baudrate=self.config.baudrate, timeout=self.config.read_slice_s,
                    write_timeout=self.config.ack_timeout_s, exclusive=True)
                self._port.reset_input_buffer()
                self._port.write(b"\x00")  # end any partial frame the display holds
            except (serial.SerialException, OSError, ValueError) as error:
                self._close_port()
                raise LinkDead("port_unavailable", f"cannot open {self.port_name}: {error}") from error
            self._decoder.reset()
            self.stats.opens += 1
            return self.ping()

    def close(self) -> None:
        with self._lock:
            self._close_port()

    def ping(self, deadline: float | None = None) -> Status:
        """Heartbeat: PING (resent up to max_retries times) until STATUS; LinkDead if unanswered."""
        with self._lock:
            reply = self._request(MsgType.PING, b"", MsgType.STATUS, deadline)
            status = Status.decode(reply.payload) if len(reply.payload) == Status.SIZE else None
            if status is None:
                raise NotAcknowledged("bad_status", f"STATUS payload of {len(reply.payload)} bytes")
            self.last_status = status
            return status

    def request(self, msg_type: MsgType, payload: bytes, deadline: float | None = None) -> int:
        """Send one request that the display ACKs (SHOW, BRIGHTNESS, RESET), walking the ladder.

        Returns the seq the display acknowledged.
        """
        with self._lock:
            return self._request(msg_type, payload, MsgType.ACK, deadline).seq

    # -- the escalation ladder -------------------------------------------------------------

    def _request(self, msg_type: MsgType, payload: bytes, want: MsgType,
                 deadline: float | None) -> Frame:
        if self._port is None:
            raise LinkDead("closed", f"{self.port_name} is not open")
        self.stats.requests += 1
        frame = Frame(type=msg_type, seq=self._next_seq(), payload=payload)
        last_problem = "no reply"
        answered = False  # a NAK (or a probe's STATUS) proves the display is alive even if it refuses everything
        # Rungs 1 and 2: send, then resend up to max_retries times on timeout or NAK.
        for attempt in range(1 + self.config.max_retries):
            if self._past(deadline):
                raise NotAcknowledged("deadline", f"{msg_type.name} seq {frame.seq}: {last_problem}")
            if attempt:
                self.stats.retransmits += 1
            reply, last_problem = self._exchange(frame, want, deadline)
            if reply is not None:
                return reply
            answered = answered or last_problem.startswith("nak:")
            if last_problem.startswith("nak:") and last_problem not in RESENDABLE_NAKS:
                break  # the display understood the frame and refuses it: resending cannot help
        # Rung 3: probe with PINGs to tell a refusing display from a dead link (a PING that
        # just failed needs no probe: the probe would be the same PING again).
        probes = 0 if msg_type == MsgType.PING else self.config.probe_pings
        for _ in range(probes):
            if answered:
                break
            if self._past(deadline):
                raise NotAcknowledged("deadline", f"{msg_type.name} seq {frame.seq}: {last_problem}")
            self.stats.probes += 1
            probe = Frame(type=MsgType.PING, seq=self._next_seq())
            reply, problem = self._exchange(probe, MsgType.STATUS, deadline)
            answered = reply is not None or problem.startswith("nak:")
        if answered:
            raise NotAcknowledged("not_acknowledged",
                                  f"{msg_type.name} seq {frame.seq}: {last_problem}; the display answers")
        # Rung 4: nothing answers at all.
        probed = f" and {probes} probe PINGs" if probes else ""
        self._declare_dead(f"{msg_type.name} sent {self.config.max_retries + 1} times{probed}, "
                           f"no answer ({last_problem})")
        raise AssertionError("unreachable")

    def _exchange(self, frame: Frame, want: MsgType, deadline: float | None) -> tuple[Frame | None, str]:
        """Send once and wait up to ack_timeout_s for the matching reply; (reply, problem)."""
        self._drain_stale()
        self._write(encode_frame(frame))
        sent = self._clock()
        end = sent + self.config.ack_timeout_s
        if deadline is not None:
            end = min(end, deadline)
        errors_before = self._decoder.stats.errors
        while self._clock() < end:
            replies = self._read_frames()
            if not replies and self._decoder.stats.errors > errors_before:
                # A damaged frame while one request is outstanding is almost surely its reply:
                # resend now rather than wait out the ACK timeout.
                return None, "damaged reply"
            for reply in replies:
                if reply.type == want and reply.seq == frame.seq:
                    self.last_exchange = self._clock()
                    self.last_rtt_s = self.last_exchange - sent  # for the status page
                    return reply, ""
                if reply.type == MsgType.NAK:
                    reason = nak_reason(reply.payload)
                    # A NAK of a damaged frame carries seq 0: with one frame outstanding it is ours.
                    if reply.seq in (frame.seq, 0):
                        self.stats.naks += 1
                        self.last_exchange = self._clock()  # the display is alive
                        return None, f"nak:{reason.name if reason else 'UNKNOWN'}"
                self.stats.stale_replies += 1  # an old reply of a retransmitted or timed-out frame
        self.stats.ack_timeouts += 1
        return None, "timeout"

    # -- port I/O: any port error means the link is dead --------------------------------------

    def _write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except serial.SerialTimeoutException:
            return  # the output buffer is full because the display stopped reading: an unanswered send
        except (serial.SerialException, OSError) as error:
            self._declare_dead(f"write failed: {error}")

    def _read_frames(self) -> list[Frame]:
        try:
            waiting = self._port.in_waiting
            data = self._port.read(max(1, waiting))  # returns after read_slice_s at the latest
        except (serial.SerialException, OSError) as error:
            self._declare_dead(f"read failed: {error}")
        return self._decoder.feed(data)

    def _drain_stale(self) -> None:
        """Decode (and so count) whatever arrived between requests; none of it is an answer now."""
        try:
            waiting = self._port.in_waiting
            data = self._port.read(waiting) if waiting else b""
        except (serial.SerialException, OSError) as error:
            self._declare_dead(f"read failed: {error}")
        self.stats.stale_replies += len(self._decoder.feed(data))

    def _declare_dead(self, why: str) -> None:
        self.stats.deaths += 1
        log.warning("display link on %s is dead: %s", self.port_name, why)
        self._close_port()
        raise LinkDead("link_dead", why)

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass  # closing a vanished device can fail; it is closed either way

    def _next_seq(self) -> int:
        # 1..255 then 1 again: 0 is reserved for "no request" (NAK of a damaged frame, blank).
        self._seq = self._seq % 255 + 1
        return self._seq

    def _past(self, deadline: float | None) -> bool:
        return deadline is not None and self._clock() >= deadline
