"""Build-time: LFW View 1 pair lists and image loading (images are read, never copied)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Pair:
    """Two LFW image paths and whether they show the same person."""

    first: Path
    second: Path
    same: bool


def image_path(root: Path, name: str, number: int) -> Path:
    return root / "images" / name / f"{name}_{number:04d}.jpg"


def read_pairs(root: Path, pairs_file: str) -> list[Pair]:
    """Parse an LFW pairs file (`Name i j` same-person, `Name1 i Name2 j` different)."""
    lines = (root / pairs_file).read_text().strip().splitlines()
    pairs = []
    for line in lines[1:]:
        parts = line.split("\t")
        if len(parts) == 3:
            name, i, j = parts
            pairs.append(Pair(image_path(root, name, int(i)), image_path(root, name, int(j)), True))
        elif len(parts) == 4:
            n1, i, n2, j = parts
            pairs.append(Pair(image_path(root, n1, int(i)), image_path(root, n2, int(j)), False))
        else:
            raise ValueError(f"bad pairs line: {line!r}")
    return pairs


def load_rgb(path: Path) -> np.ndarray:
    """RGB uint8 image from a JPEG path."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def unique_images(pairs: list[Pair]) -> list[Path]:
    """Distinct image paths of a pair list, in first-seen order."""
    seen: dict[Path, None] = {}
    for p in pairs:
        seen.setdefault(p.first, None)
        seen.setdefault(p.second, None)
    return list(seen)


def pair_cosines(pairs: list[Pair], templates: dict[Path, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(same, cosine of the two unit templates) per pair; a pair with an image that has no
    template scores -1, so no threshold ever accepts it."""
    same = np.array([p.same for p in pairs])
    scores = np.array([float(np.dot(templates[p.first], templates[p.second]))
                       if p.first in templates and p.second in templates else -1.0 for p in pairs])
    return same, scores


def roc_figures(same: np.ndarray, scores: np.ndarray, far: float = 0.001) -> dict[str, float]:
    """Threshold at a false-accept rate, TAR there, and the best-accuracy threshold.

    The FAR threshold is the smallest score that keeps impostor accepts at or below `far`.
    """
    same = same.astype(bool)
    impostor = np.sort(scores[~same])[::-1]
    allowed = int(np.floor(far * len(impostor)))
    # Accept iff score >= t: t just above the (allowed+1)-th highest impostor score.
    threshold = float(np.nextafter(impostor[allowed], np.inf)) if allowed < len(impostor) else float(impostor[-1])
    tar = float(np.mean(scores[same] >= threshold))
    measured_far = float(np.mean(scores[~same] >= threshold))
    candidates = np.unique(scores)
    accuracies = [np.mean((scores >= t) == same) for t in candidates]
    best = int(np.argmax(accuracies))
    return {
        "threshold_at_far": threshold,
        "tar_at_far": tar,
        "far_measured": measured_far,
        "best_accuracy": float(accuracies[best]),
        "best_accuracy_threshold": float(candidates[best]),
    }


def accuracy_at(same: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    return float(np.mean((scores >= threshold) == same.astype(bool)))
