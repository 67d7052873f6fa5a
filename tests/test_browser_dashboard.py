"""The fleet dashboard in a real browser: log in, a demo fleet, a device page, a new token."""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from firmware.protocol.timestamps import rfc3339, utc_now
from fleet.dashboard.auth import add_operator
from fleet.dashboard.demo import seed_demo_fleet
from fleet.runner import ServerHandle
from fleet.server import run_in_thread
from tests.browser_support import browser_page, screenshot  # noqa: F401 (fixture)

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install '.[dev]')")
expect = sync_api.expect
PASSWORD = "correct horse battery"


@pytest.fixture
def fleet(tmp_path: Any) -> Iterator[ServerHandle]:
    handle = run_in_thread(f"sqlite:///{tmp_path}/fleet.db")
    add_operator(handle.store, "alice", PASSWORD, rfc3339(utc_now()))
    seed_demo_fleet(handle.store)
    yield handle
    handle.stop()


def test_login_fleet_device_and_token(fleet: ServerHandle, browser_page: Any) -> None:
    page = browser_page
    page.goto(fleet.url + "/dashboard/devices/shop-7-entrance")
    expect(page).to_have_url(re.compile(r"/dashboard/login$"))  # nothing without login
    page.fill("input[name=name]", "alice")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    expect(page.locator("#error")).to_contain_text("Wrong name or password")
    page.fill("input[name=name]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    rows = page.locator("#devices tbody tr")
    expect(rows).to_have_count(4)
    expect(page.locator("#devices tr.fault")).to_contain_text("shop-7-entrance")
    expect(page.locator("#devices tr.ok", has_text="shop-12-door")).to_have_count(1)
    expect(page.locator("#devices tr.offline")).to_contain_text("mall-3-west")
    expect(page.locator("#devices")).to_contain_text("EVENT_FORK")
    screenshot(page, "fleet-devices.png")
    page.click("text=shop-12-door")
    expect(page.locator("#device-id")).to_have_text("shop-12-door")
    expect(page.locator("svg.chart rect.granted").first).to_be_attached()
    expect(page.locator("#reasons")).to_contain_text("DCC_EXPIRED")
    screenshot(page, "fleet-device.png")
    page.click("nav >> text=Registration tokens")
    page.fill("input[name=ttl_hours]", "2")
    page.click("#create-token")
    expect(page.locator("#new-token")).to_have_text(re.compile(r"^[A-Za-z0-9_-]{20,}$"))
    expect(page.locator("#tokens tbody tr")).to_have_count(5)  # four demo kiosks' + the new one
    page.goto(fleet.url + "/dashboard/devices/no-such-kiosk")
    expect(page.locator("h1")).to_have_text("Not found")
    page.click("text=Log out")
    page.goto(fleet.url + "/dashboard/")
    expect(page).to_have_url(re.compile(r"/dashboard/login$"))
