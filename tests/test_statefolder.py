"""StateFolder: the state folder's names in one place, and the pinned fleet key as stored."""
from __future__ import annotations

import base64
from pathlib import Path

from firmware.statefolder import StateFolder
from provisioning.cli import main as provision


def test_init_writes_the_identity_where_the_kiosk_reads_it(tmp_path: Path) -> None:
    """(register pinning the fleet key where StateFolder reads it: tests/test_provisioning.py)"""
    folder = StateFolder(tmp_path / "state")
    assert not folder.has_identity()
    assert provision(["init", "--state-dir", str(folder.root)]) == 0
    assert folder.has_identity()
    assert folder.device_key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert folder.pinned_fleet_key() is None


def test_a_damaged_fleet_key_file_pins_nothing(tmp_path: Path) -> None:
    folder = StateFolder(tmp_path)
    key = base64.b64encode(bytes(range(32))).decode()
    folder.fleet_key.write_text(key + "\n")
    assert folder.pinned_fleet_key() == key
    folder.fleet_key.write_text("not base64!\n")
    assert folder.pinned_fleet_key() is None
    folder.fleet_key.unlink()
    assert folder.pinned_fleet_key() is None


def test_every_name_is_a_distinct_entry_of_the_folder(tmp_path: Path) -> None:
    folder = StateFolder(tmp_path)
    paths = [folder.device_key, folder.device_id, folder.fleet_key, folder.events_db,
             folder.trust_dir, folder.template_keys_dir, folder.gallery, folder.gallery_key,
             folder.status_file, folder.last_seen]
    assert len(set(paths)) == len(paths)
    assert all(path.parent == tmp_path for path in paths)
