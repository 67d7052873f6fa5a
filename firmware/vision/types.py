"""Plain data types shared by the face pipeline's stages."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Face:
    """One detected face in frame pixel coordinates.

    `box` is (x0, y0, x1, y1); `landmarks` is a (5, 2) float array of (x, y) in the ArcFace
    5-point template order, in image coordinates: the eye with the smaller x, the eye with the
    larger x, the nose tip, the mouth corner with the smaller x, the mouth corner with the larger
    x. `score` is the detector confidence in [0, 1].
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]
