"""write_atomic: whole replacement, exact permissions, nothing left behind when a write fails."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import firmware.fsutil as fsutil
from firmware.vision.record_template import TemplateKeyring


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_replaces_the_file_with_the_requested_mode_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    target.chmod(0o644)
    previous = os.umask(0o000)
    try:
        fsutil.write_atomic(target, b"new")
        assert (target.read_bytes(), _mode(target)) == (b"new", 0o600)
        fsutil.write_atomic(str(target), b"public", mode=0o644)
        assert (target.read_bytes(), _mode(target)) == (b"public", 0o644)
    finally:
        os.umask(previous)
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_rename_keeps_the_old_file_and_removes_the_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "gallery.bin"
    target.write_bytes(b"old")

    def power_cut(*_: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(fsutil.os, "replace", power_cut)
    with pytest.raises(OSError, match="power cut"):
        fsutil.write_atomic(target, b"new" * 1000)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["gallery.bin"]


def test_a_missing_folder_is_an_error_not_a_silent_write(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fsutil.write_atomic(tmp_path / "absent" / "file", b"x")


def test_template_key_reinstall_replaces_a_loose_key_file_with_a_private_one(tmp_path: Path) -> None:
    keyring = TemplateKeyring(tmp_path / "keys")
    path = keyring.install("site", b"\x01" * 32)
    path.chmod(0o644)  # e.g. copied in by hand
    assert keyring.install("site", b"\x02" * 32) == path
    assert (path.read_bytes(), _mode(path)) == (b"\x02" * 32, 0o600)
    assert [p.name for p in path.parent.iterdir()] == ["site.key"]
