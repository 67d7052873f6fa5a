"""LED display over serial: pure codec, screens, link layer, driver and a pty emulator."""
from firmware.display.driver import Display, DisplayError, open_display
from firmware.display.emulator import DisplayEmulator
from firmware.display.screen import Screen, screen_for

__all__ = ["Display", "DisplayEmulator", "DisplayError", "Screen", "open_display", "screen_for"]
