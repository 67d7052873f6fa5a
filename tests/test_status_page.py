"""The kiosk status page: the loop's snapshot, the JSON twin, /metrics, the token, the config."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware.config import ConfigError, parse_config
from firmware.status.board import MAX_REASON_KEYS, OTHER_REASON, StatusBoard
from firmware.status.collect import StatusCollector, StatusParts
from firmware.status.server import StatusServer
from tests.kiosk_harness import Rig, make_rig
from tests.waiting import wait_for

TOKEN = "s3cret-status-token-0123"


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers


def serve_rig(rig: Rig, token: str = "", device_id: str = "kiosk-test") -> StatusServer:
    """The rig's kiosk behind a status page on a free loopback port (also the browser tests')."""
    parts = StatusParts(rig.kiosk.status, device_id, rig.display, rig.eventlog.path,
                        rig.eventlog.quota_bytes)
    server = StatusServer(StatusCollector(parts), "127.0.0.1", 0, token)
    server.start()
    return server


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = make_rig(tmp_path)
    yield rig
    rig.stop()


# ---- the board ---------------------------------------------------------------------------
def test_board_publishes_frozen_snapshots() -> None:
    clock = [1_800_000_000.0]
    board = StatusBoard(wall=lambda: clock[0], monotonic=lambda: clock[0])
    before = board.snapshot()
    board.on_state("IDLE")
    board.on_fault("camera", "gone")
    board.on_decision(True, None)
    board.on_decision(False, "DCC_EXPIRED")
    snap = board.snapshot()
    assert before.state == "BOOT" and snap is not before  # a reader's copy never changes
    assert dict(snap.faults) == {"camera": "gone"}
    assert dict(snap.decisions) == {"granted": 1, "denied": 1}
    assert dict(snap.reasons) == {"DCC_EXPIRED": 1}
    board.on_clear("camera")
    snap = board.snapshot()
    assert not snap.faults and snap.recent_faults[-1].cleared == clock[0]
    clock[0] += 86400.0  # next UTC day: today's counters start again
    board.on_decision(False, "NO_FACE")
    assert dict(board.snapshot().decisions) == {"denied": 1}


def test_board_bounds_reason_keys() -> None:
    board = StatusBoard()
    for index in range(MAX_REASON_KEYS + 5):
        board.on_decision(False, f"REASON_{index}")
    reasons = board.snapshot().reasons
    assert len(reasons) == MAX_REASON_KEYS + 1 and reasons[OTHER_REASON] == 5


def test_board_frames_survive_a_capture_restart() -> None:
    now = [0.0]
    board = StatusBoard(monotonic=lambda: now[0])
    board.tick(10, 0)
    now[0] = 1.0
    board.tick(40, 2)  # 30 frames in one second
    assert board.snapshot().camera_fps == pytest.approx(30.0)
    now[0] = 2.0
    board.tick(5, 2)  # a new capture thread counts from zero
    assert board.snapshot().frames == 45


# ---- the page with a running kiosk -----------------------------------------------------------
def test_json_follows_a_camera_fault_and_recovery(rig: Rig) -> None:
    server = serve_rig(rig)
    try:
        url = server.url + "status.json"
        first = wait_for(lambda: (s := json.loads(fetch(url)[1]))["camera"]["fps"] and s,
                         "camera frames counted")
        assert first["state"] == "IDLE" and first["device_id"] == "kiosk-test"
        assert first["display"]["round_trip_ms"] is not None
        assert first["eventlog"]["events"] >= 1 and first["eventlog"]["quota_bytes"]
        rig.camera.script("disconnect")
        faulted = wait_for(lambda: (s := json.loads(fetch(url)[1]))["state"] == "FAULT" and s,
                           "FAULT on the page")
        assert "camera" in faulted["faults"]
        assert faulted["recent_faults"][0]["part"] == "camera"
        rig.camera.reconnect()
        recovered = wait_for(lambda: (s := json.loads(fetch(url)[1]))["state"] == "IDLE" and s,
                             "IDLE again")
        assert recovered["recent_faults"][0]["cleared"] is not None
    finally:
        server.stop()


def test_decisions_counted_by_outcome_and_reason(rig: Rig) -> None:
    server = serve_rig(rig)
    try:
        rig.show_code(rig.valid_code())
        rig.wait_state("GRANTED")
        rig.next_person()  # the loop's clock is the rig's: the hold ends when the test says
        rig.show_code("not a credential at all")
        rig.wait_state("DENIED")
        status = wait_for(lambda: (s := json.loads(fetch(server.url + "status.json")[1]))
                          ["today"]["decisions"].get("denied") and s, "the denial counted")
        assert status["today"]["decisions"] == {"granted": 1, "denied": 1}
        assert sum(status["today"]["reasons"].values()) == 1
        text = json.dumps(status)
        assert "pseudonym" not in text and "HC1:" not in text  # nothing personal, no credential
        code, body, headers = fetch(server.url + "metrics")
        assert code == 200 and headers["Content-Type"].startswith("text/plain")
        metrics = body.decode()
        assert 'healthgate_kiosk_decisions_today{outcome="granted"} 1.0' in metrics
        assert 'healthgate_kiosk_state{state="' in metrics
        assert "healthgate_kiosk_camera_frames" in metrics
    finally:
        server.stop()


def test_token_required_when_configured(rig: Rig) -> None:
    server = serve_rig(rig, TOKEN)
    try:
        for path in ("", "status.json", "metrics"):
            assert fetch(server.url + path)[0] == 401
            assert fetch(server.url + path + "?token=wrong-token-wrong-token")[0] == 401
            assert fetch(server.url + path, {"Authorization": "Bearer x" * 300})[0] == 401
            assert fetch(server.url + path + "?token=" + TOKEN)[0] == 200
            assert fetch(server.url + path, {"Authorization": "Bearer " + TOKEN})[0] == 200
        assert fetch(server.url + "status.js")[0] == 200  # no data in the script
        assert fetch(server.url + "nope?token=" + TOKEN)[0] == 404
    finally:
        server.stop()


def test_read_only_and_strict_headers(rig: Rig) -> None:
    server = serve_rig(rig)
    try:
        request = urllib.request.Request(server.url + "status.json", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 405
        code, body, headers = fetch(server.url)
        assert code == 200 and b"<script" in body and b"innerHTML" not in body
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert b"innerHTML" not in fetch(server.url + "status.js")[1]
    finally:
        server.stop()


# ---- configuration -------------------------------------------------------------------------
def test_config_status_section() -> None:
    def parse(status: Any) -> Any:
        return parse_config({"camera": {"source": "fake"}, "status": status})

    assert parse({}).status.listen == ""  # off by default
    config = parse({"listen": "127.0.0.1:8080", "token": TOKEN})
    assert config.status.listen == "127.0.0.1:8080" and config.status.token == TOKEN
    assert parse({"listen": "[::1]:0"}).status.listen == "[::1]:0"
    for bad, key in (({"listen": "8080"}, "status.listen"), ({"listen": "host:99999"}, "status.listen"),
                     ({"listen": 8080}, "status.listen"), ({"token": "short"}, "status.token"),
                     ({"token": "with a space in it!"}, "status.token"),
                     ({"tokens": "x"}, "status.tokens")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse(bad)


def test_built_kiosk_serves_its_page_when_configured(tmp_path: Path) -> None:
    """`status.listen` wires the page into `healthgate run`: off by default, closed with the app."""
    from firmware import app as app_module
    from firmware.config import load_config
    from tests.test_app import _replay_config

    config = load_config(_replay_config(tmp_path, f'[status]\nlisten = "127.0.0.1:0"\ntoken = "{TOKEN}"'))
    app = app_module.build(config)
    try:
        assert app.status_server is not None
        app.start_background()
        url = app.status_server.url
        code, body, _ = fetch(url + "status.json?token=" + TOKEN)
        status = json.loads(body)
        assert code == 200 and status["device_id"] == "replay-1"
        assert status["clock"]["trusted"] in (True, False) and status["trust"]["items"] == {}
    finally:
        app.close()
    with pytest.raises(OSError):
        fetch(url + "status.json?token=" + TOKEN)
    plain = tmp_path / "plain"
    plain.mkdir()
    app = app_module.build(load_config(_replay_config(plain)))
    try:
        assert app.status_server is None
    finally:
        app.close()
