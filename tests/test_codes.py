"""QR reading with zxing-cpp: real rendered codes, damaged codes, symbology restriction."""
from __future__ import annotations

import numpy as np
import pytest
import zxingcpp

from firmware.codes import FrameScanner, read_codes, scan_frame
from firmware.demo.frames import background, frame_with_code


def test_reads_text_of_rendered_qr() -> None:
    text = "HC1:6BFOXN*TS0BI$ZD4N9:9S6RCVN5+O30K3/XIV0W23NTDEXWK G2EP4J0B3KL6QM5/OVGA/MAT%ZSGO"
    assert read_codes(frame_with_code(text)) == [text]


def test_empty_frame_and_bad_arrays() -> None:
    assert read_codes(background()) == []
    with pytest.raises(ValueError, match="RGB frame"):
        scan_frame(np.zeros((10, 10), np.uint8))


def test_damaged_code_is_not_returned_as_text() -> None:
    frame = frame_with_code("NZCP:/1/" + "A" * 200)
    height, width = frame.shape[:2]
    damaged = frame.copy()
    damaged[height // 2 - 30:height // 2 + 30, width // 2 - 60:width // 2 + 60] = 255
    assert read_codes(damaged) == []


@pytest.mark.parametrize("symbology", ["DataMatrix", "Code128", "PDF417"])
def test_other_symbologies_are_ignored(symbology: str) -> None:
    barcode = zxingcpp.create_barcode("HC1:NOT-FOR-US", getattr(zxingcpp.BarcodeFormat, symbology))
    label = np.asarray(barcode.to_image(scale=2))
    assert zxingcpp.read_barcodes(label), "zxing-cpp itself can read the label"
    frame = background()
    frame[40:40 + label.shape[0], 40:40 + label.shape[1]] = label[:, :, None]
    assert read_codes(frame) == []


def test_aztec_code_is_read() -> None:
    barcode = zxingcpp.create_barcode("HC1:AZTEC-PASS", zxingcpp.BarcodeFormat.Aztec)
    label = np.asarray(barcode.to_image(scale=4))
    frame = background()
    frame[40:40 + label.shape[0], 40:40 + label.shape[1]] = label[:, :, None]
    assert read_codes(frame) == ["HC1:AZTEC-PASS"]
    assert scan_frame(frame, aztec=False) == []


def test_scanner_looks_for_aztec_every_nth_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    import firmware.codes.reader as reader

    monkeypatch.setattr(reader, "scan_frame", lambda rgb, aztec=True: seen.append(aztec) or [])
    scanner = FrameScanner(aztec_every_n=3)
    for _ in range(6):
        scanner.scan(background(64, 64))
    assert seen == [False, False, True, False, False, True]
    with pytest.raises(ValueError):
        FrameScanner(-1)
