"""Privacy guard: the face code paths write nothing to disk except the encrypted gallery file.

A Python audit hook records every file opened for writing (and every rename, removal, mkdir)
while quality gates, liveness, matching, anti-sharing, enrolment, erasure and gallery loading
run on real LFW images; the working directory is an empty folder, so anything written through
native code with a relative path would show up there too.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from firmware.vision.antisharing import AntiSharing
from firmware.vision.gallery import GalleryStore
from firmware.vision.liveness import LivenessChecker
from firmware.vision.quality import assess
from firmware.vision.types import Face
from provisioning.enrol import enrol, erase

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_recorders: list[list[tuple[str, str]]] = []
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _recorders:
        return
    if event == "open":
        path, mode, flags = (list(args) + [None, None, None])[:3]
        if isinstance(path, int):
            return  # an already-open descriptor; its opening was recorded
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if writes:
            _recorders[-1].append((event, os.fsdecode(path)))
    elif event in ("os.rename", "os.replace", "os.remove", "os.unlink", "os.mkdir", "os.truncate", "os.link", "os.symlink"):
        _recorders[-1].append((event, os.fsdecode(args[0]) if args and not isinstance(args[0], int) else repr(args)))


@pytest.fixture()
def write_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)  # hooks cannot be removed; it is inert outside this fixture
        _hook_installed = True
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    log: list[tuple[str, str]] = []
    _recorders.append(log)
    try:
        yield log
    finally:
        _recorders.remove(log)
    assert list(cwd.iterdir()) == [], "something was written into the working directory"


def _is_gallery_write(path: str, gallery: Path) -> bool:
    p = Path(path)
    if p == gallery:
        return True
    # the atomic replace writes a sibling temporary file (ciphertext only) first
    return p.parent == gallery.parent and p.name.startswith(f".{gallery.name}.") and p.name.endswith(".tmp")


def _lfw_images(shared_data: Path) -> list[np.ndarray]:
    from PIL import Image

    files = sorted((shared_data / "lfw-view1" / "images").glob("*/*.jpg"))[:6]
    if not files:
        pytest.skip("no LFW images")
    out = []
    for f in files:
        with Image.open(f) as img:
            out.append(np.asarray(img.convert("RGB")))
    return out


def test_the_guard_sees_writes(write_log: list[tuple[str, str]], tmp_path: Path) -> None:
    target = tmp_path / "probe.bin"
    with open(target, "wb") as handle:
        handle.write(b"x")
    os.remove(target)
    assert ("open", str(target)) in write_log and ("os.remove", str(target)) in write_log


def test_face_paths_write_only_the_encrypted_gallery(
    write_log: list[tuple[str, str]], tmp_path: Path, shared_data: Path
) -> None:
    from tests.test_enrol import BOX, LM, PixelPipeline  # the same stand-in as the enrolment tests

    images = _lfw_images(shared_data)
    face = Face(BOX, LM.copy(), 0.9)
    write_log.clear()  # reading the images above is not under test

    for rgb in images:
        assess(rgb, [face])
    checker = LivenessChecker()
    for rgb in [images[0]] * 6:
        checker.add_frame(rgb, face)
    checker.assess()
    guard = AntiSharing(window_s=30, threshold=0.5, clock=lambda: 0.0)
    guard.observe("pseudonym", np.ones(16))

    gallery = tmp_path / "vault" / "gallery.bin"
    gallery.parent.mkdir()
    write_log.clear()
    key = bytes(32)
    assert enrol(images[:1], "member", gallery, key, PixelPipeline()).enrolled
    loaded = GalleryStore(gallery, key).load_gallery()
    loaded.identify(PixelPipeline().embed_face(images[0], face))
    assert erase("member", gallery, key)

    try:
        from firmware.vision import FacePipeline

        pipeline = FacePipeline()
    except Exception:
        pipeline = None  # models not built yet: the stand-in above covered enrolment
    if pipeline is not None:
        for rgb in images:
            for found in pipeline.detect(rgb):
                pipeline.embed_face(rgb, found)
            pipeline.embed(rgb)

    others = [entry for entry in write_log if not _is_gallery_write(entry[1], gallery)]
    assert others == [], f"unexpected writes: {others}"
    assert any(event == "os.rename" for event, _ in write_log)  # the atomic replace happened
    assert sorted(p.name for p in gallery.parent.iterdir()) == ["gallery.bin"]
    data = gallery.read_bytes()
    assert b"member" not in data
