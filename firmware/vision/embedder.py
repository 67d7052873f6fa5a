"""Face embedder: aligned RGB chip -> L2-normalised template (int8 TFLite dlib ResNet)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from firmware.vision.runtime import TFLiteModel


def l2_normalise(vector: np.ndarray) -> np.ndarray:
    """Unit-length float32 copy of `vector`; raises ValueError on a zero or non-finite vector."""
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm < 1e-12:
        raise ValueError("embedding has zero or non-finite norm")
    return v / norm


class Embedder:
    """Runs the embedding model on an aligned chip (size x size x 3 RGB uint8).

    The model takes raw pixels (0..255) and does its own mean subtraction, so the int8 input
    quantisation is exact (scale 1, zero point -128).
    """

    def __init__(self, model_path: str | Path, num_threads: int = 2) -> None:
        self.model = TFLiteModel(model_path, num_threads=num_threads)
        shape = self.model.input_shape
        if len(shape) != 4 or shape[0] != 1 or shape[1] != shape[2] or shape[3] != 3:
            raise ValueError(f"unexpected embedder input shape {shape}")
        self.chip_size = shape[1]
        self.dimension = int(np.prod(self.model.outputs[0].shape[1:]))

    def embed_chip(self, chip: np.ndarray, mirror_average: bool = False) -> np.ndarray:
        """L2-normalised embedding of one aligned chip.

        With `mirror_average`, the mirrored chip is embedded too and the two unit vectors are
        averaged: a face and its mirror image are the same person, and averaging removes part
        of the alignment noise (costs a second inference).
        """
        if chip.shape != (self.chip_size, self.chip_size, 3):
            raise ValueError(f"chip must be {self.chip_size}x{self.chip_size}x3, got {chip.shape}")
        template = l2_normalise(self._raw(chip))
        if mirror_average:
            template = l2_normalise(template + l2_normalise(self._raw(chip[:, ::-1])))
        return template

    def _raw(self, chip: np.ndarray) -> np.ndarray:
        if chip.dtype == np.uint8:  # the aligned chip: straight to int8, no float round trip
            (raw,) = self.model.run_pixels(chip)
        else:
            (raw,) = self.model.run(chip[None].astype(np.float32))
        return raw
