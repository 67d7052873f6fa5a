"""The fleet dashboard: login, device list and page, tokens, trust history, escaping, /metrics."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from firmware.protocol.timestamps import rfc3339, utc_now
from fleet.cli import main as fleet_main
from fleet.dashboard.auth import OperatorError, add_operator
from fleet.dashboard.demo import seed_demo_fleet
from fleet.runner import ServerHandle
from fleet.server import run_in_thread
from fleet.storage import Store

PASSWORD = "correct horse battery"
HOSTILE_DEVICE = "x<script>alert(1)</script>"  # not a valid API device id: inserted below
HOSTILE_PROBLEM = '<img src=x onerror="alert(1)">&amp;'


@pytest.fixture
def server(db_url: str) -> Iterator[ServerHandle]:
    handle = run_in_thread(db_url)
    add_operator(handle.store, "alice", PASSWORD, rfc3339(utc_now()))
    seed_demo_fleet(handle.store, names={"faulted": "shop-7-entrance"})
    yield handle
    handle.stop()


def login(handle: ServerHandle, password: str = PASSWORD) -> requests.Session:
    session = requests.Session()
    answer = session.post(handle.url + "/dashboard/login",
                          data={"name": "alice", "password": password}, timeout=10)
    assert answer.status_code == (200 if password == PASSWORD else 401)
    return session


def test_no_page_without_login(server: ServerHandle) -> None:
    for path in ("/", "/devices/shop-12-door", "/devices/nobody", "/trust", "/tokens"):
        answer = requests.get(server.url + "/dashboard" + path, allow_redirects=False, timeout=10)
        assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/login"
    answer = requests.post(server.url + "/dashboard/tokens", data={"ttl_hours": "1"},
                           allow_redirects=False, timeout=10)
    assert answer.status_code == 303
    bad = login(server, "wrong password!")
    assert bad.get(server.url + "/dashboard/", allow_redirects=False, timeout=10).status_code == 303
    forged = requests.get(server.url + "/dashboard/", cookies={"hg_session": "eyJvIjoiYWxpY2UiLCJlIjo5OTk5OTk5OTk5fQ==.00"},
                          allow_redirects=False, timeout=10)
    assert forged.status_code == 303


def test_device_list_and_page(server: ServerHandle) -> None:
    session = login(server)
    listing = session.get(server.url + "/dashboard/", timeout=10)
    assert listing.status_code == 200
    html = listing.text
    for device in ("shop-12-door", "shop-7-entrance", "mall-3-west", "depot-1-gate"):
        assert device in html
    assert "fake camera: device disconnected" in html and "EVENT_FORK" in html
    assert re.search(r'class="offline"', html) and re.search(r'class="fault"', html)
    assert "script-src 'self'" in listing.headers["content-security-policy"]
    page = session.get(server.url + "/dashboard/devices/shop-12-door", timeout=10)
    assert page.status_code == 200
    assert "Decisions per hour" in page.text and "DCC_EXPIRED" in page.text
    assert "pseudonym" not in page.text
    assert ">3<" in page.text  # three events still to come: the backlog
    missing = session.get(server.url + "/dashboard/devices/nobody-here", timeout=10)
    assert missing.status_code == 404 and "nobody-here" in missing.text


def test_every_string_is_escaped(server: ServerHandle) -> None:
    store = server.store
    with store.db.transaction() as tx:  # names the API would refuse, as a damaged DB could hold
        tx.execute("INSERT INTO devices (device_id, public_key, registered_at) VALUES (?, ?, ?)",
                   (HOSTILE_DEVICE, "AAAA", "2026-12-01T00:00:00.000Z"))
        tx.execute("INSERT INTO device_status (device_id, last_seen, parts, firmware) VALUES "
                   "(?, ?, ?, ?)", (HOSTILE_DEVICE, rfc3339(utc_now()),
                                    '{"camera": {"seq": 1, "fault": true, "problem": "%s"}}'
                                    % HOSTILE_PROBLEM.replace('"', '\\"'), "<b>1</b>"))
        tx.execute("INSERT INTO incidents (device_id, seq, reason, detail, at) VALUES "
                   "(?, ?, ?, ?, ?)", (HOSTILE_DEVICE, 1, "EVENT_FORK", "<i>x</i>", "now"))
    session = login(server)
    for path in ("/", "/devices/" + requests.utils.quote(HOSTILE_DEVICE, safe="")):
        html = session.get(server.url + "/dashboard" + path, timeout=10).text
        assert "<script>alert(1)" not in html and "<img src=x" not in html
        assert "<b>1</b>" not in html and "<i>x</i>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "&lt;img src=x onerror=" in html and "&amp;amp;" in html


def test_tokens_created_with_csrf_and_trust_history(server: ServerHandle, tmp_path: Path) -> None:
    session = login(server)
    page = session.get(server.url + "/dashboard/tokens", timeout=10).text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    refused = session.post(server.url + "/dashboard/tokens", data={"ttl_hours": "2"}, timeout=10)
    assert refused.status_code == 403
    created = session.post(server.url + "/dashboard/tokens",
                           data={"ttl_hours": "2", "csrf": csrf}, timeout=10)
    assert created.status_code == 201
    token = re.search(r'<code id="new-token">([A-Za-z0-9_-]+)</code>', created.text).group(1)
    from firmware.sync.trustsync import register_device
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    assert register_device(server.url, token, "new-kiosk", Ed25519PrivateKey.generate()) == "new-kiosk"
    assert session.post(server.url + "/dashboard/tokens", data={"ttl_hours": "-1", "csrf": csrf},
                        timeout=10).status_code == 422
    from fleet.trust import generate_signing_key, publish
    key = generate_signing_key(tmp_path / "k")
    publish(server.store, key, "dcc-rules", [], published_by="<u>bob</u>")
    history = session.get(server.url + "/dashboard/trust", timeout=10).text
    assert "dcc-rules" in history and "&lt;u&gt;bob&lt;/u&gt;" in history


def test_fleet_metrics(server: ServerHandle) -> None:
    text = requests.get(server.url + "/metrics", timeout=10).text
    assert "healthgate_fleet_events_stored_total" in text
    assert 'healthgate_fleet_events_rejected_total{reason="EVENT_FORK"} 1.0' in text
    assert "healthgate_fleet_devices_registered 4.0" in text
    assert "/dashboard" not in requests.get(server.url + "/openapi.json", timeout=10).text


def test_migration_backfills_an_existing_database(tmp_path: Path) -> None:
    """A database from before the dashboard gets its counts from the events it holds."""
    import fleet.storage as storage

    url = f"sqlite:///{tmp_path}/old.db"
    saved = storage.MIGRATIONS
    storage.MIGRATIONS = saved[:1]
    try:
        old = Store(url)
        from fleet.dashboard.demo import chain, register
        from fleet.ingest import ingest as real_ingest
        import fleet.ingest as ingest_module
        key = register(old, "kiosk-old", utc_now())
        events = chain(key, "kiosk-old", utc_now(), 8)
        with old.transaction() as tx:  # as the old ingest stored them: no aggregates
            from fleet.storage import event_row
            tx.executemany("INSERT INTO events (device_id, seq, ts, kind, body, prev_hash, hash, "
                           "sig, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           [event_row(e, rfc3339(utc_now())) for e in events])
        old.close()
        assert real_ingest is ingest_module.ingest
    finally:
        storage.MIGRATIONS = saved
    new = Store(url)
    try:
        assert new.schema_version() == 3
        with new.db.transaction(readonly=True) as tx:
            assert tx.execute("SELECT events, firmware FROM device_status").fetchone() == (9, "0.1.0")
            assert tx.execute("SELECT SUM(count) FROM decision_hours").fetchone()[0] == 8
    finally:
        new.close()


def test_operator_add_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    import io

    url = f"sqlite:///{tmp_path}/fleet.db"
    Store(url).close()
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert fleet_main(["operator", "add", "carol", "--db", url, "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert fleet_main(["operator", "add", "carol", "--db", url, "--password-stdin"]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert fleet_main(["operator", "add", "dave", "--db", url, "--password-stdin"]) == 2
    assert "exists" in capsys.readouterr().err
    store = Store(url)
    try:
        with pytest.raises(OperatorError):
            add_operator(store, "<bad name>", PASSWORD, "now")
        with store.db.transaction(readonly=True) as tx:
            digest = tx.execute("SELECT password_hash FROM operators WHERE name = 'carol'").fetchone()[0]
        assert digest.startswith("$argon2") and PASSWORD not in digest
    finally:
        store.close()


def test_demo_serve_leaves_both_pages_up(tmp_path: Path) -> None:
    """`healthgate demo --serve`: the dashboard with the demo kiosk and the kiosk's page."""
    from io import StringIO

    from firmware.demo.run import run_demo

    seen: dict[str, object] = {}

    def look(addresses: dict[str, str]) -> None:
        session = requests.Session()
        session.post(addresses["dashboard"] + "login", timeout=10,
                     data={"name": addresses["operator"], "password": addresses["password"]})
        seen["list"] = session.get(addresses["dashboard"], timeout=10).text
        seen["kiosk"] = requests.get(addresses["kiosk_status"] + "status.json", timeout=10).json()

    out = StringIO()
    result = run_demo(tmp_path, out=out, faces=False, serve=look)
    assert result.ok, out.getvalue()
    assert "demo-kiosk" in str(seen["list"]) and "shop-7-entrance" in str(seen["list"])
    kiosk = seen["kiosk"]
    assert isinstance(kiosk, dict) and kiosk["device_id"] == "demo-kiosk"
    assert sum(kiosk["today"]["decisions"].values()) == len(result.decisions)
    assert "kiosk status page: http://127.0.0.1:" in out.getvalue()
