"""QR/Aztec code reading from frames."""
from firmware.codes.reader import CodeRead, FrameScanner, read_codes, scan_frame

__all__ = ["CodeRead", "FrameScanner", "read_codes", "scan_frame"]
