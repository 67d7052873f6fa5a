"""The kiosk status page in a real browser: it follows a fault, needs its token, escapes text."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install '.[dev]')")
expect = sync_api.expect

from firmware.camera.base import CameraError, Frame
from firmware.camera.fake import FakeCamera
from firmware.status.collect import StatusCollector, StatusParts
from firmware.status.server import StatusServer
from tests.browser_support import BROWSER_WAIT_MS, browser_page, screenshot  # noqa: F401 (fixture)
from tests.test_status_page import serve_rig
from tests.kiosk_harness import Rig, make_rig

TOKEN = "browser-test-token-0123456789"
HOSTILE = ('<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'
           '&amp; "quoted" \'single\'')


class HostileCamera(FakeCamera):
    """A fake whose driver error text is markup, as a compromised USB device could make it."""

    hostile = False

    def read(self, timeout: float) -> Frame | None:
        if self.hostile:
            raise CameraError(HOSTILE)
        return super().read(timeout)


def serve(rig: Rig, token: str = "", device_id: str = "door-1") -> StatusServer:
    return serve_rig(rig, token, device_id)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = make_rig(tmp_path, camera_class=HostileCamera)
    yield rig
    rig.stop()


def test_page_follows_a_camera_fault_and_its_recovery(rig: Rig, browser_page: Any) -> None:
    page = browser_page
    server = serve(rig)
    try:
        page.goto(server.url)
        expect(page.locator("#state")).to_have_text("IDLE")
        expect(page.locator("#parts tbody")).to_contain_text("fps")
        rig.show_code("not a credential at all")
        rig.wait_state("DENIED")
        expect(page.locator("#decisions")).to_contain_text("1 denied")
        rig.camera.script("disconnect")
        expect(page.locator("#state")).to_have_text("FAULT")
        assert "camera" in page.inner_text("#latched")
        assert "camera" in page.inner_text("#faults tbody")
        screenshot(page, "kiosk-status.png")
        rig.camera.reconnect()
        expect(page.locator("#state")).to_have_text("IDLE")
        expect(page.locator("#faults tbody")).not_to_contain_text("latched")
    finally:
        server.stop()


def test_token_is_required_when_configured(rig: Rig, browser_page: Any) -> None:
    page = browser_page
    server = serve(rig, TOKEN)
    try:
        response = page.goto(server.url)
        assert response is not None and response.status == 401
        response = page.goto(server.url + "?token=not-the-token-at-all")
        assert response is not None and response.status == 401
        page.goto(server.url + "?token=" + TOKEN)
        expect(page.locator("#state")).to_have_text("IDLE")
        assert page.get_attribute("#json-link", "href").endswith("?token=" + TOKEN)
    finally:
        server.stop()


def test_hostile_strings_are_shown_not_run(rig: Rig, browser_page: Any) -> None:
    page = browser_page
    server = serve(rig, device_id='<b id="injected">door</b>')
    try:
        page.goto(server.url)
        expect(page.locator("#state")).to_have_text("IDLE")
        HostileCamera.hostile = True
        rig.camera.hostile = True  # the next read raises CameraError(HOSTILE)
        expect(page.locator("#state")).to_have_text("FAULT", timeout=BROWSER_WAIT_MS)
        expect(page.locator("#latched")).to_contain_text("onerror")
        assert HOSTILE in page.inner_text("#latched")
        assert HOSTILE in page.inner_text("#faults tbody")
        assert page.inner_text("#device") == '<b id="injected">door</b>'
        assert page.evaluate("window.__pwned") is None
        assert page.query_selector("#injected") is None
        assert page.query_selector("main img") is None and page.query_selector("main script") is None
    finally:
        rig.camera.hostile = False
        HostileCamera.hostile = False
        server.stop()
