"""Enrolled face templates inside status records: sealed with a site key, opened on the kiosk.

A status record may carry the enrolled template of its subject for the 1:1 check. The fleet
seals it with AES-256-GCM under a site template key that technicians install on each kiosk
(`healthgate-provision template-key`); the record names the key by `face_key_id`. The sealed
form is `version (1 byte) | nonce (12) | ciphertext+tag`, the plaintext the float32
little-endian template, and the associated data binds the key id, so a blob cannot be opened
under another key's name. Opened templates live in memory only.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firmware.fsutil import write_atomic
from firmware.vision.gallery import GalleryError, load_key
from firmware.vision.matcher import TemplateError, normalise_template

VERSION = 1
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_TEMPLATE_VALUES = 4096


def _aad(key_id: str) -> bytes:
    return b"healthgate-record-template-v1|" + key_id.encode()


def seal_template(template: object, key: bytes, key_id: str) -> bytes:
    """The sealed form of a template (normalised first) for a status record."""
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise ValueError(f"bad template key id {key_id!r}")
    vector = normalise_template(template)
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, vector.astype("<f4").tobytes(), _aad(key_id))
    return bytes([VERSION]) + nonce + sealed


def open_template(blob: bytes, key: bytes, key_id: str) -> np.ndarray:
    """The template inside a sealed blob; raises TemplateError when it cannot be trusted."""
    if not isinstance(blob, (bytes, bytearray)) or len(blob) < 1 + 12 + 16 + 4:
        raise TemplateError("INVALID_TEMPLATE", "sealed template too short")
    if blob[0] != VERSION:
        raise TemplateError("INVALID_TEMPLATE", f"unknown sealed template version {blob[0]}")
    try:
        plain = AESGCM(key).decrypt(bytes(blob[1:13]), bytes(blob[13:]), _aad(key_id))
    except InvalidTag:
        raise TemplateError("INVALID_TEMPLATE", "sealed template fails authentication") from None
    if len(plain) % 4 or len(plain) // 4 > MAX_TEMPLATE_VALUES:
        raise TemplateError("INVALID_TEMPLATE", "sealed template has a bad length")
    return normalise_template(np.frombuffer(plain, dtype="<f4"))


class TemplateKeyring:
    """Site template keys installed on this kiosk: `<dir>/<key_id>.key`, 32 bytes, mode 0600."""

    def __init__(self, directory: Path) -> None:
        self._directory = Path(directory)

    def install(self, key_id: str, key: bytes) -> Path:
        if not KEY_ID_PATTERN.fullmatch(key_id) or len(key) != 32:
            raise ValueError("a template key needs an id of [A-Za-z0-9._-] and 32 bytes")
        self._directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._directory / f"{key_id}.key"
        write_atomic(path, key)  # a re-installed key replaces the old one whole, mode 0600
        return path

    def open(self, blob: bytes, key_id: str | None) -> np.ndarray | None:
        """The enrolled template, or None when the key is missing or the blob is bad (the
        kiosk then denies: a record's 1:1 check is never skipped)."""
        if key_id is None or not KEY_ID_PATTERN.fullmatch(key_id):
            return None
        try:
            key = load_key(self._directory / f"{key_id}.key")
            return open_template(blob, key, key_id)
        except (GalleryError, TemplateError):
            return None
