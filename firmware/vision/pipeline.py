"""FacePipeline: detect -> align -> embed -> compare, with the shipped int8 models."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware.protocol.decoded import Decoded
from firmware.vision.align import AlignmentError, align_face
from firmware.vision.detector import BlazeFaceDetector, DetectorConfig
from firmware.vision.embedder import Embedder
from firmware.vision.modeldir import default_model_dir
from firmware.vision.types import Face

MANIFEST_NAME = "face_models.json"


@dataclass(frozen=True)
class ModelManifest:
    """What the build wrote about the shipped models (tflite_models/face_models.json)."""

    detector_file: str
    embedder_file: str
    chip_size: int
    template: np.ndarray  # (4, 2): eyes, nose, mouth centre in chip pixels
    threshold: float
    embedder_name: str
    mirror_average: bool
    threshold_by_mode: dict[bool, float]  # mirror_average -> threshold, where the build gave both
    # the stricter bar for 1:N (face pass): FAR 1e-5 per impostor pair; None if not calibrated
    face_pass_threshold: float | None = None

    @classmethod
    def load(cls, folder: Path) -> "ModelManifest":
        data: dict[str, Decoded] = json.loads((folder / MANIFEST_NAME).read_text())
        template = np.asarray(data["alignment_template"], dtype=np.float64)
        if template.shape != (4, 2):
            raise ValueError(f"{MANIFEST_NAME}: alignment_template must be 4x2")
        return cls(
            detector_file=str(data["detector"]["file"]),
            embedder_file=str(data["embedder"]["file"]),
            chip_size=int(data["embedder"]["chip_size"]),
            template=template,
            threshold=float(data["embedder"]["threshold"]),
            embedder_name=str(data["embedder"]["name"]),
            mirror_average=bool(data["embedder"].get("mirror_average", False)),
            threshold_by_mode={
                mode: float(data["embedder"][key])
                for mode, key in ((True, "threshold_mirror_average"), (False, "threshold_single"))
                if key in data["embedder"]
            },
            face_pass_threshold=(float(data["embedder"]["face_pass_threshold"])
                                 if "face_pass_threshold" in data["embedder"] else None),
        )


class FacePipeline:
    """The face stack used by the kiosk, enrolment and benchmarks.

    `FacePipeline()` loads the shipped int8 models once. Templates are L2-normalised float32
    vectors; `similarity` is their cosine; two templates belong to the same person when
    `similarity(a, b) >= threshold` (calibrated on LFW View 1 at FAR 0.1 %, see docs/models.md).
    Nothing is written to disk.
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        num_threads: int = 2,
        detector_config: DetectorConfig | None = None,
        threshold: float | None = None,
        min_face_px: float = 24.0,
        mirror_average: bool | None = None,
    ) -> None:
        folder = Path(model_dir) if model_dir is not None else default_model_dir()
        self.manifest = ModelManifest.load(folder)
        self.detector = BlazeFaceDetector(
            folder / self.manifest.detector_file, num_threads=num_threads, config=detector_config
        )
        self.embedder = Embedder(folder / self.manifest.embedder_file, num_threads=num_threads)
        if self.embedder.chip_size != self.manifest.chip_size:
            raise ValueError("embedder input size disagrees with face_models.json")
        # Each embedding mode has its own calibrated threshold: `threshold` in the manifest goes
        # with the manifest's default mode, `threshold_single` / `_mirror_average` with each.
        self.mirror_average = self.manifest.mirror_average if mirror_average is None else mirror_average
        if self.mirror_average == self.manifest.mirror_average:
            calibrated: float | None = self.manifest.threshold
        else:
            calibrated = self.manifest.threshold_by_mode.get(self.mirror_average)
        if threshold is not None:
            calibrated = float(threshold)
        if calibrated is None:
            raise ValueError("no calibrated threshold for this mirror_average mode: pass threshold=")
        self.threshold: float = calibrated
        # 1:N only for the manifest's own embedding mode (the only one it was calibrated for)
        self.face_pass_threshold: float | None = (
            self.manifest.face_pass_threshold
            if self.mirror_average == self.manifest.mirror_average else None)
        # Faces narrower than this (in frame pixels) are not embedded: too little detail.
        self.min_face_px = float(min_face_px)
        # Milliseconds per stage of the latest `embed` call (detect, align, embed, total): what
        # bench/lfw.py reports per face. Diagnostic only; nothing depends on it.
        self.last_timings: dict[str, float] = {}

    @staticmethod
    def _check_image(rgb: np.ndarray) -> None:
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError("expected an RGB image shaped (H, W, 3)")
        if rgb.dtype != np.uint8:
            raise ValueError(f"expected uint8 pixels, got {rgb.dtype}")

    def detect(self, rgb: np.ndarray, refine_all: bool = True) -> list[Face]:
        """All faces in the image, highest detector score first. `refine_all=False` refines
        the keypoints of the largest face only (the others keep first-pass keypoints)."""
        self._check_image(rgb)
        return self.detector.detect(rgb, refine_all=refine_all)

    def align(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """The aligned chip (chip_size x chip_size RGB uint8) that the embedder sees; in memory."""
        self._check_image(rgb)
        return align_face(rgb, face.landmarks, self.manifest.template, self.manifest.chip_size)

    def embed_face(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """Template of a given detected face (raises AlignmentError on degenerate landmarks)."""
        return self.embedder.embed_chip(self.align(rgb, face), mirror_average=self.mirror_average)

    def embed(self, rgb: np.ndarray) -> np.ndarray | None:
        """Template of the largest face in the image, or None if there is no usable face."""
        start = time.perf_counter()
        self._check_image(rgb)
        # Only the face that is embedded gets the refinement passes (same face, same landmarks
        # as picking the largest from detect(), without refining the others).
        faces = self.detector.detect(rgb, largest_only=True, min_width=self.min_face_px)
        detected = time.perf_counter()
        timings = {"detect": (detected - start) * 1000.0}
        self.last_timings = timings
        if not faces:
            return None
        largest = faces[0]
        try:
            chip = self.align(rgb, largest)
            aligned = time.perf_counter()
            template = self.embedder.embed_chip(chip, mirror_average=self.mirror_average)
        except (AlignmentError, ValueError):
            return None
        done = time.perf_counter()
        timings.update(align=(aligned - detected) * 1000.0, embed=(done - aligned) * 1000.0,
                       total=(done - start) * 1000.0)
        return template

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> float:
        """Cosine similarity of two templates (they need not be normalised)."""
        va = np.asarray(a, dtype=np.float32).reshape(-1)
        vb = np.asarray(b, dtype=np.float32).reshape(-1)
        if va.shape != vb.shape:
            raise ValueError(f"template sizes differ: {va.shape} vs {vb.shape}")
        denom = float(np.linalg.norm(va) * np.linalg.norm(vb))
        if not np.isfinite(denom) or denom < 1e-12:
            raise ValueError("zero or non-finite template")
        return float(np.dot(va, vb) / denom)

    def is_match(self, a: np.ndarray, b: np.ndarray) -> bool:
        """True when the two templates are judged the same person."""
        return self.similarity(a, b) >= self.threshold
