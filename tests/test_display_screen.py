"""Display screens: ASCII folding, SHOW payload round trip and strictness, kiosk state table."""
from __future__ import annotations

import enum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.display.codec import Frame, FrameError, MsgType, crc16_ccitt_false, encode_frame
from firmware.display.screen import (
    COLOUR_CODES, COLUMNS, KIOSK_STATES, Screen, fold_ascii, screen_for, wrap_two_lines,
)

FAST = settings(max_examples=80, deadline=None)


def test_fold_ascii_keeps_names_readable() -> None:
    assert fold_ascii("Zoë Ærøskøbing") == "Zoe AEroskobing"
    assert fold_ascii("Straße „Süd“") == "Strasse ?Sud\""
    assert fold_ascii("line\nbreak\x07bell") == "line breakbell"
    assert fold_ascii("smile 😀") == "smile ?"
    assert fold_ascii("x" * 50) == "x" * COLUMNS


@FAST
@given(st.text(max_size=40), st.sampled_from(sorted(COLOUR_CODES)), st.text(max_size=40),
       st.text(max_size=40))
def test_screen_payload_round_trip(state: str, colour: str, line1: str, line2: str) -> None:
    screen = Screen(state=state, colour=colour, line1=line1, line2=line2)
    assert len(screen.line1) <= COLUMNS and len(screen.line2) <= COLUMNS
    assert all(" " <= char <= "~" for char in screen.line1 + screen.line2 + screen.state)
    assert Screen.decode(screen.encode()) == screen


@FAST
@given(st.binary(max_size=80))
def test_decode_of_arbitrary_bytes_is_exact_or_a_frame_error(payload: bytes) -> None:
    try:
        screen = Screen.decode(payload)
    except FrameError as error:
        assert error.reason == "payload"
    else:
        assert screen.encode() == payload


@pytest.mark.parametrize("payload, why", [
    (b"\x09\x00\x00\x00\x00", "unknown colour"),
    (b"\x02\x00\x00\x00", "too short"),
    (b"\x02\x00\x00\x15" + b"a" * 21 + b"\x00", "line1 too long"),
    (b"\x02\x00\x00\x02a\x01\x00", "non-printable"),
    (b"\x02\x00\x00\x00\x00!", "trailing byte"),
    (b"\x02\x00\x04idle\x00\x00", "lowercase state"),
])
def test_decode_rejects_malformed_payloads(payload: bytes, why: str) -> None:
    with pytest.raises(FrameError):
        Screen.decode(payload)


def test_documented_show_example_bytes() -> None:
    # The worked SHOW example of docs/display-protocol.md.
    screen = Screen(state="GRANTED", colour="green", line1="Welcome", line2="")
    payload = screen.encode()
    assert payload == bytes.fromhex("0200") + b"\x07GRANTED" + b"\x07Welcome" + b"\x00"
    body = bytes([MsgType.SHOW, 0x2A, len(payload)]) + payload
    assert crc16_ccitt_false(body) == 0xA2FF
    assert encode_frame(Frame(type=MsgType.SHOW, seq=0x2A, payload=payload)).hex() == (
        "0005012a13021107" + b"GRANTED".hex() + "07" + b"Welcome".hex() + "03a2ff00")


def test_unknown_colour_is_refused() -> None:
    with pytest.raises(ValueError):
        Screen(state="IDLE", colour="purple", line1="x")


def test_state_table() -> None:
    expected = {
        "BOOT": ("white", "Starting..."), "IDLE": ("white", "Scan your pass"),
        "SCANNING": ("blue", "Reading..."), "VERIFYING": ("blue", "Checking..."),
        "ASSEMBLING": ("blue", "Reading..."), "AWAIT_FACE": ("blue", "Checking..."),
        "GRANTED": ("green", "Welcome"), "DENIED": ("red", "Entry denied"),
        "FAULT": ("amber", "Out of service"), "MAINTENANCE": ("amber", "Maintenance"),
    }
    assert set(expected) == set(KIOSK_STATES)
    for state, (colour, line1) in expected.items():
        screen = screen_for(state)
        assert (screen.state, screen.colour, screen.line1) == (state, colour, line1)


def test_every_kiosk_state_has_its_own_screen() -> None:
    from firmware.kiosk.states import State

    assert set(KIOSK_STATES) == {state.value for state in State}


def test_face_wait_shows_its_hint_and_a_card_its_parts() -> None:
    hint = screen_for("AWAIT_FACE", "Please step closer")
    assert (hint.colour, hint.line1, hint.line2) == ("blue", "Checking...", "Please step closer")
    longer = screen_for("AWAIT_FACE", "Please look at the camera")  # both lines, never cut
    assert (longer.line1, longer.line2) == ("Please look at the", "camera")
    assert screen_for("AWAIT_FACE").line2 == "Please wait"
    assert screen_for("ASSEMBLING", detail="Part 1 of 2 read").line2 == "Part 1 of 2 read"


def test_reason_and_detail_lines() -> None:
    assert screen_for("DENIED", "Pass expired").line2 == "Pass expired"
    assert screen_for("FAULT", "camera").line2 == "Fault: camera"
    assert screen_for("IDLE", detail="Trust data 3h old").line2 == "Trust data 3h old"
    assert screen_for("IDLE").line2 == ""
    wrapped = screen_for("denied", "Signatur ungültig, bitte Personal")
    assert (wrapped.line1, wrapped.line2) == ("Signatur ungultig,", "bitte Personal")


def test_enum_members_and_unknown_states() -> None:
    class KioskState(enum.Enum):
        GRANTED = "granted"
        LOCKED = "locked"

    assert screen_for(KioskState.GRANTED).colour == "green"  # type: ignore[arg-type]
    unknown = screen_for(KioskState.LOCKED)  # type: ignore[arg-type]
    assert (unknown.colour, unknown.line1, unknown.line2) == ("amber", "Out of service", "LOCKED")


def test_long_reasons_wrap_instead_of_being_cut() -> None:
    screen = screen_for("DENIED", "Code damaged (signature block)")
    assert (screen.colour, screen.line1, screen.line2) == ("red", "Code damaged", "(signature block)")
    assert screen_for("DENIED", "Certificate expired").line1 == "Entry denied"
    unbreakable = screen_for("DENIED", "X" * 30)
    assert (unbreakable.line1, unbreakable.line2) == ("Entry denied", "X" * COLUMNS)
    assert wrap_two_lines("a" * 20 + " " + "b" * 21) is None


def test_every_credential_reason_message_is_shown_whole() -> None:
    # The kiosk shows message_for(reason code) on DENIED: every word of each must be visible.
    from firmware.credentials.reasons import REASONS

    for code, message in REASONS.items():
        screen = screen_for("DENIED", message)
        if screen.line1 == "Entry denied":
            assert screen.line2 == fold_ascii(message, 64), code
        else:
            assert f"{screen.line1} {screen.line2}" == fold_ascii(message, 64), code
