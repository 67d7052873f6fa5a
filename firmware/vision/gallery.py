"""Encrypted on-disk storage of opted-in members' face templates (AES-256-GCM, per-member records).

File layout (all integers big-endian):

    MAGIC (10 bytes) | salt (16 random bytes, new on every write) | record* | manifest

Each record and the manifest is `u32 length | 12-byte nonce | AES-GCM ciphertext+tag`. The
plaintext of a record is CBOR `{"m": member_id, "t": float32 LE bytes}`; the manifest's is
`{"n": record count, "h": SHA-256 over the record blobs}`. The associated data of blob i is
MAGIC | salt | i, so a record cannot be moved, copied from another file or dropped without the
load failing. Member ids are encrypted too (they may identify a person). Files are replaced
atomically (temporary file in the same folder, fsync, rename), so a crash leaves the old or the
new gallery, never a mix, and the temporary file holds only ciphertext.
"""
from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import cbor2
import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firmware.fsutil import write_atomic
from firmware.protocol import cbor as bounded_cbor
from firmware.protocol.decoded import Decoded
from firmware.statefolder import StateFolder

from .matcher import Gallery, TemplateError, normalise_template

MAGIC = b"HGGALLERY\x01"
SALT_BYTES = 16
NONCE_BYTES = 12
KEY_BYTES = 32
MAX_FILE_BYTES = 512 * 1024 * 1024  # refuse absurd files before reading them into memory
MAX_MEMBER_ID_CHARS = 256
# Each record and the manifest is a 2-entry map without tags. A record's template is a float32
# vector (512-D: 2 KB; 64 KB leaves room for any embedder we would ship).
MAX_RECORD_PLAIN_BYTES = 64 * 1024
MAX_ITEM_NODES = 16
MAX_ITEM_DEPTH = 2


class GalleryError(Exception):
    """The gallery file or key is unusable: wrong key, tampered, truncated or malformed."""


def load_or_create_key(state_dir: str | Path) -> bytes:
    """The 32-byte gallery key in `state_dir/gallery.key`, created (mode 0600) if missing."""
    path = StateFolder(Path(state_dir)).gallery_key
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_key(path)
    try:
        os.write(fd, os.urandom(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    return load_key(path)


def load_key(path: str | Path) -> bytes:
    """Read a 32-byte key file; refuse one that others can read."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise GalleryError(f"cannot read gallery key: {exc.strerror}") from None
    if mode & 0o077:
        raise GalleryError("gallery key file must not be readable by group or others (chmod 600)")
    if len(data) != KEY_BYTES:
        raise GalleryError("gallery key file must hold exactly 32 bytes")
    return data


def _check_key(key: bytes) -> AESGCM:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
        raise GalleryError("gallery key must be 32 bytes")
    return AESGCM(bytes(key))


def _aad(salt: bytes, index: int) -> bytes:
    return MAGIC + salt + struct.pack(">I", index)


def encode_gallery(records: dict[str, np.ndarray], key: bytes) -> bytes:
    """Serialise and encrypt {member_id: template} into the file format above."""
    aead = _check_key(key)
    salt = os.urandom(SALT_BYTES)
    blobs: list[bytes] = []
    for index, (member_id, template) in enumerate(records.items()):
        vec = normalise_template(template)
        plain = cbor2.dumps({"m": member_id, "t": vec.astype("<f4").tobytes()})
        nonce = os.urandom(NONCE_BYTES)
        blobs.append(nonce + aead.encrypt(nonce, plain, _aad(salt, index)))
    digest = hashlib.sha256(b"".join(blobs)).digest()
    manifest_plain = cbor2.dumps({"n": len(blobs), "h": digest})
    nonce = os.urandom(NONCE_BYTES)
    blobs.append(nonce + aead.encrypt(nonce, manifest_plain, _aad(salt, len(records))))
    return MAGIC + salt + b"".join(struct.pack(">I", len(b)) + b for b in blobs)


def _split_blobs(data: bytes) -> tuple[bytes, list[bytes]]:
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + SALT_BYTES:
        raise GalleryError("not a healthgate gallery file")
    salt = data[len(MAGIC) : len(MAGIC) + SALT_BYTES]
    offset = len(MAGIC) + SALT_BYTES
    blobs: list[bytes] = []
    while offset < len(data):
        if offset + 4 > len(data):
            raise GalleryError("gallery file is truncated")
        (length,) = struct.unpack_from(">I", data, offset)
        offset += 4
        if length < NONCE_BYTES + 16 or offset + length > len(data):
            raise GalleryError("gallery file is truncated or malformed")
        blobs.append(data[offset : offset + length])
        offset += length
    if not blobs:
        raise GalleryError("gallery file has no manifest")
    return salt, blobs


def _loads(plain: bytes) -> Decoded:
    """A record or manifest map: the key can leak or the writer be buggy, so even authenticated
    plaintext is decoded bounded (no tags, so no value sharing; a few nodes; no trailing bytes)."""
    return bounded_cbor.loads(plain, max_bytes=MAX_RECORD_PLAIN_BYTES, allowed_tags=(),
                              max_nodes=MAX_ITEM_NODES, max_depth=MAX_ITEM_DEPTH)


def decode_gallery(data: bytes, key: bytes) -> dict[str, np.ndarray]:
    """Decrypt and check a gallery file's bytes; one GalleryError for every failure."""
    aead = _check_key(key)
    salt, blobs = _split_blobs(data)
    records, manifest_blob = blobs[:-1], blobs[-1]
    try:
        manifest = _loads(
            aead.decrypt(manifest_blob[:NONCE_BYTES], manifest_blob[NONCE_BYTES:], _aad(salt, len(records)))
        )
    except InvalidTag:
        raise GalleryError("gallery cannot be decrypted: wrong key or tampered file") from None
    except ValueError as exc:  # CborRefused included (value sharing, bounds, tags)
        raise GalleryError(f"gallery manifest is malformed ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("n") != len(records):
        raise GalleryError("gallery record count does not match its manifest")
    if manifest.get("h") != hashlib.sha256(b"".join(records)).digest():
        raise GalleryError("gallery records do not match their manifest")
    out: dict[str, np.ndarray] = {}
    for index, blob in enumerate(records):
        try:
            plain = aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _aad(salt, index))
            item = _loads(plain)
            member_id, raw = item["m"], item["t"]
        except InvalidTag:
            raise GalleryError("gallery record cannot be decrypted: tampered file") from None
        except (ValueError, KeyError, TypeError) as exc:  # CborRefused is a ValueError
            raise GalleryError(f"gallery record is malformed ({type(exc).__name__})") from None
        if not isinstance(member_id, str) or not isinstance(raw, bytes) or len(raw) % 4:
            raise GalleryError("gallery record is malformed")
        if member_id in out:
            raise GalleryError("gallery holds a member twice")
        try:
            out[member_id] = normalise_template(np.frombuffer(raw, dtype="<f4"))
        except TemplateError:
            raise GalleryError("gallery record holds an invalid template") from None
    return out


class GalleryStore:
    """The encrypted gallery file of one kiosk: load, add a member, erase a member.

    One writer at a time (the provisioning tool); the kiosk only reads.
    """

    def __init__(self, path: str | Path, key: bytes) -> None:
        self.path = Path(path)
        _check_key(key)
        self._key = bytes(key)

    def read_records(self) -> dict[str, np.ndarray]:
        """All members' templates; an absent file is an empty gallery."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise GalleryError(f"cannot read gallery: {exc.strerror}") from None
        if size > MAX_FILE_BYTES:
            raise GalleryError("gallery file is larger than the allowed maximum")
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise GalleryError(f"cannot read gallery: {exc.strerror}") from None
        return decode_gallery(data, self._key)

    def write_records(self, records: dict[str, np.ndarray]) -> None:
        write_atomic(self.path, encode_gallery(records, self._key))

    def load_gallery(self, dim: int | None = None) -> Gallery:
        """The in-memory Gallery for 1:N search (dim taken from the records when not given)."""
        records = self.read_records()
        if dim is None:
            dim = next(iter(records.values())).size if records else 1
        gallery = Gallery(dim=dim, capacity=max(len(records), 1))
        try:
            gallery.add_many(records.items())
        except TemplateError as exc:
            raise GalleryError(f"gallery template does not fit the model: {exc}") from None
        return gallery

    def put(self, member_id: str, template: object) -> None:
        """Add or replace one member's template and rewrite the file atomically."""
        if not isinstance(member_id, str) or not member_id or len(member_id) > MAX_MEMBER_ID_CHARS:
            raise ValueError("member_id must be a non-empty string of at most 256 characters")
        vec = normalise_template(template)
        records = self.read_records()
        if records:
            dim = next(iter(records.values())).size
            if vec.size != dim:
                raise GalleryError(f"template has {vec.size} values; this gallery holds {dim}")
        records[member_id] = vec
        self.write_records(records)

    def erase(self, member_id: str) -> bool:
        """Remove a member and rewrite the file without its record; returns whether it existed."""
        records = self.read_records()
        if member_id not in records:
            return False
        del records[member_id]
        self.write_records(records)
        return True
