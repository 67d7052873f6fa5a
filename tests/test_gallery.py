"""Encrypted gallery storage: round trip, erase, tamper detection, atomic replace, no plaintext."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from firmware.vision import gallery as gallery_mod
from firmware.vision.gallery import (
    GalleryError,
    GalleryStore,
    decode_gallery,
    encode_gallery,
    load_key,
    load_or_create_key,
)

KEY = bytes(range(32))


def _templates(n: int, dim: int = 128, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return {f"member-{i:04d}": rows[i] for i in range(n)}


def test_round_trip_and_identify(tmp_path: Path) -> None:
    store = GalleryStore(tmp_path / "gallery.bin", KEY)
    records = _templates(20)
    store.write_records(records)
    loaded = store.read_records()
    assert list(loaded) == list(records)
    for member_id, template in records.items():
        np.testing.assert_allclose(loaded[member_id], template, atol=1e-6)
    gallery = store.load_gallery()
    assert len(gallery) == 20 and gallery.dim == 128
    assert gallery.identify(records["member-0007"])[0][0] == "member-0007"


def test_nothing_readable_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gallery.bin"
    records = _templates(3)
    GalleryStore(path, KEY).write_records(records)
    data = path.read_bytes()
    for member_id, template in records.items():
        assert member_id.encode() not in data
        assert template.astype("<f4").tobytes()[:16] not in data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_absent_file_is_empty(tmp_path: Path) -> None:
    store = GalleryStore(tmp_path / "none.bin", KEY)
    assert store.read_records() == {}
    assert len(store.load_gallery(dim=128)) == 0


def test_put_and_erase_rewrite_atomically(tmp_path: Path) -> None:
    path = tmp_path / "gallery.bin"
    store = GalleryStore(path, KEY)
    records = _templates(3)
    for member_id, template in records.items():
        store.put(member_id, template)
    before = path.read_bytes()
    assert store.erase("member-0001")
    assert not store.erase("member-0001")
    after = path.read_bytes()
    assert before != after
    assert set(store.read_records()) == {"member-0000", "member-0002"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery.bin"]  # no temp left behind


def test_put_replaces_and_rejects_other_dimension(tmp_path: Path) -> None:
    store = GalleryStore(tmp_path / "g.bin", KEY)
    store.put("a", np.ones(128))
    store.put("a", -np.ones(128))
    assert store.read_records()["a"][0] < 0
    with pytest.raises(GalleryError):
        store.put("b", np.ones(64))
    with pytest.raises(ValueError):
        store.put("", np.ones(128))


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "g.bin"
    store = GalleryStore(path, KEY)
    store.put("a", np.ones(16))
    original = path.read_bytes()

    def failing_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gallery_mod.os, "replace", failing_replace)
    with pytest.raises(OSError):
        store.put("b", np.ones(16))
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["g.bin"]


def test_wrong_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "g.bin"
    GalleryStore(path, KEY).write_records(_templates(2))
    with pytest.raises(GalleryError, match="wrong key or tampered"):
        GalleryStore(path, bytes(32)).read_records()


def test_every_single_byte_flip_is_detected() -> None:
    data = encode_gallery(_templates(2, dim=8), KEY)
    for offset in range(len(data)):
        corrupt = bytearray(data)
        corrupt[offset] ^= 0x01
        with pytest.raises(GalleryError):
            decode_gallery(bytes(corrupt), KEY)


def test_truncation_and_record_splicing_detected() -> None:
    data = encode_gallery(_templates(3, dim=8), KEY)
    for cut in (0, 5, len(gallery_mod.MAGIC) + 16, len(data) - 1, len(data) - 40):
        with pytest.raises(GalleryError):
            decode_gallery(data[:cut], KEY)
    # drop one record: re-assemble blobs without the second one
    salt, blobs = gallery_mod._split_blobs(data)
    import struct

    spliced = gallery_mod.MAGIC + salt + b"".join(
        struct.pack(">I", len(b)) + b for i, b in enumerate(blobs) if i != 1
    )
    with pytest.raises(GalleryError):
        decode_gallery(spliced, KEY)
    # a record from another file (other salt) does not fit
    other_salt, other_blobs = gallery_mod._split_blobs(encode_gallery(_templates(3, dim=8), KEY))
    mixed = gallery_mod.MAGIC + salt + b"".join(
        struct.pack(">I", len(b)) + b for b in [other_blobs[0]] + blobs[1:]
    )
    with pytest.raises(GalleryError):
        decode_gallery(mixed, KEY)


def test_garbage_is_refused() -> None:
    for junk in (b"", b"hello", os.urandom(300), gallery_mod.MAGIC + os.urandom(100)):
        with pytest.raises(GalleryError):
            decode_gallery(junk, KEY)
    with pytest.raises(GalleryError):
        decode_gallery(b"x", b"short key")


def test_key_file_created_private_and_reused(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    assert len(key) == 32
    key_path = tmp_path / "gallery.key"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert load_or_create_key(tmp_path) == key
    key_path.chmod(0o644)
    with pytest.raises(GalleryError, match="chmod 600"):
        load_key(key_path)
    key_path.chmod(0o600)
    key_path.write_bytes(b"short")
    with pytest.raises(GalleryError):
        load_key(key_path)
    with pytest.raises(GalleryError):
        load_key(tmp_path / "missing.key")


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=30, deadline=None)
@given(
    ids=st.lists(st.text(min_size=1, max_size=40), max_size=8, unique=True),
    dim=st.integers(1, 64),
    seed=st.integers(0, 2**31 - 1),
)
def test_codec_round_trip_property(ids: list[str], dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    records = {}
    for member_id in ids:
        vec = rng.standard_normal(dim).astype(np.float32)
        if np.linalg.norm(vec) < 1e-3:
            vec[0] = 1.0
        records[member_id] = vec / np.linalg.norm(vec)
    decoded = decode_gallery(encode_gallery(records, KEY), KEY)
    assert list(decoded) == ids
    for member_id in ids:
        np.testing.assert_allclose(decoded[member_id], records[member_id], atol=1e-6)
