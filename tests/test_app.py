"""Kiosk assembly: what happens when an optional part's data cannot be used."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from firmware.app import load_member_gallery
from firmware.config import parse_config


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
