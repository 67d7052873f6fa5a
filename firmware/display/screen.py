"""What the LED display shows: the Screen value, kiosk state -> Screen, and the SHOW payload."""
from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass

from firmware.display.codec import FrameError

log = logging.getLogger(__name__)

COLUMNS = 20  # characters per line of the 2 x 20 character LED display
LINES = 2
MAX_STATE_CHARS = 16

# Colour name <-> one byte on the wire. The values are part of the protocol: never renumber.
COLOUR_CODES: dict[str, int] = {"off": 0, "white": 1, "green": 2, "red": 3, "amber": 4, "blue": 5}
COLOURS_BY_CODE: dict[int, str] = {code: name for name, code in COLOUR_CODES.items()}

# Letters that NFKD does not decompose into ASCII but that people's names and messages contain.
_FOLD_EXTRA = {
    "ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE", "đ": "d", "Đ": "D",
    "ł": "l", "Ł": "L", "þ": "th", "Þ": "Th", "ð": "d", "Ð": "D", "ı": "i", "€": "EUR",
    "‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-", "…": "...", "°": "o",
}


def fold_ascii(text: str, width: int = COLUMNS) -> str:
    """Printable ASCII only (accents dropped, unknown letters -> '?'), one line, cut to `width`."""
    out: list[str] = []
    for char in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(char):
            continue  # the accent of a decomposed letter: keep the base letter only
        if char in _FOLD_EXTRA:
            out.append(_FOLD_EXTRA[char])
        elif char in "\t\r\n":
            out.append(" ")  # the display has no line breaks inside a line
        elif " " <= char <= "~":
            out.append(char)
        elif unicodedata.category(char).startswith("C"):
            continue  # control and format characters would garble the display
        else:
            out.append("?")
    return "".join(out).strip()[:width].rstrip()


@dataclass(frozen=True)
class Screen:
    """One screen of the 2 x 20 display; text is folded to ASCII and cut to the width."""

    state: str
    colour: str
    line1: str
    line2: str = ""

    def __post_init__(self) -> None:
        if self.colour not in COLOUR_CODES:
            raise ValueError(f"colour {self.colour!r} is not one of {sorted(COLOUR_CODES)}")
        # Frozen dataclass: normalise through object.__setattr__ so equal screens compare equal.
        object.__setattr__(self, "state", fold_ascii(self.state, MAX_STATE_CHARS).upper())
        object.__setattr__(self, "line1", fold_ascii(self.line1))
        object.__setattr__(self, "line2", fold_ascii(self.line2))

    def encode(self) -> bytes:
        """SHOW payload: colour, flags, then state, line1, line2 each as length + ASCII bytes."""
        out = bytearray([COLOUR_CODES[self.colour], 0])
        for text in (self.state, self.line1, self.line2):
            raw = text.encode("ascii")
            out.append(len(raw))
            out += raw
        return bytes(out)

    @classmethod
    def decode(cls, payload: bytes) -> Screen:
        """Strict inverse of encode; raises FrameError('payload') on anything malformed."""
        if len(payload) < 5:
            raise FrameError("payload", f"SHOW payload of {len(payload)} bytes is too short")
        colour = COLOURS_BY_CODE.get(payload[0])
        if colour is None:
            raise FrameError("payload", f"unknown colour code {payload[0]}")
        # payload[1] holds flags; none are defined yet and receivers ignore unknown bits.
        texts: list[str] = []
        index = 2
        for name, limit in (("state", MAX_STATE_CHARS), ("line1", COLUMNS), ("line2", COLUMNS)):
            if index >= len(payload):
                raise FrameError("payload", f"SHOW payload ends before {name}")
            length = payload[index]
            raw = payload[index + 1:index + 1 + length]
            if length > limit or len(raw) != length:
                raise FrameError("payload", f"{name} length {length} is invalid")
            if any(not 0x20 <= byte <= 0x7E for byte in raw):
                raise FrameError("payload", f"{name} has a byte outside printable ASCII")
            texts.append(raw.decode("ascii"))
            index += 1 + length
        if index != len(payload):
            raise FrameError("payload", f"{len(payload) - index} bytes after line2")
        screen = cls(state=texts[0], colour=colour, line1=texts[1], line2=texts[2])
        if (screen.state, screen.line1, screen.line2) != tuple(texts):
            raise FrameError("payload", "text is not in normal form (lowercase state or padding)")
        return screen


def wrap_two_lines(text: str, width: int = COLUMNS) -> tuple[str, str] | None:
    """Word-wrap `text` onto two display lines, or None when it does not fit without cutting."""
    folded = fold_ascii(text, width * 3)
    if len(folded) <= width:
        return folded, ""
    cut = folded.rfind(" ", 0, width + 1)
    if cut <= 0:
        return None
    first, second = folded[:cut].rstrip(), folded[cut + 1:].strip()
    return (first, second) if len(second) <= width else None


def _headline_and_reason(state: str, colour: str, headline: str, reason: str) -> Screen:
    """Headline over a short reason; a reason too long for one line takes both lines (the
    colour still tells the outcome), and only a reason too long for both is cut."""
    if len(fold_ascii(reason, 4 * COLUMNS)) <= COLUMNS:
        return Screen(state, colour, headline, reason)
    wrapped = wrap_two_lines(reason)
    if wrapped is None:
        return Screen(state, colour, headline, reason)
    return Screen(state, colour, wrapped[0], wrapped[1])


BLANK = Screen(state="OFF", colour="off", line1="", line2="")

KIOSK_STATES = ("BOOT", "IDLE", "SCANNING", "ASSEMBLING", "VERIFYING", "AWAIT_FACE", "GRANTED",
                "DENIED", "FAULT", "MAINTENANCE")


def screen_for(state: str, reason_text: str | None = None, detail: str | None = None) -> Screen:
    """The screen for a kiosk state; reason_text is the why (DENIED), the failed part (FAULT)
    or the face hint (AWAIT_FACE).

    `detail` is a second, optional note: e.g. trust-data staleness on IDLE. An unknown state
    shows an amber "Out of service" rather than raising, because the display must never be the
    thing that stops the kiosk; it is logged as a warning.
    """
    name = getattr(state, "name", state)  # accept the kiosk's enum members as well as strings
    name = str(name).upper()
    reason = reason_text or ""
    note = detail or ""
    if name == "BOOT":
        return Screen(name, "white", "Starting...", note or "Please wait")
    if name == "IDLE":
        return Screen(name, "white", "Scan your pass", note)
    if name == "SCANNING":
        return Screen(name, "blue", "Reading...", note or "Hold still")
    if name == "ASSEMBLING":
        return Screen(name, "blue", "Reading...", note or "Show the next part")
    if name == "VERIFYING":
        return Screen(name, "blue", "Checking...", note or "Please wait")
    if name == "AWAIT_FACE":  # the hint ("Please step closer") may take both lines
        return _headline_and_reason(name, "blue", "Checking...", reason or note or "Please wait")
    if name == "GRANTED":
        return Screen(name, "green", "Welcome", reason or note or "Please enter")
    if name == "DENIED":
        return _headline_and_reason(name, "red", "Entry denied", reason or note or "Please see staff")
    if name == "FAULT":
        part = reason or note
        return _headline_and_reason(name, "amber", "Out of service",
                                    f"Fault: {part}" if part else "Please see staff")
    if name == "MAINTENANCE":
        # a provisioning outcome can be longer than a line: it may take both (still amber)
        return _headline_and_reason(name, "amber", "Maintenance", reason or note or "Back soon")
    log.warning("no screen defined for kiosk state %r; showing out of service", name)
    return Screen(name, "amber", "Out of service", name)
