"""The display's microcontroller side on a real pty: decodes frames, replies, scripts faults."""
from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import sys
import tempfile
import threading
import time
import tty
from dataclasses import dataclass, replace
from typing import Callable, TextIO

from firmware.display.codec import (
    Frame, FrameError, MsgType, NakReason, Status, StreamDecoder, encode_frame, nak_payload,
)
from firmware.display.screen import BLANK, COLUMNS, Screen

log = logging.getLogger(__name__)

# What the controller shows by itself when the host has gone quiet (see host_timeout_s).
NO_HOST_SCREEN = Screen(state="NO_HOST", colour="amber", line1="Out of service", line2="No signal")

_ANSI_BACKGROUND = {"green": "42;30", "red": "41;97", "amber": "43;30", "blue": "44;97",
                    "white": "47;30", "off": "40;90"}


@dataclass(frozen=True)
class FaultScript:
    """Faults the emulator plays; counters count down by one per affected frame."""

    silent: bool = False  # read and discard everything, answer nothing (a hung controller)
    frozen: bool = False  # stop reading: bytes pile up in the pty, handled late on thawing
    nak_frames: int = 0  # refuse the next N requests with `nak_reason`
    nak_reason: NakReason = NakReason.BUSY
    corrupt_replies: int = 0  # flip one bit in each of the next N replies
    drop_replies: int = 0  # act on the next N requests but send no reply (reply lost on the line)
    reply_delay_s: float = 0.0  # wait this long before each reply (a slow controller)


def render_screen(screen: Screen, colour: bool = True, note: str = "") -> str:
    """The 2 x 20 display as a framed box; ANSI background colour when `colour` is true."""
    top = f"+{'-' * (COLUMNS + 2)}+ {screen.colour.upper()} {screen.state}{note}"
    lines = [top]
    for text in (screen.line1, screen.line2):
        cell = f" {text:<{COLUMNS}} "
        lines.append(f"|\x1b[{_ANSI_BACKGROUND[screen.colour]}m{cell}\x1b[0m|" if colour else f"|{cell}|")
    lines.append(f"+{'-' * (COLUMNS + 2)}+")
    return "\n".join(lines)


class DisplayEmulator:
    """A complete fake display on a pty. start() returns the port path to give to the host.

    With `link_path` the port is a symlink (like /dev/serial/by-id/...) that keeps its name when
    the emulator is unplugged and plugged in again on a new pty, so the host can reconnect.
    """

    def __init__(self, link_path: str | None = None, render: bool = False,
                 stream: TextIO | None = None, colour: bool = True, poll_s: float = 0.02,
                 host_timeout_s: float | None = None, in_place: bool = False,
                 blank_after_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.link_path = link_path
        self.in_place = in_place  # redraw over the previous box (a terminal of its own)
        self._drawn = False
        # Fail safe of the controller: with no valid frame from the host for this long, replace
        # whatever is lit (perhaps a green "Welcome" of a kiosk that crashed) by NO_HOST_SCREEN.
        self.host_timeout_s = host_timeout_s
        # The real display then switches its LEDs off after blank_after_s without a frame
        # (heartbeats included): a dark panel, not a stale one. `clock` is injectable for tests.
        self.blank_after_s = blank_after_s
        # What each rendered screen is labelled with (the demo: the scenario in front of it)
        self.caption: Callable[[], str] | None = None
        self._clock = clock
        self._last_host_frame = clock()
        self.render = render
        self.colour = colour
        self._stream = stream
        self._poll_s = poll_s
        self._lock = threading.Condition()
        self._faults = FaultScript()
        self._screens: list[Screen] = []
        self._current = BLANK
        self._shown_seq = 0
        self._last_applied: tuple[int, Screen] | None = None
        self._brightness = 255
        self._blank = True
        self._decoder = StreamDecoder()
        self._master: int | None = None
        self._slave: int | None = None  # kept open so the master never sees a hang-up
        self._pts_path = ""
        self._plugged = False
        self._want_plugged = True
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.frames_received = 0
        self.replies_sent = 0
        self.pings = 0

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> str:
        """Open the pty and serve it from a thread; returns the port path."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        self._open_pty()
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="display-emulator", daemon=True)
        self._thread.start()
        return self.port

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving and close the pty (the host then sees the device vanish)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._close_pty()

    def __enter__(self) -> DisplayEmulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> str:
        """The path the host opens: the symlink when there is one, else the pty itself."""
        return self.link_path or self._pts_path

    @property
    def pts_path(self) -> str:
        """The current /dev/pts/N behind the port ("" while unplugged before any start)."""
        return self._pts_path

    # -- scripted faults ----------------------------------------------------------------------

    def script(self, **faults: object) -> None:
        """Set fault fields (see FaultScript), e.g. script(nak_frames=2) or script(silent=True)."""
        with self._lock:
            self._faults = replace(self._faults, **faults)  # type: ignore[arg-type]

    @property
    def faults(self) -> FaultScript:
        with self._lock:
            return self._faults

    def go_silent(self, silent: bool = True) -> None:
        self.script(silent=silent)

    def unplug(self, timeout: float = 2.0) -> None:
        """Close the pty, as when the USB cable is pulled; the display loses power."""
        self._set_plugged(False, timeout)

    def replug(self, timeout: float = 2.0) -> None:
        """A new pty behind the same link path; the display comes up blank, as after power-on."""
        self._set_plugged(True, timeout)

    def reboot(self) -> None:
        """Power-cycle the controller without dropping the port: the screen comes up blank."""
        with self._lock:
            self._reset_display()

    # -- observations -------------------------------------------------------------------------

    @property
    def screens(self) -> list[Screen]:
        """Every screen lit, in order: each SHOW acted on (a retransmitted duplicate once) and the
        controller's own NO_HOST_SCREEN fallback."""
        with self._lock:
            return list(self._screens)

    @property
    def current(self) -> Screen:
        with self._lock:
            return self._current

    @property
    def rx_errors(self) -> int:
        return self._decoder.stats.errors

    def wait_for(self, predicate: Callable[[Screen], bool], timeout: float, start: int = 0) -> Screen:
        """First screen from index `start` of the history that satisfies `predicate`.

        Raises TimeoutError when none arrives within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for screen in self._screens[start:]:
                    if predicate(screen):
                        return screen
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching screen within {timeout} s; shown: {self._screens[start:]}")
                self._lock.wait(remaining)

    def render_text(self) -> str:
        with self._lock:
            return render_screen(self._current, self.colour)

    # -- the controller loop --------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._apply_plug_request()
            if self._master is None:
                self._stop.wait(self._poll_s)
                continue
            self.check_host_timeout()
            if self.faults.frozen:
                self._stop.wait(self._poll_s)
                continue
            readable, _, _ = select.select([self._master], [], [], self._poll_s)
            if not readable or self.faults.frozen:  # a freeze set while waiting counts already
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError:
                self._stop.wait(self._poll_s)  # no reader on the other side yet
                continue
            if self.faults.silent:
                continue  # a hung controller: bytes go nowhere
            for item in self._decoder.feed_with_errors(data):
                try:
                    self._handle(item)
                except Exception:  # a bug here must show up in the log, not as a silent display
                    log.exception("display emulator failed on %r", item)

    def _handle(self, item: Frame | FrameError) -> None:
        if isinstance(item, FrameError):
            reason = NakReason.BAD_LENGTH if item.reason in ("length", "overflow") else NakReason.BAD_CRC
            self._reply(Frame(type=MsgType.NAK, seq=0, payload=nak_payload(reason)))
            return
        self.frames_received += 1
        self._last_host_frame = self._clock()
        if item.type >= 0x80:
            return  # a reply type coming back (echo or loopback): never answer it
        with self._lock:
            faults = self._faults
            if faults.nak_frames > 0:
                self._faults = replace(faults, nak_frames=faults.nak_frames - 1)
                nak = Frame(type=MsgType.NAK, seq=item.seq, payload=nak_payload(faults.nak_reason))
            else:
                nak = None
        if nak is not None:
            self._reply(nak)
            return
        self._reply(self._execute(item))

    def _execute(self, frame: Frame) -> Frame:
        """Act on one valid request and return the reply the controller sends."""
        def nak(reason: NakReason) -> Frame:
            return Frame(type=MsgType.NAK, seq=frame.seq, payload=nak_payload(reason))

        if frame.type == MsgType.PING:
            self.pings += 1
            with self._lock:
                status = Status(blank=self._blank, rx_errors=self._decoder.stats.errors,
                                shown_seq=self._shown_seq, brightness=self._brightness)
            return Frame(type=MsgType.STATUS, seq=frame.seq, payload=status.encode())
        if frame.type == MsgType.SHOW:
            try:
                screen = Screen.decode(frame.payload)
            except FrameError:
                return nak(NakReason.BAD_PAYLOAD)
            self._apply(frame.seq, screen)
            return Frame(type=MsgType.ACK, seq=frame.seq)
        if frame.type == MsgType.BRIGHTNESS:
            if len(frame.payload) != 1:
                return nak(NakReason.BAD_PAYLOAD)
            with self._lock:
                self._brightness = frame.payload[0]
            return Frame(type=MsgType.ACK, seq=frame.seq)
        if frame.type == MsgType.RESET:
            with self._lock:
                self._reset_display()
            return Frame(type=MsgType.ACK, seq=frame.seq)
        return nak(NakReason.UNKNOWN_TYPE)

    def check_host_timeout(self) -> None:
        """The controller's fail safe, run on every poll: NO_HOST_SCREEN after host_timeout_s
        without a frame from the host, then dark after blank_after_s."""
        if self.faults.silent:
            return
        quiet_s = self._clock() - self._last_host_frame
        if self.blank_after_s is not None and quiet_s >= self.blank_after_s:
            with self._lock:
                if self._blank:
                    return
                self._current, self._blank = BLANK, True
                self._lock.notify_all()
            if self.render:
                stream = self._stream or sys.stdout
                stream.write(render_screen(BLANK, self.colour, " (no heartbeat: dark)") + "\n")
                stream.flush()
            return
        if self.host_timeout_s is None or quiet_s < self.host_timeout_s:
            return
        with self._lock:
            lit = not self._blank and self._current != NO_HOST_SCREEN
        if lit:
            self._apply(0, NO_HOST_SCREEN)

    @property
    def blank(self) -> bool:
        with self._lock:
            return self._blank

    def _apply(self, seq: int, screen: Screen) -> None:
        with self._lock:
            # A retransmission after a lost ACK repeats seq and screen: show it, record it once.
            changed = self._current != screen  # redraw only when what is lit changes
            if self._last_applied != (seq, screen):
                self._screens.append(screen)
                self._last_applied = (seq, screen)
            self._current = screen
            self._shown_seq = seq
            self._blank = False
            self._lock.notify_all()
        if self.render and changed:
            stream = self._stream or sys.stdout
            redraw = "\x1b[4F\x1b[J" if self.in_place and self._drawn else ""  # up 4 lines, clear
            note = f"  <- {self.caption()}" if self.caption is not None else ""
            stream.write(redraw + render_screen(screen, self.colour, note) + "\n")
            self._drawn = True
            stream.flush()

    def _reply(self, frame: Frame) -> None:
        with self._lock:
            faults = self._faults
            drop = faults.drop_replies > 0
            corrupt = not drop and faults.corrupt_replies > 0
            self._faults = replace(faults, drop_replies=max(0, faults.drop_replies - 1),
                                   corrupt_replies=faults.corrupt_replies - 1 if corrupt else faults.corrupt_replies)
        if faults.reply_delay_s > 0:
            self._stop.wait(faults.reply_delay_s)
        if drop or self._master is None:
            return
        wire = bytearray(encode_frame(frame))
        if corrupt:
            middle = len(wire) // 2
            wire[middle] ^= 0x01 if wire[middle] != 0x01 else 0x02  # never create a delimiter
        try:
            os.write(self._master, bytes(wire))
            self.replies_sent += 1
        except OSError:
            pass  # the host side is gone; it will notice by itself

    # -- pty handling (only the serving thread touches the fds once it runs) -----------------------

    def _set_plugged(self, plugged: bool, timeout: float) -> None:
        with self._lock:
            self._want_plugged = plugged
            deadline = time.monotonic() + timeout
            while self._plugged != plugged:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None:
                    raise TimeoutError(f"emulator did not {'plug in' if plugged else 'unplug'} in {timeout} s")
                self._lock.wait(remaining)

    def _apply_plug_request(self) -> None:
        with self._lock:
            want = self._want_plugged
        if want and not self._plugged:
            self._open_pty()
        elif not want and self._plugged:
            self._close_pty()
        else:
            return
        with self._lock:
            self._lock.notify_all()

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing, no CR/LF translation: bytes pass unchanged
        self._master, self._slave = master, slave
        self._pts_path = os.ttyname(slave)
        if self.link_path:
            temporary = f"{self.link_path}.new"
            if os.path.lexists(temporary):
                os.unlink(temporary)
            os.symlink(self._pts_path, temporary)
            os.replace(temporary, self.link_path)  # atomic: the host never sees a half-made link
        with self._lock:
            self._reset_display()
            self._decoder.reset()
            self._plugged = True

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None
        if self.link_path and os.path.islink(self.link_path):
            os.unlink(self.link_path)  # as udev removes /dev/serial/by-id/... on unplug
        with self._lock:
            self._plugged = False

    def _reset_display(self) -> None:
        self._current = BLANK
        self._blank = True
        self._shown_seq = 0
        self._last_applied = None
        self._lock.notify_all()


def main(argv: list[str] | None = None) -> int:
    """Run the emulator standalone: print the port path, render each screen, until interrupted."""
    from firmware.clihelp import HelpFormatter, example

    parser = argparse.ArgumentParser(
        prog="healthgate display-emulator", description="Emulated LED display on a pty.",
        formatter_class=HelpFormatter,
        epilog=example("healthgate display-emulator --link /tmp/display --blank-after 30"))
    parser.add_argument("--link", help="also expose the pty as this symlink (stable across replug)")
    parser.add_argument("--no-colour", action="store_true", help="render without ANSI colours")
    parser.add_argument("--quiet", action="store_true", help="do not render screens")
    parser.add_argument("--scroll", action="store_true",
                        help="print each screen below the last instead of redrawing in place")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--nak", type=int, default=0, help="NAK the first N requests")
    parser.add_argument("--corrupt", type=int, default=0, help="corrupt the first N replies")
    parser.add_argument("--delay", type=float, default=0.0, help="delay every reply (seconds)")
    parser.add_argument("--silent", action="store_true", help="never reply (a hung display)")
    parser.add_argument("--host-timeout", type=float, default=None, metavar="S",
                        help="show 'Out of service' after S seconds without a frame (default: never)")
    parser.add_argument("--blank-after", type=float, default=None, metavar="S",
                        help="go dark after S seconds without a frame or heartbeat, as the real "
                             "display does (default: never)")
    args = parser.parse_args(argv)
    link = args.link
    if link is None:
        link = os.path.join(tempfile.gettempdir(), f"healthgate-display-{os.getpid()}")
    emulator = DisplayEmulator(link_path=link, render=not args.quiet, colour=not args.no_colour,
                               in_place=not args.scroll and sys.stdout.isatty(),
                               host_timeout_s=args.host_timeout, blank_after_s=args.blank_after)
    emulator.script(nak_frames=args.nak, corrupt_replies=args.corrupt, reply_delay_s=args.delay,
                    silent=args.silent)
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # closing the terminal or `kill` also removes the link path

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
    port = emulator.start()
    print(f"display emulator on {port} -> {emulator.pts_path}", flush=True)
    try:
        end = None if args.duration is None else time.monotonic() + args.duration
        while end is None or time.monotonic() < end:
            time.sleep(0.2 if end is None else max(0.0, min(0.2, end - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
