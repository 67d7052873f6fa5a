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
