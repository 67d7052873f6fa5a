"""FacePipeline end to end with the shipped int8 models on real faces (skimage astronaut, LFW)."""
from __future__ import annotations

import builtins
import random
from pathlib import Path

import numpy as np
import pytest

from firmware.vision import Face, FacePipeline


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """Eileen Collins, NASA portrait shipped by scikit-image (public domain)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_default_pipeline_loads_shipped_models(pipeline):
    assert 0.0 < pipeline.threshold < 1.0
    assert pipeline.embedder.dimension == 128
    assert pipeline.detector.model.is_int8 and pipeline.embedder.model.is_int8


def test_embed_returns_a_unit_template(pipeline, astronaut):
    template = pipeline.embed(astronaut)
    assert template is not None and template.shape == (128,) and template.dtype == np.float32
    assert np.linalg.norm(template) == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(template, pipeline.embed(astronaut))


def test_same_face_moved_and_rescaled_still_matches(pipeline, astronaut):
    import cv2

    original = pipeline.embed(astronaut)
    # Face about 85 px wide in a 640x480 frame (the front model's floor is ~70 px there).
    small = cv2.resize(astronaut, (440, 440), interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 90, dtype=np.uint8)
    frame[40:480, 180:620] = small
    moved = pipeline.embed(frame)
    assert moved is not None
    assert pipeline.similarity(original, moved) >= pipeline.threshold


def test_embed_uses_the_largest_face(pipeline, astronaut):
    import cv2

    # The portrait's head and shoulders, and beside it the same scene at 78 % size.
    big = astronaut[20:300, 60:340]
    frame = np.zeros((280, 500, 3), dtype=np.uint8)
    frame[:, :280] = big
    frame[60:, 280:] = cv2.resize(big, (220, 220), interpolation=cv2.INTER_AREA)
    faces = pipeline.detect(frame)
    assert len(faces) == 2 and all(isinstance(f, Face) for f in faces)
    largest = max(faces, key=lambda f: f.width * f.height)
    assert largest.box[2] <= 280
    assert np.array_equal(pipeline.embed(frame), pipeline.embed_face(frame, largest))


def test_detect_largest_only_refines_just_the_face_that_embed_uses(pipeline, astronaut):
    import cv2

    big = astronaut[20:300, 60:340]
    frame = np.zeros((280, 500, 3), dtype=np.uint8)
    frame[:, :280] = big
    frame[60:, 280:] = cv2.resize(big, (220, 220), interpolation=cv2.INTER_AREA)
    faces = pipeline.detector.detect(frame)
    largest = max(faces, key=lambda f: f.width * f.height)
    smaller = min(faces, key=lambda f: f.width * f.height)
    (only,) = pipeline.detector.detect(frame, largest_only=True)
    assert only.box == largest.box and np.array_equal(only.landmarks, largest.landmarks)
    # A width limit between the two faces keeps the larger; above both, nothing is left.
    between = (smaller.width + largest.width) / 2
    assert pipeline.detector.detect(frame, largest_only=True, min_width=between)[0].box == largest.box
    assert pipeline.detector.detect(frame, largest_only=True, min_width=largest.width + 1) == []


def test_embed_records_the_time_of_each_stage(pipeline, astronaut):
    pipeline.embed(astronaut)
    timings = pipeline.last_timings
    assert set(timings) == {"detect", "align", "embed", "total"}
    assert all(v >= 0 for v in timings.values())
    assert timings["total"] >= timings["detect"] + timings["align"] + timings["embed"] - 1e-6
    pipeline.embed(np.zeros((120, 160, 3), np.uint8))  # no face: only detection ran
    assert set(pipeline.last_timings) == {"detect"}


def test_no_face_gives_none(pipeline):
    from skimage import data

    assert pipeline.embed(np.repeat(data.brick()[..., None], 3, axis=2)) is None
    assert pipeline.embed(np.zeros((480, 640, 3), np.uint8)) is None


def test_bad_input_raises_value_error(pipeline):
    for bad in (np.zeros((64, 64), np.uint8), np.zeros((64, 64, 3), np.float64), "image"):
        with pytest.raises(ValueError):
            pipeline.embed(bad)  # type: ignore[arg-type]


def test_similarity_is_cosine(pipeline):
    a = np.array([1.0, 0.0, 0.0])
    assert pipeline.similarity(a, a * 3) == pytest.approx(1.0)
    assert pipeline.similarity(a, np.array([0.0, 1.0, 0.0])) == pytest.approx(0.0)
    assert pipeline.similarity(a, -a) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        pipeline.similarity(a, np.zeros(3))
    with pytest.raises(ValueError):
        pipeline.similarity(a, np.ones(4))


def test_nothing_is_written_during_inference(pipeline, astronaut, tmp_path, monkeypatch):
    """Privacy: detection, alignment and embedding never open a file for writing."""
    import cv2

    real_open = builtins.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            raise AssertionError(f"write attempted: {file!r} {mode!r}")
        return real_open(file, mode, *args, **kwargs)

    def no_imwrite(*args, **kwargs):
        raise AssertionError("cv2.imwrite called during inference")

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(cv2, "imwrite", no_imwrite)
    monkeypatch.chdir(tmp_path)
    fresh = FacePipeline()  # loading too
    for p in (pipeline, fresh):
        faces = p.detect(astronaut)
        p.embed_face(astronaut, faces[0])
        assert p.embed(astronaut) is not None
    assert list(tmp_path.iterdir()) == []


def _sample_pairs(pairs_file: Path, count: int, seed: int) -> tuple[list, list]:
    lines = pairs_file.read_text().strip().splitlines()[1:]
    same = [line.split("\t") for line in lines if len(line.split("\t")) == 3]
    diff = [line.split("\t") for line in lines if len(line.split("\t")) == 4]
    rng = random.Random(seed)
    return rng.sample(same, count), rng.sample(diff, count)


def test_lfw_same_person_pairs_score_above_different_person_pairs(pipeline, shared_data):
    """On a sample of LFW View 1 DevTest pairs (not used for calibration), the threshold
    accepts most genuine pairs and almost no impostors."""
    root = shared_data / "lfw-view1"
    images = root / "images"
    same, diff = _sample_pairs(root / "pairsDevTest.txt", 30, seed=4)

    def path(name: str, number: str) -> Path:
        return images / name / f"{name}_{int(number):04d}.jpg"

    def score(a: Path, b: Path) -> float | None:
        ta, tb = pipeline.embed(_read_rgb(a)), pipeline.embed(_read_rgb(b))
        return None if ta is None or tb is None else pipeline.similarity(ta, tb)

    genuine = [score(path(n, i), path(n, j)) for n, i, j in same]
    impostor = [score(path(n1, i), path(n2, j)) for n1, i, n2, j in diff]
    genuine_ok = [s for s in genuine if s is not None]
    impostor_ok = [s for s in impostor if s is not None]
    assert len(genuine_ok) >= 27 and len(impostor_ok) >= 27  # detection works on LFW
    accepted_genuine = np.mean(np.array(genuine_ok) >= pipeline.threshold)
    accepted_impostor = np.mean(np.array(impostor_ok) >= pipeline.threshold)
    assert accepted_genuine >= 0.8
    assert accepted_impostor <= 1 / 30
    # dlib descriptors share a cone: impostor cosines sit near 0.83, genuine ones near 0.95.
    assert np.median(genuine_ok) > np.median(impostor_ok) + 0.05


def test_each_embedding_mode_uses_its_own_calibrated_threshold(pipeline, astronaut):
    other = not pipeline.mirror_average
    switched = FacePipeline(mirror_average=other)
    assert switched.threshold == switched.manifest.threshold_by_mode[other]
    assert FacePipeline(mirror_average=other, threshold=0.5).threshold == 0.5
    a, b = pipeline.embed(astronaut), switched.embed(astronaut)
    assert np.linalg.norm(b) == pytest.approx(1.0, abs=1e-5)
    # Averaging with the mirror image moves the template only a little.
    assert 0.97 < pipeline.similarity(a, b) < 1.0


def test_manifest_without_a_threshold_for_the_mode_refuses(tmp_path, astronaut):
    import json
    import shutil

    from firmware.vision.modeldir import default_model_dir

    source = default_model_dir()
    manifest = json.loads((source / "face_models.json").read_text())
    for name in (manifest["detector"]["file"], manifest["embedder"]["file"]):
        shutil.copyfile(source / name, tmp_path / name)
    mode = manifest["embedder"]["mirror_average"]
    manifest["embedder"].pop("threshold_single")
    manifest["embedder"].pop("threshold_mirror_average")
    (tmp_path / "face_models.json").write_text(json.dumps(manifest))
    assert FacePipeline(model_dir=tmp_path).threshold == manifest["embedder"]["threshold"]
    with pytest.raises(ValueError, match="threshold"):
        FacePipeline(model_dir=tmp_path, mirror_average=not mode)
