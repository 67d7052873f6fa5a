"""The fleet dashboard in a real browser: log in, a demo fleet, a device page, a new token, a
provisioning code."""
from __future__ import annotations

import re
from datetime import datetime
from collections.abc import Iterator
from typing import Any

import pytest

from firmware.protocol.timestamps import rfc3339, utc_now
from fleet.dashboard.auth import add_operator
from fleet.dashboard.demo import seed_demo_fleet
from fleet.runner import ServerHandle
from fleet.server import run_in_thread
from fleet.trust import generate_signing_key
from tests.browser_support import browser_page, screenshot  # noqa: F401 (fixture)

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install '.[dev]')")
expect = sync_api.expect
PASSWORD = "correct horse battery"


@pytest.fixture
def fleet(tmp_path: Any) -> Iterator[ServerHandle]:
    key_path = tmp_path / "signing.key"
    generate_signing_key(key_path)  # it signs the provisioning codes
    handle = run_in_thread(f"sqlite:///{tmp_path}/fleet.db", signing_key_path=key_path)
    add_operator(handle.store, "alice", PASSWORD, rfc3339(utc_now()))
    seed_demo_fleet(handle.store)
    yield handle
    handle.stop()


def log_in(page: Any, url: str) -> None:
    page.goto(url + "/dashboard/login")
    page.fill("input[name=name]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#devices")).to_be_visible()


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


def test_create_provisioning_code_and_read_its_qr(fleet: ServerHandle, browser_page: Any) -> None:
    """The QR the page draws is read by the kiosk's own reader and passes the kiosk's check."""
    import cv2
    import numpy as np

    from firmware.codes import FrameScanner
    from firmware.setup.code import check_code

    page = browser_page
    log_in(page, fleet.url)
    page.click("nav >> text=Provisioning codes")
    expect(page.locator("input[name=fleet_url]")).to_have_value(fleet.url)
    page.fill("input[name=ttl_minutes]", "10")
    page.click("#create-provisioning-code")
    figure = page.locator("#provisioning-code")
    expect(figure.locator("svg")).to_be_visible()
    expect(page.locator("#code-expires")).to_contain_text("UTC")
    screenshot(page, "fleet-provisioning-code.png")
    png = figure.locator("svg").screenshot()
    image = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR),
                         cv2.COLOR_BGR2RGB)
    texts = [read.text for read in FrameScanner().scan(image) if read.text]
    assert len(texts) == 1 and texts[0].startswith("HGP1:"), texts
    code = check_code(texts[0], fleet.app.state.signing_key.public_key(), utc_now())
    assert code.fleet_url == fleet.url
    assert code.code_id == page.locator("#code-id").inner_text()
    shown = datetime.fromisoformat(page.locator("#code-expires").get_attribute("datetime"))
    assert code.expires_at == shown.timestamp() <= utc_now().timestamp() + 10 * 60


def test_publish_trust_data(fleet: ServerHandle, browser_page: Any, tmp_path: Any) -> None:
    """An operator signs and publishes a file; kiosks' envelope check accepts what was stored."""
    from firmware.protocol.envelope import verify_envelope

    rules = tmp_path / "rules.json"
    rules.write_text('[{"Identifier": "GR-EU-0001", "Country": "EU"}]')
    page = browser_page
    log_in(page, fleet.url)
    page.click("nav >> text=Trust data")
    page.select_option("#trust-name", "dcc-rules")
    page.set_input_files("#trust-file", str(rules))
    page.click("#publish-trust")
    expect(page.locator("#published")).to_contain_text("dcc-rules")
    expect(page.locator("#published")).to_contain_text("version 1")
    row = page.locator("#history tbody tr", has_text="dcc-rules")
    expect(row).to_contain_text("alice")
    screenshot(page, "fleet-trust.png")
    item = fleet.store.trust("dcc-rules")
    assert item is not None
    envelope = verify_envelope(item.envelope, [fleet.app.state.signing_key.public_key()],
                               expected_name="dcc-rules")
    assert envelope["content"] == [{"Identifier": "GR-EU-0001", "Country": "EU"}]
