"""The kiosk's state folder: the name of every file and folder in it, and the pinned fleet key."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar


@dataclass(frozen=True)
class StateFolder:
    """`root` is `state.dir` (default /var/lib/healthgate); healthgate-provision sets it up and
    the kiosk, its status and log commands read it. One place names what lives there."""

    root: Path

    DEVICE_KEY: ClassVar[str] = "device_key.pem"  # Ed25519 private key, mode 0600
    DEVICE_ID: ClassVar[str] = "device_id"
    FLEET_KEY: ClassVar[str] = "fleet_key.pub"  # pinned fleet signing key: base64, 32 raw bytes
    EVENTS_DB: ClassVar[str] = "events.db"  # the signed event log (SQLite, with -wal and -shm)
    TRUST_DIR: ClassVar[str] = "trust"  # synced trust envelopes
    TRUST_SYNC_STATE: ClassVar[str] = "trust-state.json"  # in TRUST_DIR: etags, ages, clock skew
    TEMPLATE_KEYS_DIR: ClassVar[str] = "template-keys"  # site keys that open face templates
    GALLERY: ClassVar[str] = "gallery.hgg"  # enrolled members, encrypted (default of face.gallery)
    GALLERY_KEY: ClassVar[str] = "gallery.key"  # opens the gallery
    STATUS_FILE: ClassVar[str] = "status.json"  # what `healthgate status` reads
    LAST_SEEN: ClassVar[str] = "last_seen"  # the latest time the clock showed (Clock)
    USED_PROVISION_CODES: ClassVar[str] = "provision-codes-used.json"  # one-time codes spent here
    SETUP_PENDING: ClassVar[str] = "setup-pending"  # first-boot setup until a code or bundle

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def device_key(self) -> Path:
        return self.root / self.DEVICE_KEY

    @property
    def device_id(self) -> Path:
        return self.root / self.DEVICE_ID

    @property
    def fleet_key(self) -> Path:
        return self.root / self.FLEET_KEY

    @property
    def events_db(self) -> Path:
        return self.root / self.EVENTS_DB

    @property
    def trust_dir(self) -> Path:
        return self.root / self.TRUST_DIR

    @property
    def template_keys_dir(self) -> Path:
        return self.root / self.TEMPLATE_KEYS_DIR

    @property
    def gallery(self) -> Path:
        return self.root / self.GALLERY

    @property
    def gallery_key(self) -> Path:
        return self.root / self.GALLERY_KEY

    @property
    def status_file(self) -> Path:
        return self.root / self.STATUS_FILE

    @property
    def last_seen(self) -> Path:
        return self.root / self.LAST_SEEN

    @property
    def setup_pending(self) -> Path:
        return self.root / self.SETUP_PENDING

    def has_identity(self) -> bool:
        return self.device_key.is_file() and self.device_id.is_file()

    def pinned_fleet_key(self) -> str | None:
        """The pinned fleet key (base64) of a provisioned kiosk, or None."""
        try:
            value = self.fleet_key.read_text().strip()
            base64.b64decode(value, validate=True)
            return value
        except (OSError, ValueError):
            return None
