"""Where the shipped face models are: `tflite_models/` beside the `firmware` package, by path."""
from __future__ import annotations

from pathlib import Path


def default_model_dir() -> Path:
    """The shipped models' folder, in the tree or installed (pyproject installs `tflite_models`
    with its *.tflite and *.json next to `firmware`); found by path, so the kiosk never imports
    the build package and its build-time dependencies."""
    return Path(__file__).resolve().parents[2] / "tflite_models"
