"""Pure wire codec of the display link: COBS framing, header, CRC-16/CCITT-FALSE; no I/O."""
from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass, field
from enum import IntEnum

# Frame on the wire: 0x00, COBS(type | seq | len | payload | crc16_be), 0x00. The leading
# delimiter cuts off any garbage before the frame (line noise at plug-in), so it cannot merge.
DELIMITER = 0x00
HEADER_SIZE = 3  # type, seq, len
CRC_SIZE = 2
MAX_PAYLOAD = 250  # keeps the unstuffed body <= 255 bytes, so COBS adds exactly one byte
MAX_BODY = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE
MAX_ENCODED = MAX_BODY + 1  # COBS overhead for a body of <= 254 non-zero run bytes
MAX_WIRE_FRAME = MAX_ENCODED + 2  # plus the two delimiters
PROTOCOL_VERSION = 1


class MsgType(IntEnum):
    """Message type byte. Host -> display requests are < 0x80, display -> host replies >= 0x80."""

    SHOW = 0x01  # payload: a screen (see screen.py); reply ACK or NAK
    PING = 0x02  # heartbeat, empty payload; reply STATUS
    BRIGHTNESS = 0x03  # payload: one byte 0..255; reply ACK or NAK
    RESET = 0x04  # blank the display and clear its counters; reply ACK
    ACK = 0x81  # empty payload; seq = seq of the acknowledged request
    NAK = 0x82  # payload: one NakReason byte; seq = seq of the refused request
    STATUS = 0x83  # payload: see Status; seq = seq of the PING


class NakReason(IntEnum):
    """Why the display refused a frame (one byte in the NAK payload)."""

    BAD_CRC = 0x01  # frame damaged on the line; its seq byte is not trustworthy
    BAD_LENGTH = 0x02  # header length disagrees with the frame size
    UNKNOWN_TYPE = 0x03  # type byte the display does not implement
    BAD_PAYLOAD = 0x04  # payload of a known type could not be decoded
    BUSY = 0x05  # display cannot take the frame now; retry later


class FrameError(ValueError):
    """A frame or payload that cannot be decoded; `reason`: cobs, short, length, crc, overflow, payload."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class Frame:
    """One decoded frame. `type` stays a plain int so unknown types can be reported, not dropped."""

    type: int
    seq: int
    payload: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.type <= 0xFF:
            raise ValueError(f"type {self.type} out of range 0..255")
        if not 0 <= self.seq <= 0xFF:
            raise ValueError(f"seq {self.seq} out of range 0..255")
        if len(self.payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD}")

    @property
    def kind(self) -> MsgType | None:
        """The known message type, or None for a type this codec does not define."""
        try:
            return MsgType(self.type)
        except ValueError:
            return None


def crc16_ccitt_false(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, xorout 0 (check 0x29B1)."""
    # binascii.crc_hqx is exactly this polynomial, MSB-first; the init value is the argument.
    return binascii.crc_hqx(data, crc)


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: the result contains no 0x00 byte."""
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
            continue
        block.append(byte)
        if len(block) == 254:  # a full run is written with code 0xFF and no implied zero
            out.append(0xFF)
            out += block
            block.clear()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of cobs_encode; raises FrameError('cobs') on a malformed encoding."""
    out = bytearray()
    index = 0
    while index < len(data):
        code = data[index]
        if code == 0:
            raise FrameError("cobs", f"zero byte at offset {index}")
        end = index + code
        if end > len(data):
            raise FrameError("cobs", f"code {code} at offset {index} runs past the end")
        block = data[index + 1:end]
        if 0 in block:
            raise FrameError("cobs", "zero byte inside a block")
        out += block
        index = end
        if code != 0xFF and index < len(data):
            out.append(0)
    return bytes(out)


def encode_frame(frame: Frame) -> bytes:
    """Wire bytes of one frame: 0x00, the COBS-encoded body, 0x00."""
    body = struct.pack(">BBB", frame.type, frame.seq, len(frame.payload)) + frame.payload
    body += struct.pack(">H", crc16_ccitt_false(body))
    return bytes([DELIMITER]) + cobs_encode(body) + bytes([DELIMITER])


def decode_frame(encoded: bytes) -> Frame:
    """Decode the bytes between two delimiters (without them); raises FrameError."""
    if len(encoded) > MAX_ENCODED:
        raise FrameError("overflow", f"{len(encoded)} encoded bytes exceed {MAX_ENCODED}")
    body = cobs_decode(encoded)
    if len(body) < HEADER_SIZE + CRC_SIZE:
        raise FrameError("short", f"{len(body)} bytes is shorter than header and CRC")
    # CRC first: a damaged header must not be interpreted (its length or seq may be wrong).
    (received_crc,) = struct.unpack(">H", body[-CRC_SIZE:])
    computed_crc = crc16_ccitt_false(body[:-CRC_SIZE])
    if received_crc != computed_crc:
        raise FrameError("crc", f"received 0x{received_crc:04X}, computed 0x{computed_crc:04X}")
    msg_type, seq, length = body[0], body[1], body[2]
    payload = body[HEADER_SIZE:-CRC_SIZE]
    if length != len(payload):
        raise FrameError("length", f"header says {length} payload bytes, frame has {len(payload)}")
    if length > MAX_PAYLOAD:
        raise FrameError("length", f"payload of {length} bytes exceeds {MAX_PAYLOAD}")
    return Frame(type=msg_type, seq=seq, payload=payload)


@dataclass
class DecoderStats:
    """Counters kept by StreamDecoder; `errors` is the total of all failure counters."""

    frames: int = 0
    cobs_errors: int = 0
    short_errors: int = 0
    length_errors: int = 0
    crc_errors: int = 0
    overflows: int = 0
    bytes_discarded: int = 0

    @property
    def errors(self) -> int:
        return (self.cobs_errors + self.short_errors + self.length_errors + self.crc_errors
                + self.overflows)


@dataclass
class StreamDecoder:
    """Splits a byte stream into frames at 0x00, resyncing after garbage and counting errors."""

    stats: DecoderStats = field(default_factory=DecoderStats)
    _buffer: bytearray = field(default_factory=bytearray)
    _overflowed: bool = False

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by `data`; damaged frames are counted and skipped."""
        return [item for item in self.feed_with_errors(data) if isinstance(item, Frame)]

    def feed_with_errors(self, data: bytes) -> list[Frame | FrameError]:
        """Like feed, but also returns a FrameError for each damaged frame (for a NAK)."""
        results: list[Frame | FrameError] = []
        for byte in data:
            if byte != DELIMITER:
                if self._overflowed:
                    self.stats.bytes_discarded += 1
                elif len(self._buffer) >= MAX_ENCODED:
                    # No delimiter in time: drop everything up to the next 0x00 (resync point).
                    self._overflowed = True
                    self.stats.overflows += 1
                    self.stats.bytes_discarded += len(self._buffer) + 1
                    self._buffer.clear()
                    results.append(FrameError("overflow", f"no delimiter within {MAX_ENCODED} bytes"))
                else:
                    self._buffer.append(byte)
                continue
            if self._overflowed:
                self._overflowed = False
                continue
            if not self._buffer:
                continue  # empty frame: a bare delimiter, used to flush a receiver
            encoded = bytes(self._buffer)
            self._buffer.clear()
            try:
                frame = decode_frame(encoded)
            except FrameError as error:
                self._count(error)
                self.stats.bytes_discarded += len(encoded) + 1
                results.append(error)
                continue
            self.stats.frames += 1
            results.append(frame)
        return results

    def reset(self) -> None:
        """Forget a partial frame (e.g. after reopening the port); counters are kept."""
        self._buffer.clear()
        self._overflowed = False

    def _count(self, error: FrameError) -> None:
        attribute = {"cobs": "cobs_errors", "short": "short_errors", "length": "length_errors",
                     "crc": "crc_errors", "overflow": "overflows"}[error.reason]
        setattr(self.stats, attribute, getattr(self.stats, attribute) + 1)


@dataclass(frozen=True)
class Status:
    """STATUS payload: protocol version, flags, receive error count, seq of the shown SHOW."""

    version: int = PROTOCOL_VERSION
    blank: bool = True  # nothing shown since power-up or RESET (host should re-send its screen)
    rx_errors: int = 0  # damaged frames seen by the display, saturating at 65535
    shown_seq: int = 0  # seq of the SHOW on the display now (0 when blank)
    brightness: int = 255

    FLAG_BLANK = 0x01
    SIZE = 6

    def encode(self) -> bytes:
        flags = self.FLAG_BLANK if self.blank else 0
        return struct.pack(">BBHBB", self.version, flags, min(self.rx_errors, 0xFFFF),
                           self.shown_seq, self.brightness)

    @classmethod
    def decode(cls, payload: bytes) -> Status:
        if len(payload) != cls.SIZE:
            raise FrameError("length", f"STATUS payload must be {cls.SIZE} bytes, got {len(payload)}")
        version, flags, rx_errors, shown_seq, brightness = struct.unpack(">BBHBB", payload)
        return cls(version=version, blank=bool(flags & cls.FLAG_BLANK), rx_errors=rx_errors,
                   shown_seq=shown_seq, brightness=brightness)


def nak_payload(reason: NakReason) -> bytes:
    return bytes([reason])


def nak_reason(payload: bytes) -> NakReason | None:
    """The reason of a NAK payload, or None when it is missing or unknown."""
    if len(payload) != 1:
        return None
    try:
        return NakReason(payload[0])
    except ValueError:
        return None
