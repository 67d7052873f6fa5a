"""Kiosk assembly: what happens when an optional part's data cannot be used."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from firmware.app import load_member_gallery
from firmware.config import load_config, parse_config


def test_tampered_gallery_switches_face_pass_off_loudly(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    from firmware.vision.gallery import GalleryStore, load_or_create_key

    config = parse_config({"camera": {"source": "fake"}, "face": {"face_pass": True},
                           "state": {"dir": str(tmp_path)}})
    store = GalleryStore(tmp_path / "gallery.hgg", load_or_create_key(tmp_path))
    store.put("shop/00ff", [1.0] * 128)
    assert len(load_member_gallery(config, tmp_path)) == 1
    data = bytearray((tmp_path / "gallery.hgg").read_bytes())
    data[-5] ^= 0x01  # one flipped bit anywhere is detected
    (tmp_path / "gallery.hgg").write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR):
        assert load_member_gallery(config, tmp_path) is None
    assert "face pass OFF" in caplog.text


def _replay_config(tmp_path: Path, extra: str = "") -> Path:
    """An offline kiosk replaying a few empty frames from files (no fleet, no faces)."""
    from PIL import Image

    from firmware.demo.frames import background

    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(3):
        Image.fromarray(background(160, 120)).save(frames / f"{index:04d}.png")
    from firmware.identity import load_or_create

    load_or_create(tmp_path / "state", "replay-1")  # provisioned, as `init` does
    config = tmp_path / "kiosk.toml"
    config.write_text(f"""
[kiosk]
result_hold_s = 0.3
[camera]
source = "files"
path = "{frames}"
fps = 30
[face]
enabled = false
[state]
dir = "{tmp_path / 'state'}"
{extra}
""")
    return config


def test_run_tells_systemd_it_is_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit is Type=notify: without READY=1 systemd kills the kiosk after its start timeout."""
    import socket

    from firmware.app import main as run_main

    config = _replay_config(tmp_path)
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert run_main(["--config", str(config)]) == 0
        manager.settimeout(0.1)
        received = []
        try:
            while True:
                received.append(manager.recv(64))
        except socket.timeout:
            pass
    assert b"READY=1" in received


def test_build_that_fails_closes_what_it_opened(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A damaged pinned fleet key (base64, but not a key) stops the start after the event log
    and the display are open: both are closed again, and `run` says why instead of a traceback."""
    import base64

    import firmware.app as app_module
    from firmware.display import DisplayError
    from firmware.eventlog import EventLog, EventLogError
    from firmware.eventlog.restart import open_or_restart

    opened: dict[str, Any] = {}
    real_display = app_module.open_display

    def spy_log(*args: Any, **kwargs: Any) -> EventLog:
        opened["log"] = open_or_restart(*args, **kwargs)
        return opened["log"]

    def spy_display(*args: Any, **kwargs: Any) -> Any:
        opened["display"] = real_display(*args, **kwargs)
        return opened["display"]

    monkeypatch.setattr(app_module, "open_or_restart", spy_log)
    monkeypatch.setattr(app_module, "open_display", spy_display)
    config = _replay_config(tmp_path, '[fleet]\nurl = "http://127.0.0.1:9"')
    (tmp_path / "state" / "fleet_key.pub").write_text(base64.b64encode(b"short").decode() + "\n")
    with pytest.raises(ValueError):
        app_module.build(load_config(config))
    with pytest.raises(EventLogError):
        opened["log"].append("boot", {})
    with pytest.raises(DisplayError):
        opened["display"].show(app_module.screen_for("IDLE", None, None), timeout=0.5)
    assert app_module.main(["--config", str(config)]) == 2
    assert "fleet public key" in capsys.readouterr().out


def test_trust_data_is_loaded_before_the_service_is_ready(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The first load has nothing to fall back on, so it happens before READY=1 (once systemd
    watches the loop, a long load there would trip the watchdog); later reloads run in the
    background (tests/test_loop_parts.py)."""
    import firmware.app as app_module
    from firmware.trustprovider import TrustProvider

    events: list[str] = []
    real_read = TrustProvider._read

    def spy_read(self: TrustProvider) -> Any:
        events.append("trust loaded")
        return real_read(self)

    monkeypatch.setattr(TrustProvider, "_read", spy_read)
    monkeypatch.setattr(app_module, "notify", lambda message: events.append(message))
    assert app_module.main(["--config", str(_replay_config(tmp_path))]) == 0
    assert "READY=1" in events and events.index("trust loaded") < events.index("READY=1")
