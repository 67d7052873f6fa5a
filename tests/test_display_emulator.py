"""The display emulator as a controller on a real pty: raw bytes in and out, faults, rendering."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import serial

from firmware.display import DisplayEmulator, open_display, screen_for
from firmware.display.codec import (
    Frame, MsgType, NakReason, Status, StreamDecoder, encode_frame, nak_payload,
)
from firmware.display.emulator import main, render_screen
from firmware.display.screen import Screen
from tests.waiting import HANG_GUARD_S, wait_for

WAIT = HANG_GUARD_S  # for anything the emulator or the port must do; never reached
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def emulator() -> Iterator[DisplayEmulator]:
    emu = DisplayEmulator()
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def port(emulator: DisplayEmulator) -> Iterator[serial.Serial]:
    with serial.Serial(emulator.port, 115200, timeout=0.05) as handle:
        yield handle


def exchange(port: serial.Serial, wire: bytes, replies: int = 1) -> list[Frame]:
    """Write raw bytes and read until `replies` frames came back (hang guard: AssertionError)."""
    port.write(wire)
    decoder = StreamDecoder()
    frames: list[Frame] = []

    def answered() -> bool:  # each look blocks for at most one port read timeout
        frames.extend(decoder.feed(port.read(max(1, port.in_waiting))))
        return len(frames) >= replies

    wait_for(answered, lambda: f"{replies} reply frame(s); got {frames}", poll_s=0)
    return frames


def test_port_is_a_real_pty(emulator: DisplayEmulator) -> None:
    assert emulator.port.startswith("/dev/pts/")
    fd = os.open(emulator.port, os.O_RDWR | os.O_NOCTTY)
    try:
        assert os.isatty(fd)
    finally:
        os.close(fd)


def test_ping_gets_the_exact_status_bytes(port: serial.Serial) -> None:
    port.write(bytes.fromhex("00030205035d0900"))  # PING seq 5, as in docs/display-protocol.md
    expected = encode_frame(Frame(type=MsgType.STATUS, seq=5, payload=Status().encode()))
    received = bytearray()

    def complete() -> bool:
        received.extend(port.read(len(expected) - len(received)))
        return len(received) >= len(expected)

    wait_for(complete, lambda: f"{len(expected)} status bytes; got {bytes(received)!r}", poll_s=0)
    assert received == expected


def test_show_over_raw_bytes(emulator: DisplayEmulator, port: serial.Serial) -> None:
    screen = screen_for("DENIED", "Signature invalid")
    replies = exchange(port, encode_frame(Frame(type=MsgType.SHOW, seq=9, payload=screen.encode())))
    assert replies == [Frame(type=MsgType.ACK, seq=9)]
    assert emulator.wait_for(lambda s: s.state == "DENIED", WAIT) == screen
    status = exchange(port, encode_frame(Frame(type=MsgType.PING, seq=10)))
    assert Status.decode(status[0].payload) == Status(blank=False, shown_seq=9)


def test_garbage_is_nakked_and_counted_then_frames_work(emulator: DisplayEmulator, port: serial.Serial) -> None:
    damaged = bytearray(encode_frame(Frame(type=MsgType.SHOW, seq=3, payload=screen_for("IDLE").encode())))
    damaged[5] ^= 0x10
    replies = exchange(port, bytes(damaged), replies=1)
    assert replies == [Frame(type=MsgType.NAK, seq=0, payload=nak_payload(NakReason.BAD_CRC))]
    assert emulator.rx_errors == 1 and emulator.screens == []
    good = Frame(type=MsgType.SHOW, seq=3, payload=screen_for("IDLE").encode())
    # Line noise before a frame is cut off by the frame's leading 0x00: NAKed, then the frame.
    assert exchange(port, b"\x13\x37" + encode_frame(good), replies=2) == [
        Frame(type=MsgType.NAK, seq=0, payload=nak_payload(NakReason.BAD_CRC)), Frame(type=MsgType.ACK, seq=3)]
    assert emulator.rx_errors == 2
    assert emulator.wait_for(lambda s: True, WAIT) == screen_for("IDLE")


def test_unknown_request_types_are_nakked_and_replies_ignored(port: serial.Serial) -> None:
    replies = exchange(port, encode_frame(Frame(type=0x7E, seq=1)) + encode_frame(Frame(type=MsgType.ACK, seq=2))
                       + encode_frame(Frame(type=MsgType.PING, seq=3)), replies=2)
    assert replies[0] == Frame(type=MsgType.NAK, seq=1, payload=nak_payload(NakReason.UNKNOWN_TYPE))
    assert replies[1].type == MsgType.STATUS and replies[1].seq == 3  # nothing answered the ACK


def test_brightness_and_reset(emulator: DisplayEmulator, port: serial.Serial) -> None:
    show = Frame(type=MsgType.SHOW, seq=1, payload=screen_for("GRANTED").encode())
    assert exchange(port, encode_frame(show)) == [Frame(type=MsgType.ACK, seq=1)]
    assert exchange(port, encode_frame(Frame(type=MsgType.BRIGHTNESS, seq=2, payload=b"\x10"))) == [
        Frame(type=MsgType.ACK, seq=2)]
    assert exchange(port, encode_frame(Frame(type=MsgType.BRIGHTNESS, seq=3, payload=b""))) == [
        Frame(type=MsgType.NAK, seq=3, payload=nak_payload(NakReason.BAD_PAYLOAD))]
    status = Status.decode(exchange(port, encode_frame(Frame(type=MsgType.PING, seq=4)))[0].payload)
    assert status.brightness == 0x10 and not status.blank
    assert exchange(port, encode_frame(Frame(type=MsgType.RESET, seq=5))) == [Frame(type=MsgType.ACK, seq=5)]
    status = Status.decode(exchange(port, encode_frame(Frame(type=MsgType.PING, seq=6)))[0].payload)
    assert status.blank and emulator.current.colour == "off"


def test_corrupt_and_silent_faults_on_the_wire(emulator: DisplayEmulator, port: serial.Serial) -> None:
    emulator.script(corrupt_replies=1)
    decoder = StreamDecoder()
    port.write(encode_frame(Frame(type=MsgType.PING, seq=1)))

    def corrupt_reply_seen() -> bool:
        assert decoder.feed(port.read(max(1, port.in_waiting))) == []
        return decoder.stats.errors > 0

    wait_for(corrupt_reply_seen, "the corrupted reply", poll_s=0)
    assert decoder.stats.errors == 1
    emulator.go_silent()
    port.write(encode_frame(Frame(type=MsgType.PING, seq=2)))
    assert port.read(64) == b""  # one read timeout: nothing comes back
    emulator.go_silent(False)
    assert exchange(port, encode_frame(Frame(type=MsgType.PING, seq=3)))[0].seq == 3


def test_unplug_makes_the_port_fail_and_replug_serves_a_new_pty(tmp_path: Path) -> None:
    link = tmp_path / "ttyDISPLAY"
    with DisplayEmulator(link_path=str(link)) as emulator:
        first = emulator.pts_path
        handle = serial.Serial(str(link), timeout=0.05)
        emulator.unplug()
        with pytest.raises(serial.SerialException):
            handle.write(encode_frame(Frame(type=MsgType.PING, seq=1)))
            handle.read(1)
        handle.close()
        assert not link.exists() and not link.is_symlink()  # gone, as udev removes it
        emulator.replug()
        assert os.path.realpath(link) == emulator.pts_path and Path(emulator.pts_path).exists()
        with serial.Serial(str(link), timeout=0.05) as handle:
            assert exchange(handle, encode_frame(Frame(type=MsgType.PING, seq=2)))[0].seq == 2
        assert first  # the old pty path was real too
    assert not link.exists()


def test_wait_for_times_out(emulator: DisplayEmulator) -> None:
    with pytest.raises(TimeoutError):
        emulator.wait_for(lambda s: True, timeout=0.05)


def test_render_box_and_stream() -> None:
    screen = Screen(state="GRANTED", colour="green", line1="Welcome", line2="Please enter")
    assert render_screen(screen, colour=False).splitlines() == [
        "+----------------------+ GREEN GRANTED",
        "| Welcome              |",
        "| Please enter         |",
        "+----------------------+",
    ]
    assert "\x1b[42;30m Welcome" in render_screen(screen)
    out = io.StringIO()
    with open_display("emulator", render=True, render_stream=out) as display:
        display.show(screen, timeout=WAIT)
        display.show(screen, timeout=WAIT)  # the same screen again draws nothing new
    assert out.getvalue().count("Welcome") == 1
    assert "\x1b[4F" not in out.getvalue()


def test_in_place_rendering_redraws_over_the_previous_box(tmp_path: Path) -> None:
    out = io.StringIO()
    with DisplayEmulator(render=True, stream=out, colour=False, in_place=True) as emulator:
        with serial.Serial(emulator.port, timeout=0.05) as handle:
            for seq, state in enumerate(["IDLE", "GRANTED"], start=1):
                show = Frame(type=MsgType.SHOW, seq=seq, payload=screen_for(state).encode())
                assert exchange(handle, encode_frame(show)) == [Frame(type=MsgType.ACK, seq=seq)]
    first, second = out.getvalue().split("\x1b[4F\x1b[J")
    assert "Scan your pass" in first and "Welcome" in second and len(first.splitlines()) == 4


def test_main_runs_standalone_and_serves_the_link(tmp_path: Path) -> None:
    link = tmp_path / "display"
    process = subprocess.Popen(
        [sys.executable, "-W", "error", "-m", "firmware.display.emulator",
         "--link", str(link), "--no-colour", "--duration", "60"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()  # printed once the pty is up
        assert first_line.startswith(f"display emulator on {link} -> /dev/pts/")
        with open_display(str(link), ack_timeout_s=0.5) as display:
            display.show(screen_for("FAULT", "camera"), timeout=WAIT)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=WAIT * 2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(WAIT)
    assert process.returncode == 0, err
    assert "| Fault: camera        |" in out
    assert not link.exists() and not link.is_symlink()  # cleaned up on SIGTERM


def test_main_help_returns_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    assert "--link" in capsys.readouterr().out


def test_display_blanks_a_stale_decision_when_the_host_goes_quiet() -> None:
    # A kiosk that crashed must not leave a green "Welcome" lit: the controller falls back.
    with DisplayEmulator(host_timeout_s=0.2) as emulator:
        with serial.Serial(emulator.port, timeout=0.05) as handle:
            granted = Frame(type=MsgType.SHOW, seq=1, payload=screen_for("GRANTED").encode())
            assert exchange(handle, encode_frame(granted)) == [Frame(type=MsgType.ACK, seq=1)]
            fallback = emulator.wait_for(lambda s: s.state == "NO_HOST", WAIT)
        assert fallback.colour == "amber" and emulator.current == fallback
        assert [s.state for s in emulator.screens] == ["GRANTED", "NO_HOST"]


def test_display_goes_dark_when_heartbeats_stop_by_an_injected_clock() -> None:
    """As the real display: 'Out of service' after host_timeout_s, dark after blank_after_s;
    a heartbeat (PING) in time keeps it lit. Driven by a fake clock, no sleeps, no pty."""
    now = [1000.0]
    emulator = DisplayEmulator(host_timeout_s=5.0, blank_after_s=30.0, clock=lambda: now[0])
    emulator._handle(Frame(type=MsgType.SHOW, seq=1, payload=screen_for("IDLE").encode()))
    assert not emulator.blank and emulator.current.state == "IDLE"
    now[0] += 4.9
    emulator.check_host_timeout()
    assert emulator.current.state == "IDLE"
    emulator._handle(Frame(type=MsgType.PING, seq=2))  # a heartbeat: the host is alive
    now[0] += 4.9
    emulator.check_host_timeout()
    assert emulator.current.state == "IDLE" and not emulator.blank
    now[0] += 0.2  # 5.1 s since the heartbeat
    emulator.check_host_timeout()
    assert emulator.current.state == "NO_HOST" and not emulator.blank
    now[0] += 25.0  # 30.1 s
    emulator.check_host_timeout()
    assert emulator.blank and emulator.current.state == "OFF"
    emulator._handle(Frame(type=MsgType.SHOW, seq=3, payload=screen_for("IDLE").encode()))
    assert not emulator.blank and emulator.current.state == "IDLE"  # the host is back
