"""Display wire codec: round trips, CRC vector, COBS, garbage, truncation and bit flips."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.display.codec import (
    MAX_PAYLOAD, MAX_WIRE_FRAME, Frame, FrameError, MsgType, NakReason, Status, StreamDecoder,
    cobs_decode, cobs_encode, crc16_ccitt_false, decode_frame, encode_frame, nak_payload,
    nak_reason,
)

FAST = settings(max_examples=60, deadline=None)

frames = st.builds(
    Frame,
    type=st.integers(0, 255),
    seq=st.integers(0, 255),
    payload=st.binary(max_size=MAX_PAYLOAD),
)


def test_crc16_ccitt_false_check_value() -> None:
    # The catalogue check value of CRC-16/CCITT-FALSE over the ASCII digits 1..9.
    assert crc16_ccitt_false(b"123456789") == 0x29B1
    assert crc16_ccitt_false(b"") == 0xFFFF


def test_documented_ping_and_ack_example_bytes() -> None:
    # The worked examples of docs/display-protocol.md: PING with seq 5 and its reply.
    assert crc16_ccitt_false(bytes([0x02, 0x05, 0x00])) == 0x5D09
    assert encode_frame(Frame(type=MsgType.PING, seq=5)) == bytes.fromhex("00030205035d0900")
    assert encode_frame(Frame(type=MsgType.ACK, seq=5)) == bytes.fromhex("0003810503 3f0300".replace(" ", ""))
    nak = Frame(type=MsgType.NAK, seq=5, payload=nak_payload(NakReason.BAD_CRC))
    assert encode_frame(nak) == bytes.fromhex("0007820501017c7000")
    assert decode_frame(bytes.fromhex("030205035d09")) == Frame(type=MsgType.PING, seq=5)
    status = Frame(type=MsgType.STATUS, seq=5, payload=Status().encode())
    assert encode_frame(status) == bytes.fromhex("000683050601010101 04ff921e00".replace(" ", ""))
    assert encode_frame(Frame(type=MsgType.ACK, seq=0x2A)) == bytes.fromhex("000381 2a0329db00".replace(" ", ""))
    damaged = Frame(type=MsgType.NAK, seq=0, payload=nak_payload(NakReason.BAD_CRC))
    assert encode_frame(damaged) == bytes.fromhex("0002820501019780 00".replace(" ", ""))


@FAST
@given(st.binary(max_size=600))
def test_cobs_round_trip_and_no_zero(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert 0 not in encoded
    assert cobs_decode(encoded) == data
    assert len(encoded) <= len(data) + len(data) // 254 + 1


@FAST
@given(frames)
def test_frame_round_trip(frame: Frame) -> None:
    wire = encode_frame(frame)
    assert wire[0] == 0 and wire[-1] == 0 and 0 not in wire[1:-1]
    assert len(wire) <= MAX_WIRE_FRAME
    assert decode_frame(wire[1:-1]) == frame


@FAST
@given(st.lists(frames, max_size=8), st.integers(1, 64))
def test_stream_decoder_any_chunking(sent: list[Frame], chunk: int) -> None:
    stream = b"".join(encode_frame(frame) for frame in sent)
    decoder = StreamDecoder()
    received: list[Frame] = []
    for start in range(0, len(stream), chunk):
        received += decoder.feed(stream[start:start + chunk])
    assert received == sent
    assert decoder.stats.errors == 0
    assert decoder.stats.frames == len(sent)


@FAST
@given(st.binary(max_size=400), frames)
def test_resync_after_garbage(garbage: bytes, frame: Frame) -> None:
    decoder = StreamDecoder()
    received = decoder.feed(garbage + encode_frame(frame))
    assert received[-1] == frame


def test_overflow_without_delimiter_resyncs() -> None:
    decoder = StreamDecoder()
    good = Frame(type=MsgType.ACK, seq=3)
    assert decoder.feed(b"\x55" * 2000) == []
    assert decoder.stats.overflows == 1
    assert decoder.feed(encode_frame(good)) == [good]
    assert decoder.stats.bytes_discarded >= 2000


@FAST
@given(frames, st.data())
def test_truncated_frame_is_rejected_and_next_frame_decodes(frame: Frame, data: st.DataObject) -> None:
    wire = encode_frame(frame)
    cut = data.draw(st.integers(1, len(wire) - 2), label="cut")  # keep the leading 0x00 + cut bytes
    follower = Frame(type=MsgType.PING, seq=(frame.seq + 1) % 256)
    decoder = StreamDecoder()
    received = decoder.feed(wire[:cut] + encode_frame(follower))
    assert received == [follower]
    if cut > 1:
        assert decoder.stats.errors == 1


@FAST
@given(frames, st.data())
def test_bit_flip_in_body_is_a_crc_error(frame: Frame, data: st.DataObject) -> None:
    from firmware.display.codec import HEADER_SIZE
    import struct
    body = bytearray(struct.pack(">BBB", frame.type, frame.seq, len(frame.payload)) + frame.payload)
    body += struct.pack(">H", crc16_ccitt_false(bytes(body)))
    bit = data.draw(st.integers(0, len(body) * 8 - 1), label="bit")
    body[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(FrameError) as caught:
        decode_frame(cobs_encode(bytes(body)))
    assert caught.value.reason == "crc"
    assert HEADER_SIZE == 3


@pytest.mark.parametrize("frame", [
    Frame(type=MsgType.SHOW, seq=0, payload=bytes(range(0, 120))),
    Frame(type=MsgType.STATUS, seq=255, payload=Status(blank=False, rx_errors=258).encode()),
    Frame(type=MsgType.NAK, seq=7, payload=nak_payload(NakReason.BAD_CRC)),
    Frame(type=MsgType.SHOW, seq=42, payload=b"\x00" * 40 + b"\xff" * 40),
])
def test_every_single_bit_flip_on_the_wire_is_never_accepted(frame: Frame) -> None:
    wire = encode_frame(frame)
    follower = Frame(type=MsgType.PING, seq=1)
    for bit in range(8, (len(wire) - 1) * 8):  # every bit between the two delimiters
        damaged = bytearray(wire)
        damaged[bit // 8] ^= 1 << (bit % 8)
        decoder = StreamDecoder()
        received = decoder.feed(bytes(damaged) + encode_frame(follower))
        assert received == [follower], f"bit {bit} flipped was accepted: {received}"
        assert decoder.stats.errors >= 1


def test_header_length_mismatch_is_reported() -> None:
    body = bytes([MsgType.SHOW, 1, 9]) + b"abc"
    body += crc16_ccitt_false(body).to_bytes(2, "big")
    with pytest.raises(FrameError) as caught:
        decode_frame(cobs_encode(body))
    assert caught.value.reason == "length"


def test_feed_with_errors_reports_each_damaged_frame() -> None:
    decoder = StreamDecoder()
    good = encode_frame(Frame(type=MsgType.ACK, seq=9))
    bad = bytearray(good)
    bad[3] ^= 0x40
    results = decoder.feed_with_errors(bytes(bad) + b"\x00\x01\x00" + good)
    reasons = [item.reason for item in results if isinstance(item, FrameError)]
    assert reasons == ["crc", "short"]
    assert results[-1] == Frame(type=MsgType.ACK, seq=9)
    assert decoder.stats.crc_errors == 1 and decoder.stats.short_errors == 1


@FAST
@given(st.booleans(), st.integers(0, 70000), st.integers(0, 255), st.integers(0, 255))
def test_status_round_trip(blank: bool, rx_errors: int, shown_seq: int, brightness: int) -> None:
    status = Status(blank=blank, rx_errors=rx_errors, shown_seq=shown_seq, brightness=brightness)
    decoded = Status.decode(status.encode())
    assert decoded.blank == blank and decoded.shown_seq == shown_seq
    assert decoded.rx_errors == min(rx_errors, 0xFFFF) and decoded.brightness == brightness


def test_status_and_nak_reject_bad_payloads() -> None:
    with pytest.raises(FrameError):
        Status.decode(b"\x01")
    assert nak_reason(b"") is None
    assert nak_reason(b"\x77") is None
    assert nak_reason(nak_payload(NakReason.BUSY)) is NakReason.BUSY


def test_frame_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValueError):
        Frame(type=MsgType.SHOW, seq=256)
    with pytest.raises(ValueError):
        Frame(type=MsgType.SHOW, seq=0, payload=b"x" * (MAX_PAYLOAD + 1))
    assert Frame(type=0x7F, seq=0).kind is None
