"""Enrolment: images -> one encrypted template; quality failures reported by position; erase; CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware.vision import quality
from firmware.vision.gallery import GalleryStore
from firmware.vision.types import Face
from provisioning import enrol as enrol_mod
from provisioning.enrol import enrol, erase, main

KEY = bytes(range(32))
LM = np.array([[101, 116], [149, 116], [125, 145], [106, 170], [144, 170]], dtype=np.float32)
BOX = (75.0, 80.0, 175.0, 200.0)


class PixelPipeline:
    """Stand-in for FacePipeline until the int8 models ship: the real detector is replaced by the
    known face position of deep-funneled LFW images and the embedder by the normalised 16x16 grey
    face (a real function of the pixels, so noise keeps it close and another person moves it)."""

    threshold = 0.9

    def detect(self, rgb: np.ndarray) -> list[Face]:
        if rgb.shape[:2] != (250, 250):
            return []
        return [Face(BOX, LM.copy(), 0.95)]

    def embed_face(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        import cv2

        grey = cv2.cvtColor(rgb[80:200, 75:175], cv2.COLOR_RGB2GRAY)
        small = cv2.resize(grey, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
        return small - small.mean()


@pytest.fixture(scope="module")
def lfw(shared_data: Path) -> dict[str, list[Path]]:
    """Two LFW people with the most images (keys A and B): three images each."""
    root = shared_data / "lfw-view1" / "images"
    folders = sorted(root.glob("*/"), key=lambda d: (-len(list(d.glob("*.jpg"))), d.name))
    if len(folders) < 2 or len(list(folders[1].glob("*.jpg"))) < 3:
        pytest.skip(f"LFW View 1 images not found under {root}")
    return {"A": sorted(folders[0].glob("*.jpg"))[:3], "B": sorted(folders[1].glob("*.jpg"))[:3]}


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_enrol_from_noisy_shots_of_one_image(tmp_path: Path, lfw: dict[str, list[Path]]) -> None:
    base = _read(lfw["A"][0])
    rng = np.random.default_rng(0)
    shots = [np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8) for _ in range(3)]
    gallery = tmp_path / "gallery.bin"
    result = enrol(shots, "member-1", gallery, KEY, PixelPipeline())
    assert result.enrolled and result.used_images == 3 and result.failures == []
    stored = GalleryStore(gallery, KEY).read_records()
    expected = PixelPipeline().embed_face(base, Face(BOX, LM, 1.0))
    assert float(stored["member-1"] @ (expected / np.linalg.norm(expected))) > 0.99
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery.bin"]


def test_failures_are_reported_by_position_and_good_images_still_count(tmp_path: Path, lfw: dict[str, list[Path]]) -> None:
    import cv2

    good = _read(lfw["A"][0])
    blurred = cv2.GaussianBlur(good, (0, 0), 4.0)
    dark = (good * 0.1).astype(np.uint8)
    not_image = tmp_path / "notes.txt"
    not_image.write_text("not an image")
    items = [blurred, good, dark, np.zeros((100, 100, 3), np.uint8), str(not_image), 42]
    result = enrol(items, "m", tmp_path / "g.bin", KEY, PixelPipeline())
    assert result.enrolled and result.used_images == 1
    assert result.failures == [
        (0, quality.FACE_BLURRED),
        (2, quality.FACE_TOO_DARK),
        (3, quality.NO_FACE),
        (4, enrol_mod.UNREADABLE_IMAGE),
        (5, enrol_mod.UNREADABLE_IMAGE),
    ]


def test_no_usable_image_writes_nothing(tmp_path: Path, lfw: dict[str, list[Path]]) -> None:
    dark = (_read(lfw["A"][0]) * 0.1).astype(np.uint8)
    result = enrol([dark], "m", tmp_path / "g.bin", KEY, PixelPipeline())
    assert not result.enrolled and result.reason == enrol_mod.NOT_ENOUGH_IMAGES
    assert list(tmp_path.iterdir()) == []


def test_two_different_people_are_refused(tmp_path: Path, lfw: dict[str, list[Path]]) -> None:
    images = [_read(lfw["A"][0]), _read(lfw["B"][0])]
    result = enrol(images, "m", tmp_path / "g.bin", KEY, PixelPipeline())
    assert not result.enrolled and result.reason == enrol_mod.INCONSISTENT_FACES
    assert result.min_pair_similarity < 0.9
    assert list(tmp_path.iterdir()) == []


def test_min_images(tmp_path: Path, lfw: dict[str, list[Path]]) -> None:
    result = enrol([lfw["A"][0]], "m", tmp_path / "g.bin", KEY, PixelPipeline(), min_images=2)
    assert not result.enrolled and result.reason == enrol_mod.NOT_ENOUGH_IMAGES
    with pytest.raises(ValueError):
        enrol([], " ", tmp_path / "g.bin", KEY, PixelPipeline())


def test_erase(tmp_path: Path, lfw: dict[str, list[Path]]) -> None:
    gallery = tmp_path / "g.bin"
    assert enrol([lfw["A"][0]], "a", gallery, KEY, PixelPipeline()).enrolled
    assert enrol([lfw["B"][0]], "b", gallery, KEY, PixelPipeline()).enrolled
    assert erase("a", gallery, KEY) and not erase("a", gallery, KEY)
    assert set(GalleryStore(gallery, KEY).read_records()) == {"b"}


def test_cli_erase_and_refusals(tmp_path: Path, lfw: dict[str, list[Path]], capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    gallery = state / "gallery.hgg"  # the default name the kiosk loads
    state.mkdir(mode=0o700)
    from firmware.vision.gallery import load_or_create_key

    key = load_or_create_key(state)
    assert enrol([lfw["A"][0]], "member-9", gallery, key, PixelPipeline()).enrolled
    # enrol without consent is refused before anything is read
    assert main(["enrol", "--member", "x", "--state", str(state), str(lfw["B"][0])]) == 2
    assert main(["erase", "--member", "member-9", "--state", str(state)]) == 0
    assert main(["erase", "--member", "member-9", "--state", str(state)]) == 1
    assert "no such member" in capsys.readouterr().out
    assert GalleryStore(gallery, key).read_records() == {}
    # a wrong key file is refused with a message, not a traceback
    bad_key = tmp_path / "bad.key"
    bad_key.write_bytes(bytes(32))
    bad_key.chmod(0o600)
    assert main(["erase", "--member", "member-9", "--state", str(state), "--key-file", str(bad_key)]) == 1
    assert "wrong key or tampered" in capsys.readouterr().err


def _models_present() -> bool:
    try:
        from firmware.vision import FacePipeline

        FacePipeline()
        return True
    except Exception:
        return False


@pytest.mark.skipif(not _models_present(), reason="shipped face models not built yet (tflite_models/)")
def test_cli_enrol_with_the_real_pipeline(tmp_path: Path, lfw: dict[str, list[Path]], capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)  # provisioned: enrolment never creates a state folder
    images = [str(p) for p in lfw["A"]]
    code = main(["enrol", "--member", "m-1", "--state", str(state), "--consent", *images])
    out = capsys.readouterr().out
    assert code == 0, out
    assert sorted(p.name for p in state.iterdir()) == ["gallery.hgg", "gallery.key"]
    from firmware.vision import FacePipeline
    from firmware.vision.gallery import load_key

    pipeline = FacePipeline()
    gallery = GalleryStore(state / "gallery.hgg", load_key(state / "gallery.key")).load_gallery()
    probe = pipeline.embed(_read(lfw["A"][0]))
    other = pipeline.embed(_read(lfw["B"][0]))
    assert gallery.best_match(probe, pipeline.threshold)[0] == "m-1"
    assert gallery.best_match(other, pipeline.threshold) is None
