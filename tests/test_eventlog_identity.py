"""Device identity: key and id created once with private permissions, then loaded unchanged."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware import identity
from firmware.statefolder import StateFolder


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_created_once_with_private_permissions(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = identity.load_or_create(state)
    assert mode(state) == 0o700
    assert mode(state / StateFolder.DEVICE_KEY) == 0o600
    assert mode(state / StateFolder.DEVICE_ID) == 0o600
    assert first.device_id.startswith("hg-") and len(first.device_id) == 19
    again = identity.load_or_create(state)
    assert again.device_id == first.device_id and again.public_key_raw == first.public_key_raw
    signature = again.key.sign(b"hello")
    first.key.public_key().verify(signature, b"hello")
    assert not list(state.glob("*.tmp"))


def test_provisioned_device_id_is_kept_and_enforced(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert identity.load_or_create(state, "kiosk-shop-12").device_id == "kiosk-shop-12"
    assert identity.load_or_create(state).device_id == "kiosk-shop-12"
    with pytest.raises(identity.IdentityError) as caught:
        identity.load_or_create(state, "kiosk-shop-13")
    assert caught.value.code == "DEVICE_ID_MISMATCH"


@pytest.mark.parametrize("bad", ["", "a", "has space", "../../etc", "x" * 65])
def test_bad_device_ids_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(identity.IdentityError) as caught:
        identity.load_or_create(tmp_path / "state", bad)
    assert caught.value.code == "DEVICE_ID_INVALID"


def test_loose_directory_is_tightened_but_a_loose_key_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    identity.load_or_create(state)
    state.chmod(0o755)
    identity.load_or_create(state)
    assert mode(state) == 0o700
    (state / StateFolder.DEVICE_KEY).chmod(0o644)
    with pytest.raises(identity.IdentityError) as caught:
        identity.load_or_create(state)
    assert caught.value.code == "DEVICE_KEY_PERMISSIONS"


def test_unreadable_or_foreign_key_is_reported(tmp_path: Path) -> None:
    state = tmp_path / "state"
    identity.load_or_create(state)
    key_file = state / StateFolder.DEVICE_KEY
    key_file.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(identity.IdentityError) as caught:
        identity.load_or_create(state)
    assert caught.value.code == "DEVICE_KEY_UNREADABLE"


def test_load_never_creates(tmp_path: Path) -> None:
    with pytest.raises(identity.IdentityError) as caught:
        identity.load(tmp_path / "empty")
    assert caught.value.code == "DEVICE_IDENTITY_MISSING"
    created = identity.load_or_create(tmp_path / "state")
    assert identity.load(tmp_path / "state").public_key_b64 == created.public_key_b64
    assert isinstance(created.key, Ed25519PrivateKey)
