"""The base of every error that carries a stable reason code and a detail for the log."""
from __future__ import annotations


class CodedError(Exception):
    """`code` is stable (a reason code or a stage name); `detail` says what was wrong."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
