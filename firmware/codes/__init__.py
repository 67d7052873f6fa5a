"""QR/Aztec code reading from frames."""
from firmware.codes.reader import CodeRead, read_codes, scan_frame

__all__ = ["CodeRead", "read_codes", "scan_frame"]
