"""The shipped models are found by path, and an installed (non-editable) package carries them."""
from __future__ import annotations

import fnmatch
import json
import tomllib
from pathlib import Path

from firmware.vision.modeldir import default_model_dir

ROOT = Path(__file__).resolve().parents[1]


def test_the_model_folder_is_the_one_beside_firmware() -> None:
    folder = default_model_dir()
    assert folder == ROOT / "tflite_models"
    assert (folder / "face_models.json").is_file() and (folder / "pad_models.json").is_file()


def test_packaging_installs_every_model_file_the_manifests_name() -> None:
    """setuptools installs `tflite_models` beside `firmware` with the files package-data
    matches; every file a manifest names must match, or a wheel would ship without it."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert any(fnmatch.fnmatch("tflite_models", pattern)
               for pattern in setuptools["packages"]["find"]["include"])
    patterns = setuptools["package-data"]["*"]
    folder = default_model_dir()
    names = {"face_models.json", "pad_models.json"}
    for manifest in ("face_models.json", "pad_models.json"):
        names |= {value for value in _strings(json.loads((folder / manifest).read_text()))
                  if value.endswith(".tflite")}
    assert len(names) > 2, "the manifests name no model file: nothing was checked"
    for name in sorted(names):
        assert (folder / name).is_file(), name
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []
