"""On the board: the real LED display acknowledges screens and heartbeats over its serial port."""
from __future__ import annotations

import os

import pytest

from firmware.display import open_display, screen_for
from firmware.display.screen import KIOSK_STATES

PORT = os.environ.get("HEALTHGATE_DISPLAY_PORT")
pytestmark = pytest.mark.skipif(not PORT, reason="set HEALTHGATE_DISPLAY_PORT to the display's port")


def test_display_acknowledges_every_state() -> None:
    assert PORT is not None
    with open_display(PORT) as display:
        for state in KIOSK_STATES:
            display.show(screen_for(state, "Test", "hw_tests"), timeout=2.0)
        display.poll()
        assert display.healthy
