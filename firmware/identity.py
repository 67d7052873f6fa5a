"""Device identity: the Ed25519 signing key and device id kept under the private state directory."""
from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding, NoEncryption, PrivateFormat, PublicFormat, load_pem_private_key)

from firmware.fsutil import write_atomic
from firmware.statefolder import StateFolder

DEVICE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")


class IdentityError(Exception):
    """The identity cannot be loaded or created safely; `code` is a stable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    key: Ed25519PrivateKey

    @property
    def public_key_raw(self) -> bytes:
        return self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def public_key_b64(self) -> str:
        """The form the fleet API's registration endpoint takes."""
        return base64.b64encode(self.public_key_raw).decode()


def derive_device_id(key: Ed25519PrivateKey) -> str:
    """A stable id from the public key, for devices not given one at provisioning."""
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "hg-" + hashlib.sha256(raw).hexdigest()[:16]


def _secure_dir(state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if stat.S_IMODE(state_dir.stat().st_mode) != 0o700:
        os.chmod(state_dir, 0o700)  # our own directory: tighten rather than refuse


def _read_private(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # Like ssh: a key others could read may already be copied; a person must decide.
        raise IdentityError("DEVICE_KEY_PERMISSIONS",
                            f"{path} is readable by others (mode {mode:o}); expected 600")
    return path.read_bytes()


def load_or_create(state_dir: str | Path, device_id: str | None = None) -> DeviceIdentity:
    """Load the device identity from `state_dir`, creating key and id on first use.

    `device_id` (from provisioning) is recorded on first use; afterwards it must match.
    """
    state_dir = Path(state_dir)
    if device_id is not None and not DEVICE_ID_PATTERN.match(device_id):
        raise IdentityError("DEVICE_ID_INVALID",
                            "device id must be 3-64 chars of letters, digits, '.', '_' or '-'")
    _secure_dir(state_dir)
    folder = StateFolder(state_dir)
    key_path, id_path = folder.device_key, folder.device_id
    if key_path.exists():
        try:
            key = load_pem_private_key(_read_private(key_path), password=None)
        except ValueError as exc:
            raise IdentityError("DEVICE_KEY_UNREADABLE", f"{key_path}: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError("DEVICE_KEY_UNREADABLE", f"{key_path} is not an Ed25519 key")
    else:
        key = Ed25519PrivateKey.generate()
        write_atomic(key_path, key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                                 NoEncryption()))
    if id_path.exists():
        stored = id_path.read_text().strip()
        if device_id is not None and stored != device_id:
            raise IdentityError("DEVICE_ID_MISMATCH",
                                f"state dir belongs to device {stored!r}, not {device_id!r}")
        device_id = stored
    else:
        device_id = device_id or derive_device_id(key)
        write_atomic(id_path, (device_id + "\n").encode())
    return DeviceIdentity(device_id=device_id, key=key)


def load(state_dir: str | Path) -> DeviceIdentity:
    """Load an existing identity; never creates one (for tools such as `log verify`)."""
    state_dir = Path(state_dir)
    folder = StateFolder(state_dir)
    if not folder.device_key.exists() or not folder.device_id.exists():
        raise IdentityError("DEVICE_IDENTITY_MISSING", f"no device identity under {state_dir}")
    return load_or_create(state_dir)
