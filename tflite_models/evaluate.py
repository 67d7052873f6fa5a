"""Build-time: int8-vs-float drift, LFW View 1 threshold and accuracy, latency, ROC plot, manifest."""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tflite_models import lfw_data

HERE = Path(__file__).resolve().parent
DETECTOR_FILE = "blazeface_front_int8.tflite"
EMBEDDER_FILE = "dlib_resnet128_int8.tflite"
MIN_EMBEDDER_COSINE = 0.97  # mean cosine int8 vs float on DevTest chips; below it the build fails
DLIB_DIR = HERE / "dlib"  # the previous default embedder's model folder
THRESHOLD_KEY = "threshold_far_0.1pct_devtrain"


def manifest_threshold(value: float) -> float:
    """A threshold as written to face_models.json: 6 decimals, rounded up, so that rounding can
    never let in the impostor score that the threshold was set just above."""
    return math.ceil(float(value) * 1e6) / 1e6


def face_manifest(*, detector_file: str, embedder_file: str, name: str, chip_size: int,
                  mirror_average: bool, single: dict[str, Any], mirrored: dict[str, Any],
                  template: Any) -> dict[str, Any]:
    """A model folder's face_models.json: the files, the chip, the alignment template and the
    thresholds (FAR 0.1 % on DevTrain) of both embedding modes, `single` and `mirrored` being
    the evaluation figures of each; the manifest's own mode picks `threshold`."""
    thresholds = {mode: manifest_threshold(figures[THRESHOLD_KEY])
                  for mode, figures in (("single", single), ("mirror_average", mirrored))}
    return {
        "detector": {"file": detector_file, "name": "BlazeFace front 128 (MediaPipe), int8"},
        "embedder": {
            "file": embedder_file,
            "name": name,
            "chip_size": chip_size,
            "mirror_average": mirror_average,
            "threshold": thresholds["mirror_average" if mirror_average else "single"],
            # The same calibration for the other embedding mode, so either can be chosen.
            "threshold_mirror_average": thresholds["mirror_average"],
            "threshold_single": thresholds["single"],
            "threshold_basis": "LFW View 1 pairsDevTrain, FAR 0.1 %",
        },
        "alignment_template": [[round(v, 3) for v in row] for row in np.asarray(template).tolist()],
        "alignment_points": ["eye (smaller x)", "eye (larger x)", "nose tip", "mouth centre"],
    }


def write_model_folder(folder: Path, embedder: Path, manifest: dict[str, Any]) -> Path:
    """A folder that FacePipeline(model_dir=...) loads: the shipped detector, `embedder` and
    `manifest` (whose detector and embedder files are these copies)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HERE / DETECTOR_FILE, folder / DETECTOR_FILE)
    shutil.copyfile(embedder, folder / embedder.name)
    (folder / "face_models.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return folder
FAR = 0.001


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def latency_ms(
    work: Path, template: np.ndarray, images: list[Path], embedder: str, mirror_average: bool = False
) -> dict[str, float]:
    """Median ms per face for detect (+refine) + align + embed, 2 threads, models loaded once."""
    from firmware.vision.align import align_face
    from firmware.vision.detector import BlazeFaceDetector
    from firmware.vision.embedder import Embedder

    det = BlazeFaceDetector(work / DETECTOR_FILE, num_threads=2)
    emb = Embedder(work / embedder, num_threads=2)
    frames = [lfw_data.load_rgb(p) for p in images]
    timings: dict[str, list[float]] = {"detect": [], "align": [], "embed": []}
    for rgb in frames[:5]:  # warm-up
        faces = det.detect(rgb)
        if faces:
            emb.embed_chip(align_face(rgb, faces[0].landmarks, template, emb.chip_size), mirror_average)
    for rgb in frames:
        t0 = time.perf_counter()
        faces = det.detect(rgb)
        t1 = time.perf_counter()
        if not faces:
            continue
        chip = align_face(rgb, faces[0].landmarks, template, emb.chip_size)
        t2 = time.perf_counter()
        emb.embed_chip(chip, mirror_average)
        t3 = time.perf_counter()
        for key, value in (("detect", t1 - t0), ("align", t2 - t1), ("embed", t3 - t2)):
            timings[key].append(value * 1000)
    # Median, and the minimum as the figure least disturbed by other load on the machine.
    result = {f"{k}_ms": float(np.median(v)) for k, v in timings.items()}
    result["total_ms"] = float(sum(result.values()))
    result.update({f"{k}_min_ms": float(np.min(v)) for k, v in timings.items()})
    return result


def figures(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Threshold at FAR 0.1 % on DevTrain, checked on DevTest; accuracy with the DevTrain
    best-accuracy threshold (the View 1 protocol: choose on train, report on test)."""
    tr = lfw_data.roc_figures(*train, far=FAR)
    te = lfw_data.roc_figures(*test, far=FAR)
    same_te, scores_te = test
    return {
        "threshold_far_0.1pct_devtrain": tr["threshold_at_far"],
        "tar_devtrain_at_far_0.1pct": tr["tar_at_far"],
        "devtest_tar_at_train_threshold": float(np.mean(scores_te[same_te] >= tr["threshold_at_far"])),
        "devtest_far_at_train_threshold": float(np.mean(scores_te[~same_te] >= tr["threshold_at_far"])),
        "devtest_accuracy_at_train_threshold": lfw_data.accuracy_at(same_te, scores_te, tr["threshold_at_far"]),
        "accuracy_threshold_devtrain": tr["best_accuracy_threshold"],
        "devtest_accuracy": lfw_data.accuracy_at(same_te, scores_te, tr["best_accuracy_threshold"]),
        "devtest_tar_at_far_0.1pct_own_threshold": te["tar_at_far"],
    }


def roc_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path,
             title: str = "LFW View 1 pairsDevTest (BlazeFace + dlib ResNet)") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for label, (same, scores) in curves.items():
        thresholds = np.unique(scores)[::-1]
        far = [np.mean(scores[~same] >= t) for t in thresholds]
        tar = [np.mean(scores[same] >= t) for t in thresholds]
        ax.plot(np.maximum(far, 1e-4), tar, label=label)
    ax.set_xscale("log")
    ax.set_xlim(1e-3 / 2, 1)
    ax.set_ylim(0.85, 1.002)
    ax.axvline(FAR, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def evaluate(
    work: Path,
    template: np.ndarray,
    train_pairs: list[lfw_data.Pair],
    test_pairs: list[lfw_data.Pair],
    aligned_chips: Callable[..., dict[Path, np.ndarray]],
    embed_all: Callable[..., dict[Path, np.ndarray]],
    pair_scores: Callable[..., tuple[np.ndarray, np.ndarray, int]],
    out: Path = DLIB_DIR,
    mirror_average: bool = True,
    detector_out: Path = HERE,
) -> dict[str, Any]:
    train_images, test_images = lfw_data.unique_images(train_pairs), lfw_data.unique_images(test_pairs)
    log(f"evaluate: aligning {len(train_images)} + {len(test_images)} images")
    chips = aligned_chips(work, template, train_images + [p for p in test_images if p not in set(train_images)])
    report: dict[str, Any] = {
        "failed_to_detect": {
            "devtrain": sum(p not in chips for p in train_images),
            "devtest": sum(p not in chips for p in test_images),
        }
    }
    embeddings = {}
    variants = (
        ("int8", EMBEDDER_FILE, False),
        ("int8_mirror_average", EMBEDDER_FILE, True),
        ("float", "dlib_resnet128_float.tflite", False),
    )
    for kind, file, mirror in variants:
        log(f"evaluate: embedding with {kind}")
        embeddings[kind] = embed_all(work / file, chips, mirror)
    test_with_chip = [p for p in test_images if p in chips]
    cosines = np.array([float(np.dot(embeddings["int8"][p], embeddings["float"][p])) for p in test_with_chip])
    report["int8_vs_float_cosine"] = {"mean": float(cosines.mean()), "min": float(cosines.min()),
                                      "p01": float(np.percentile(cosines, 1))}
    curves = {}
    for kind, _, _ in variants:
        s_tr, sc_tr, _ = pair_scores(train_pairs, embeddings[kind])
        s_te, sc_te, missing = pair_scores(test_pairs, embeddings[kind])
        report[kind] = figures((s_tr, sc_tr), (s_te, sc_te))
        report[kind]["devtest_pairs_with_undetected_face"] = missing
        curves[f"{kind} (acc {report[kind]['devtest_accuracy'] * 100:.2f} %)"] = (s_te, sc_te)
    roc_plot(curves, work / "dlib_resnet128_int8_roc.png")
    sample = test_images[:150]
    report["latency_int8"] = latency_ms(work, template, sample, EMBEDDER_FILE)
    report["latency_int8_mirror_average"] = latency_ms(work, template, sample, EMBEDDER_FILE, True)
    report["latency_float_embedder"] = latency_ms(work, template, sample, "dlib_resnet128_float.tflite")
    log(json.dumps(report, indent=2))
    if report["int8_vs_float_cosine"]["mean"] < MIN_EMBEDDER_COSINE:
        raise SystemExit(f"int8 embedder drifts from float: {report['int8_vs_float_cosine']}")
    write_outputs(work, template, report, out, mirror_average, detector_out)
    return report


def write_outputs(
    work: Path, template: np.ndarray, report: dict[str, Any], out: Path, mirror_average: bool,
    detector_out: Path,
) -> None:
    """Copy the detector to `detector_out`, the dlib model and its ROC plot to the dlib model
    folder `out`, and write its face_models.json (pointing at the detector) there."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / DETECTOR_FILE, detector_out / DETECTOR_FILE)
    for name in (EMBEDDER_FILE, "dlib_resnet128_int8_roc.png"):
        shutil.copyfile(work / name, out / name)
    shipped = "int8_mirror_average" if mirror_average else "int8"
    report["shipped_mode"] = shipped
    manifest = face_manifest(
        detector_file=os.path.relpath(detector_out / DETECTOR_FILE, out), embedder_file=EMBEDDER_FILE,
        name="dlib ResNet-29 face descriptor (dlib_face_recognition_resnet_model_v1), int8",
        chip_size=150, mirror_average=mirror_average, single=report["int8"],
        mirrored=report["int8_mirror_average"], template=template)
    (out / "face_models.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "build_metrics.json").write_text(json.dumps(report, indent=2) + "\n")
