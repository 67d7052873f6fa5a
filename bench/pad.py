"""Presentation-attack detection (PAD) benchmark: BPCER, APCER and cost per face, ISO/IEC 30107-3 terms.

    .venv/bin/python bench/pad.py [--lfw DIR] [--samples DIR] [--limit N] [--attack-images N]
        [--threads N]

* BPCER (bona fide presentations wrongly refused) on every LFW View 1 image in which the
  detector finds a face (`--limit` for fewer), and on the live sample photo;
* APCER per attack kind (printed photo re-captured, screen replay) on attacks generated in
  memory from `--attack-images` LFW faces at every distance of tflite_models/pad_attacks.py
  (a stand-in for real attacks: nothing is stored); an attack whose face the detector misses
  never reaches PAD and is counted apart (`attacks_without_face`);
* the three sample photos classified by the original's rule (arg-max of the summed softmaxes);
* ms per face of PAD beside the detector and the embedder, in the same run;
* BPCER / APCER at other live-score bars, for the record of the threshold choice.
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout as a script

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LFW = ROOT.parent / "shared" / "data" / "lfw-view1"
DEFAULT_SAMPLES = ROOT.parent / "shared" / "models" / "minifasnet" / "samples"
SAMPLES = {"image_T1.jpg": True, "image_F1.jpg": False, "image_F2.jpg": False}  # live?
# live-score bars reported beside the shipped rule, as a bare "live score >= bar" (no arg-max)
SWEEP = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)


def load_rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read {path}")
    return np.ascontiguousarray(bgr[..., ::-1])


def stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"min": float("nan"), "p50": float("nan"), "mean": float("nan")}
    return {"min": round(min(values), 3), "p50": round(float(np.median(values)), 3),
            "mean": round(float(np.mean(values)), 3)}


class Runner:
    """Detector, embedder and PAD as the kiosk runs them, timed per face."""

    def __init__(self, threads: int) -> None:
        from firmware.vision import FacePipeline
        from firmware.vision.pad import PresentationAttackDetector

        self.pipeline = FacePipeline(num_threads=threads)
        self.pad = PresentationAttackDetector(num_threads=threads)
        self.ms: dict[str, list[float]] = {"detect": [], "embed": [], "pad": []}

    def judge(self, rgb: np.ndarray, embed: bool) -> np.ndarray | None:
        """The fused scores (3 classes) of the largest face, or None without a face."""
        t0 = time.perf_counter()
        faces = self.pipeline.detector.detect(rgb, largest_only=True)
        t1 = time.perf_counter()
        if not faces:
            return None
        if embed:
            self.pipeline.embed_face(rgb, faces[0])
        t2 = time.perf_counter()
        scores = self.pad.scores(rgb, faces[0])
        t3 = time.perf_counter()
        self.ms["detect"].append((t1 - t0) * 1000)
        if embed:
            self.ms["embed"].append((t2 - t1) * 1000)
        self.ms["pad"].append((t3 - t2) * 1000)
        return scores


def accepted(scores: np.ndarray, bar: float) -> bool:
    """The runtime's rule: the live class wins the arg-max and reaches the bar."""
    return int(np.argmax(scores)) == 1 and float(scores[1]) >= bar


def rate(flags: list[bool]) -> float:
    return round(float(np.mean(flags)), 4) if flags else float("nan")


def main(argv: list[str] | None = None) -> int:
    from tflite_models import pad_attacks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    parser.add_argument("--limit", type=int, default=0, help="LFW images for BPCER (0: all)")
    parser.add_argument("--attack-images", type=int, default=300,
                        help="LFW faces turned into attacks (each kind at each distance)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    images = sorted(args.lfw.glob("images/*/*.jpg"))
    if not images or not args.samples.is_dir():
        raise SystemExit(f"need {args.lfw} and {args.samples} (see ../shared/*/README.md)")
    runner = Runner(args.threads)
    bar = runner.pad.threshold

    samples: dict[str, Any] = {}
    for name, live in SAMPLES.items():
        scores = runner.judge(load_rgb(args.samples / name), embed=False)
        label = None if scores is None else int(np.argmax(scores))
        samples[name] = {"expected_live": live, "label": label,
                         "live_score": None if scores is None else round(float(scores[1]), 4),
                         "correct": label is not None and (label == 1) == live}
    samples_correct = all(s["correct"] for s in samples.values())

    live_images = images if args.limit <= 0 else images[:args.limit]
    live_scores: list[np.ndarray] = []
    missed = 0
    for path in live_images:
        scores = runner.judge(load_rgb(path), embed=True)
        if scores is None:
            missed += 1
        else:
            live_scores.append(scores)
    refused = [not accepted(s, bar) for s in live_scores]
    sample_refused = samples["image_T1.jpg"]["correct"] is False

    attack_scores: dict[str, list[np.ndarray]] = {kind: [] for kind in pad_attacks.KINDS}
    by_distance: dict[str, list[bool]] = {}
    no_face = {kind: 0 for kind in pad_attacks.KINDS}
    chosen = random.Random(0).sample(images, min(args.attack_images, len(images)))
    for path in chosen:
        rgb = load_rgb(path)
        for kind in pad_attacks.KINDS:
            for distance in pad_attacks.DISTANCES:
                frame = pad_attacks.make_attack(rgb, kind, distance,
                                                pad_attacks.attack_seed(path.name, kind, distance))
                scores = runner.judge(frame, embed=False)
                if scores is None:
                    no_face[kind] += 1
                    continue
                attack_scores[kind].append(scores)
                by_distance.setdefault(f"{kind}_{distance}", []).append(accepted(scores, bar))

    apcer = {kind: rate([accepted(s, bar) for s in v]) for kind, v in attack_scores.items()}
    sweep = {f"{b:g}": {"bpcer": rate([float(s[1]) < b for s in live_scores]),
                        **{f"apcer_{k}": rate([float(s[1]) >= b for s in v])
                             for k, v in attack_scores.items()}} for b in SWEEP}
    result: dict[str, Any] = {
        "bpcer": rate(refused), "bpcer_live_sample": 1.0 if sample_refused else 0.0,
        "apcer_print": apcer["print"], "apcer_replay": apcer["replay"],
        "apcer_by_distance": {k: rate(v) for k, v in sorted(by_distance.items())},
        "ms_per_face": stats(runner.ms["pad"])["p50"],
        "ms": {k: stats(v) for k, v in runner.ms.items()},
        "samples_correct": samples_correct, "samples": samples,
        "live_faces": len(live_scores), "live_images_without_face": missed,
        "attacks": {k: len(v) for k, v in attack_scores.items()},
        "attacks_without_face": no_face, "threshold": bar, "sweep": sweep,
        "live_score_percentiles": {f"p{q}": round(float(np.percentile([s[1] for s in live_scores], q)), 4)
                                   for q in (1, 2, 5, 50)} if live_scores else {},
    }
    print(f"BPCER {result['bpcer']} on {len(live_scores)} LFW faces ({missed} without a face); "
          f"APCER print {result['apcer_print']}, replay {result['apcer_replay']}; samples "
          f"{'right' if samples_correct else 'WRONG'}; PAD {result['ms']['pad']} ms per face, "
          f"detector {result['ms']['detect']}, embedder {result['ms']['embed']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
