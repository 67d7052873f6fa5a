"""LED display over serial: pure codec, screens, link layer, driver and a pty emulator."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from firmware.display.driver import Display, DisplayError, open_display  # noqa: F401
    from firmware.display.emulator import DisplayEmulator  # noqa: F401
    from firmware.display.screen import Screen, screen_for  # noqa: F401

# Lazy exports (PEP 562): importing the package loads nothing, so `python -m
# firmware.display.emulator` runs without the module being imported twice.
_EXPORTS = {
    "Display": "firmware.display.driver",
    "DisplayError": "firmware.display.driver",
    "open_display": "firmware.display.driver",
    "DisplayEmulator": "firmware.display.emulator",
    "Screen": "firmware.display.screen",
    "screen_for": "firmware.display.screen",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'firmware.display' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
