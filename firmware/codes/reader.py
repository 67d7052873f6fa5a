"""Reads 2D codes from camera frames with zxing-cpp, limited to the symbologies credentials use."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import zxingcpp

# EU DCC allows QR and Aztec (hcert spec, section 4); SHC, NZCP and our status codes use QR.
# Restricting the search keeps the per-frame cost down and avoids false positives from
# product barcodes at a shop entrance. Aztec search costs as much as QR search, and Aztec
# credentials are rare, so the kiosk's scanner looks for Aztec only on every n-th frame.
_QR = zxingcpp.barcode_formats_from_str("QRCode")
_QR_AND_AZTEC = zxingcpp.barcode_formats_from_str("QRCode,Aztec")
MAX_TEXT_CHARS = 8192  # larger than any credential QR (a version 40 QR holds 4,296 chars)


@dataclass(frozen=True)
class CodeRead:
    """One code found in a frame: its text (None when damaged), symbology, error, and corners."""

    text: str | None
    symbology: str
    error: str | None
    corners: tuple[tuple[int, int], ...]


def scan_frame(rgb: np.ndarray, aztec: bool = True) -> list[CodeRead]:
    """Every QR (and Aztec) code in an RGB uint8 frame, damaged ones included with their error.

    Credentials are printed or shown dark on light, so inverted codes are not searched for.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {rgb.shape} {rgb.dtype}")
    image = np.ascontiguousarray(rgb)
    view = zxingcpp.ImageView(image, image.shape[1], image.shape[0], zxingcpp.ImageFormat.RGB)
    found = zxingcpp.read_barcodes(view, formats=_QR_AND_AZTEC if aztec else _QR,
                                   text_mode=zxingcpp.TextMode.Plain, try_invert=False,
                                   return_errors=True)
    reads: list[CodeRead] = []
    for barcode in found:
        position = barcode.position
        corners = tuple((int(p.x), int(p.y)) for p in (position.top_left, position.top_right,
                                                      position.bottom_right, position.bottom_left))
        text: str | None = barcode.text if barcode.valid else None
        error = None if barcode.valid else str(barcode.error)
        if text is not None and len(text) > MAX_TEXT_CHARS:
            text, error = None, f"code text longer than {MAX_TEXT_CHARS} characters"
        reads.append(CodeRead(text, barcode.format.name, error, corners))
    return reads


def read_codes(rgb: np.ndarray) -> list[str]:
    """The texts of every readable QR/Aztec code in an RGB uint8 frame (damaged codes skipped)."""
    return [read.text for read in scan_frame(rgb) if read.text is not None]


class FrameScanner:
    """The kiosk's per-frame scanner: QR on every frame, Aztec as well on every n-th frame
    (0 disables Aztec), so the common case stays fast without ignoring Aztec credentials."""

    def __init__(self, aztec_every_n: int = 3) -> None:
        if aztec_every_n < 0:
            raise ValueError("aztec_every_n must be 0 (off) or positive")
        self._every = aztec_every_n
        self._count = 0

    def scan(self, rgb: np.ndarray) -> list[CodeRead]:
        self._count += 1
        aztec = self._every > 0 and self._count % self._every == 0
        return scan_frame(rgb, aztec=aztec)
